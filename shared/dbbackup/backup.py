"""The backup job: lock, log, dump, compress, store, verify, record. Framework-free.

Whatever happens after the ``in_progress`` row exists, the row ends as ``success`` or
``failed`` (a kill -9 is caught by the next run's stale-row recovery) and no file is left
behind for a failed attempt.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import psycopg

from . import db, folder_path, naming, pgbin
from .dumpfilter import DumpRewriter, OwnRowPatch, rules_for
from .dumpstream import DumpStream, Progress
from .errors import BackupError, BackupFailed, ConfigError, LockBusy, StorageError
from .logrepo import LogRepository
from .proc import libpq_target
from .redact import one_line, redact
from .settings import Settings
from .storage import Storage, StoredFile

TRIGGERS = {"scheduled": "automatic", "manual": "manual"}


@dataclass
class BackupOutcome:
    status: str  # success | failed | skipped
    backup_log_id: str | None = None
    file_name: str | None = None
    file_size_bytes: int | None = None
    path: str | None = None
    file_id: str | None = None
    md5: str | None = None
    sql_bytes: int | None = None
    seconds: float = 0.0
    reason: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def make_storage(settings: Settings) -> Storage:
    if settings.storage == "local":
        from .storage.local import LocalStorage

        return LocalStorage(settings.local_root)
    raise ConfigError(f"BACKUP_STORAGE={settings.storage!r} is not supported")


def pg_dump_command(settings: Settings, pg_dump: str) -> tuple[list[str], dict[str, str]]:
    """argv and environment for pg_dump. The password travels in PGPASSWORD, never in argv
    (argv is visible to every process on the host)."""
    conninfo, env, _ = libpq_target(settings.database_url)
    env["PGAPPNAME"] = "dbbackup-pg_dump"
    argv = [
        pg_dump,
        "--format=plain",
        "--no-owner",
        "--no-acl",
        # Waiting forever behind an exclusive lock would hold the backup lock forever.
        "--lock-wait-timeout=300000",
        f"--dbname={conninfo}",
    ]
    return argv, env


class BackupJob:
    def __init__(
        self,
        settings: Settings,
        storage: Storage | None = None,
        progress: Progress | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.storage = storage or make_storage(settings)
        self.progress = progress
        self.clock = clock
        self.secrets = settings.secrets

    def run(self, trigger: str, triggered_by: str | None = None) -> BackupOutcome:
        """Raises ConfigError / DatabaseUnavailable / LockBusy before any row exists;
        afterwards every failure is returned as a ``failed`` outcome with its row updated."""
        if trigger not in TRIGGERS:
            raise ConfigError(f"unknown trigger {trigger!r}")
        conn = db.connect(self.settings.database_url, attempts=self.settings.connect_attempts, secrets=self.secrets)
        try:
            repo = LogRepository(conn)
            config = repo.config()
            if trigger == "scheduled" and not config.enabled:
                return BackupOutcome(status="skipped", reason="backup_enabled is false")
            if not repo.try_lock():
                raise LockBusy("another backup of this database is running")
            try:
                repo.recover_stale()
                return self._locked(repo, config.folder_path, trigger, triggered_by)
            finally:
                with contextlib.suppress(psycopg.Error):
                    repo.unlock()
        finally:
            conn.close()

    def _locked(self, repo: LogRepository, folder: str, trigger: str, triggered_by: str | None) -> BackupOutcome:
        started = time.monotonic()
        moment = self.clock()
        name = naming.base_name(moment, self.settings.timezone)
        log_id = repo.start(TRIGGERS[trigger], name, folder, triggered_by)
        stored: StoredFile | None = None
        try:
            folder_path.split(folder)
            server_major, _ = repo.server_version()
            dump_path = pgbin.pg_dump_path(self.settings.pg_dump_path)
            dump_major = pgbin.program_major_version(dump_path)
            dump_bin = str(dump_path)
            if dump_major < server_major:
                raise ConfigError(
                    f"pg_dump {dump_major} cannot dump a PostgreSQL {server_major} server;"
                    f" use pg_dump {server_major} or newer (PG_DUMP_PATH)"
                )
            target = self.storage.ensure_folder(folder)
            name = naming.free_name(moment, self.settings.timezone, (f.name for f in self.storage.list(target)))
            repo.rename(log_id, name)
            argv, env = pg_dump_command(self.settings, dump_bin)
            rewriter = DumpRewriter(
                rules_for(server_major),
                OwnRowPatch(b"public.backup_logs", log_id, {"status": "success", "failure_reason": "\\N"}),
                server_major,
            )
            stream = DumpStream(argv, env, rewriter, self.settings.gzip_level, self.secrets, self.progress)
            stored = self.storage.put(target, name, stream)
            if stored.size != stream.stats.gz_bytes or (stored.md5 and stored.md5 != stream.stats.md5):
                raise StorageError(
                    f"stored file does not match what was written (size {stored.size} vs"
                    f" {stream.stats.gz_bytes}, md5 {stored.md5} vs {stream.stats.md5})"
                )
            repo.succeed(
                log_id,
                size=stored.size,
                file_id=stored.id,
                path=f"{folder}/{name}",
                md5=stream.stats.md5,
                sql_bytes=stream.stats.sql_bytes,
            )
            return BackupOutcome(
                status="success",
                backup_log_id=log_id,
                file_name=name,
                file_size_bytes=stored.size,
                path=f"{folder}/{name}",
                file_id=stored.id,
                md5=stream.stats.md5,
                sql_bytes=stream.stats.sql_bytes,
                seconds=round(time.monotonic() - started, 3),
            )
        except BaseException as exc:
            reason = self._reason(exc)
            if stored is not None:
                with contextlib.suppress(Exception):
                    self.storage.delete(stored.id)
            self._record_failure(repo, log_id, reason)
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt / SystemExit: recorded, now let it stop us
            return BackupOutcome(
                status="failed",
                backup_log_id=log_id,
                file_name=name,
                path=f"{folder}/{name}",
                seconds=round(time.monotonic() - started, 3),
                reason=reason,
            )

    def _reason(self, exc: BaseException) -> str:
        if isinstance(exc, KeyboardInterrupt):
            return "interrupted: the backup was stopped by a signal (Ctrl-C / SIGTERM)"
        if isinstance(exc, SystemExit):
            return "interrupted: the process was asked to exit"
        if isinstance(exc, psycopg.Error):
            text = f"database error: {db.describe(exc, self.secrets)}"
        elif isinstance(exc, BackupError):
            text = str(exc)
        else:
            text = f"unexpected error: {type(exc).__name__}: {exc}"
        return one_line(redact(text, self.secrets))

    def _record_failure(self, repo: LogRepository, log_id: str, reason: str) -> None:
        """Write the failure, over a fresh connection if the old one died with the server."""
        try:
            repo.fail(log_id, reason)
            return
        except psycopg.Error:
            pass
        with contextlib.suppress(BackupError, psycopg.Error):
            conn = db.connect(self.settings.database_url, attempts=3, secrets=self.secrets)
            with conn:
                LogRepository(conn).fail(log_id, reason)


def run_backup(
    settings: Settings, trigger: str, triggered_by: str | None = None, progress: Progress | None = None
) -> BackupOutcome:
    return BackupJob(settings, progress=progress).run(trigger, triggered_by)


__all__ = ["BackupFailed", "BackupJob", "BackupOutcome", "run_backup"]
