"""The backup job: lock, log, dump, compress, store, verify, record. Framework-free.

Whatever happens after the ``in_progress`` row exists, the row ends as ``success`` or
``failed`` (a kill -9 is caught by the next run's stale-row recovery) and no file is left
behind for a failed attempt.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import psycopg.conninfo

from . import alerts, db, folder_path, monitoring, naming, pgbin
from .dumpfilter import DumpRewriter, OwnRowPatch, rules_for
from .dumpstream import DumpStream, Progress
from .errors import BackupError, BackupFailed, ConfigError, DatabaseUnavailable, LockBusy, StorageError
from .logrepo import INTERRUPTED, PG_DUMP_APPLICATION_NAME, LogRepository
from .proc import libpq_target
from .profiles import Section, check_readable, dump_sections, roles_rules, supabase_rules
from .redact import one_line, redact
from .settings import Settings
from .storage import Storage, StoredFile
from .supabase_conn import check_dump_url

TRIGGERS = {"scheduled": "automatic", "manual": "manual"}
_log = logging.getLogger("dbbackup.backup")


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
    if settings.storage == "google_drive" and settings.google_drive is not None:
        # Imported here so that local runs never load the Google client libraries.
        from .storage.drive import DriveStorage

        return DriveStorage(settings.google_drive)
    raise ConfigError(f"BACKUP_STORAGE={settings.storage!r} is not supported")


def pg_dump_command(
    settings: Settings, pg_dump: str, snapshot: str | None = None
) -> tuple[list[Section], dict[str, str]]:
    """What the backup stream runs (profiles.dump_sections) and its environment. The password
    travels in PGPASSWORD, never in argv (argv is visible to every process on the host)."""
    conninfo, env, _ = libpq_target(settings.database_url)
    env["PGAPPNAME"] = PG_DUMP_APPLICATION_NAME
    pg_dumpall = None
    if settings.profile.supabase:
        # The roles section: the pg_dumpall next to the chosen pg_dump, else the bundled one.
        sibling = Path(pg_dump).with_name("pg_dumpall")
        pg_dumpall = str(sibling if sibling.is_file() else pgbin.tool("pg_dumpall"))
    dbname = str(psycopg.conninfo.conninfo_to_dict(conninfo).get("dbname") or "postgres")
    return dump_sections(settings.profile, pg_dump, conninfo, snapshot, pg_dumpall, dbname), env


@contextlib.contextmanager
def exported_snapshot(settings: Settings, needed: bool) -> Iterator[str | None]:
    """A snapshot the profile's several pg_dump runs share, so structure and data come from one
    moment; the exporting transaction stays open until they are done."""
    if not needed:
        yield None
        return
    conn = db.connect(settings.database_url, attempts=1, secrets=settings.secrets)
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        row = conn.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()
        assert row is not None
        yield str(row[0])
    finally:
        conn.close()


class BackupJob:
    def __init__(
        self,
        settings: Settings,
        storage: Storage | None = None,
        progress: Progress | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        alerter: alerts.Alerter | None = None,
    ) -> None:
        self.settings = settings
        self.storage = storage or make_storage(settings)
        self.progress = progress
        self.clock = clock
        self.secrets = settings.secrets
        self.alerter = alerter or alerts.Alerter(settings)

    def run(
        self, trigger: str, triggered_by: str | None = None, schedule_time: datetime | None = None
    ) -> BackupOutcome:
        """Raises ConfigError / DatabaseUnavailable / LockBusy before any row exists;
        afterwards every failure is returned as a ``failed`` outcome with its row updated.
        Failures (and those errors, but not LockBusy) are e-mailed; sending never changes
        what this returns or raises. ``schedule_time`` is the scheduler's slot (its retries
        carry the same one): when that slot already has a successful backup the run is
        ``skipped`` and writes nothing; a slot whose attempts failed runs again."""
        try:
            return self._run(trigger, triggered_by, schedule_time)
        except LockBusy:
            raise
        except BackupError as exc:
            self._alert_could_not_start(trigger, exc)
            raise
        except psycopg.Error as exc:
            # Before the attempt's row exists (backup_logs missing, a permission, a lost
            # connection): still one line, still an alert.
            error = DatabaseUnavailable(f"database error before the backup started: {db.describe(exc, self.secrets)}")
            self._alert_could_not_start(trigger, error)
            raise error from None

    def _run(self, trigger: str, triggered_by: str | None, schedule_time: datetime | None) -> BackupOutcome:
        if trigger not in TRIGGERS:
            raise ConfigError(f"unknown trigger {trigger!r}")
        check_dump_url(self.settings.database_url)  # pg_dump cannot work through a transaction pooler
        conn = db.connect(self.settings.database_url, attempts=self.settings.connect_attempts, secrets=self.secrets)
        try:
            repo = LogRepository(conn)
            config = repo.config()
            if trigger == "scheduled" and not config.enabled:
                return BackupOutcome(status="skipped", reason="backup_enabled is false")
            if not repo.try_lock():
                raise LockBusy("another backup of this database is running")
            try:
                self._recover_stale(repo)
                # Checked holding the lock: an earlier attempt of this slot has finished by now.
                done = repo.succeeded_for_schedule(schedule_time) if schedule_time is not None else None
                if done is not None:
                    return BackupOutcome(
                        status="skipped",
                        backup_log_id=str(done["id"]),
                        file_name=done["file_name"],
                        path=done["google_drive_path"],
                        reason=f"already done: the backup scheduled for {schedule_time.isoformat()} succeeded",
                    )
                outcome = self._locked(repo, config.folder_path, trigger, triggered_by, schedule_time)
                self._check_size(repo, outcome)
                return outcome
            finally:
                with contextlib.suppress(psycopg.Error):
                    repo.unlock()
        finally:
            conn.close()

    def _locked(
        self,
        repo: LogRepository,
        folder: str,
        trigger: str,
        triggered_by: str | None,
        schedule_time: datetime | None = None,
    ) -> BackupOutcome:
        started = time.monotonic()
        moment = self.clock()
        name = naming.base_name(moment, self.settings.timezone)
        log_id = repo.start(TRIGGERS[trigger], name, folder, triggered_by, schedule_time)
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
            self.storage.discard_incomplete(target)  # leftovers of a killed run; we hold the lock
            name = naming.free_name(moment, self.settings.timezone, (f.name for f in self.storage.list(target)))
            repo.rename(log_id, name)
            profile = self.settings.profile
            check_readable(repo.conn, profile)  # name every unreadable table now, not the first one later
            # The role pg_dump runs as (Supabase's postgres, even as postgres.<ref> on the pooler).
            dumping_role = str(repo.conn.execute("SELECT current_user").fetchone()[0])  # type: ignore[index]
            rewriter = DumpRewriter(
                rules_for(server_major) + (supabase_rules() + roles_rules(dumping_role) if profile.supabase else []),
                OwnRowPatch(b"public.backup_logs", log_id, {"status": "success", "failure_reason": "\\N"}),
                server_major,
            )
            with exported_snapshot(self.settings, profile.supabase) as snapshot:
                sections, env = pg_dump_command(self.settings, dump_bin, snapshot)
                stream = DumpStream(
                    [], env, rewriter, self.settings.gzip_level, self.secrets, self.progress, sections=sections
                )
                chunks = iter(stream)
                try:
                    stored = self.storage.put(target, name, chunks)
                finally:
                    # Stop pg_dump now: a backend may still hold the generator (in a traceback),
                    # and pg_dump's snapshot and locks must not outlive a failed upload.
                    chunks.close()  # type: ignore[attr-defined]
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
            self._alert_failure(repo, TRIGGERS[trigger], log_id, name, folder, reason)
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

    # --- alerts and the size check: each swallows its own errors, so a backup's outcome (and
    # the function's answer) is decided by the backup alone, never by SendGrid or a lookup.

    def _recover_stale(self, repo: LogRepository) -> None:
        """Rows a killed run left in_progress become failed ("interrupted"), and each is alerted:
        a run killed at the platform's timeout had no chance to say so itself."""
        for row in repo.recover_stale():
            self._alert_failure(
                repo, row["backup_type"], str(row["id"]), row["file_name"], row["google_drive_path"] or "", INTERRUPTED
            )

    @contextlib.contextmanager
    def _report_conn(self, repo: LogRepository) -> Iterator[psycopg.Connection | None]:
        """The run's connection if it still works, else a fresh one, else None (database gone)."""
        try:
            repo.conn.execute("SELECT 1")
            alive = True
        except psycopg.Error:
            alive = False
        if alive:  # yield outside the try: an error in the caller's block is the caller's
            yield repo.conn
            return
        try:
            conn = db.connect(self.settings.database_url, attempts=1, secrets=self.secrets)
        except BackupError:
            yield None
            return
        with conn:
            yield conn

    def _alert_failure(
        self, repo: LogRepository, backup_type: str, log_id: str, name: str, folder: str, reason: str
    ) -> None:
        try:
            with self._report_conn(repo) as conn:
                previous = monitoring.last_success(conn) if conn else None
                streak = monitoring.consecutive_failures(conn) if conn else 1
                recipient = alerts.configured_recipient(conn) if conn else None
            failure = alerts.BackupFailure(
                when=self.clock(),
                backup_type=backup_type,
                reason=reason,
                file_name=name,
                expected_size=previous["file_size_bytes"] if previous else None,
                drive_path=f"{folder}/{name}",
                backup_id=log_id,
                consecutive=max(streak, 1),
                last_success=(previous["completed_at"] or previous["started_at"]) if previous else None,
            )
            email = alerts.backup_failure_email(failure, self.settings.timezone, self.settings.environment)
            self.alerter.deliver(email, recipient)
        except Exception as exc:
            _log.error(
                "the failure alert for backup %s was not sent: %s", log_id, one_line(redact(str(exc), self.secrets))
            )

    def _alert_could_not_start(self, trigger: str, exc: BackupError) -> None:
        """Configuration and credential errors happen before any row exists: same e-mail, with
        no file or id. The recipient is read only when the database answered at all."""
        try:
            recipient = None
            if isinstance(exc, ConfigError):
                with (
                    contextlib.suppress(BackupError, psycopg.Error),
                    db.connect(self.settings.database_url, attempts=1, secrets=self.secrets) as conn,
                ):
                    recipient = alerts.configured_recipient(conn)
            failure = alerts.BackupFailure(
                when=self.clock(),
                backup_type=TRIGGERS.get(trigger, "automatic"),
                reason=one_line(redact(str(exc), self.secrets)),
                file_name=None,
                expected_size=None,
                drive_path=None,
                backup_id=None,
            )
            email = alerts.backup_failure_email(failure, self.settings.timezone, self.settings.environment)
            self.alerter.deliver(email, recipient)
        except Exception as err:
            _log.error("the failure alert was not sent: %s", one_line(redact(str(err), self.secrets)))

    def _check_size(self, repo: LogRepository, outcome: BackupOutcome) -> None:
        """A backup far smaller than the previous successful one is how an emptied table shows:
        flag the row and send a warning. The backup stays a success (the dump is complete)."""
        percent = self.settings.size_warning_percent
        if outcome.status != "success" or not percent or outcome.file_size_bytes is None:
            return
        try:
            previous = monitoring.last_success(repo.conn, exclude_id=outcome.backup_log_id)
            before = previous["file_size_bytes"] if previous else None
            if not before or outcome.file_size_bytes * 100 >= before * percent:
                return
            assert previous is not None and outcome.backup_log_id and outcome.file_name and outcome.path
            share = 100 * outcome.file_size_bytes / before
            text = (
                f"{outcome.file_size_bytes:,} bytes is {share:.1f} % of the previous successful backup"
                f" ({before:,} bytes, {previous['file_name']}); warning below {percent} %"
            )
            monitoring.flag_size_warning(repo.conn, outcome.backup_log_id, text)
            _log.warning("backup %s: size warning: %s", outcome.backup_log_id, text)
            email = alerts.size_warning_email(
                self.clock(),
                self.settings.timezone,
                self.settings.environment,
                backup_id=outcome.backup_log_id,
                file_name=outcome.file_name,
                drive_path=outcome.path,
                size=outcome.file_size_bytes,
                previous_size=before,
                threshold_percent=percent,
            )
            self.alerter.deliver(email, alerts.configured_recipient(repo.conn))
        except Exception as exc:
            _log.error(
                "size check of backup %s failed: %s", outcome.backup_log_id, one_line(redact(str(exc), self.secrets))
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
