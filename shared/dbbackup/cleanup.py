"""The retention cleanup: plan with ``retention.classify``, then delete what it says, one file at a
time, continuing past failures, and report everything. Also the daily missed-run check.

Locks: the cleanup holds its own advisory lock, transaction-scoped so that it also holds through
a transaction-mode pooler (two cleanups never race over the same files)
and reads whether a backup holds ``BACKUP_LOCK_KEY`` without taking it, so a scheduled backup is
never refused because a cleanup happens to be running. A running backup's file is protected by
its ``in_progress`` row (rule 3 of ``retention``); and the file it writes is not even listed
until it is complete, by the Storage contract, so the plan can never include it.

``--dry-run`` is a wrapper, not a flag threaded through the code: the same steps run against a
storage whose delete only records the id and a log writer that writes nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from . import alerts, db, monitoring, retention
from .alerts import Alerter
from .errors import BackupError, LockBusy, StorageNotFound
from .logrepo import BACKUP_LOCK_KEY, LogRepository
from .redact import one_line, redact
from .settings import Settings
from .storage import Folder, Storage, StoredFile

log = logging.getLogger("dbbackup.cleanup")

# pg_try_advisory_lock key for "a cleanup is running on this database" ("dbclea").
CLEANUP_LOCK_KEY = 0x6462_636C_6561


@dataclass
class CleanupResult:
    status: str  # success | failed
    dry_run: bool
    folder: str
    now: str
    cutoff: str  # files named before this instant are past retention
    retention_days: int
    keep_min: int
    examined: int = 0
    matched: int = 0
    ignored: int = 0
    deleted: list[str] = field(default_factory=list)
    kept_by_safety_floor: list[str] = field(default_factory=list)
    kept_future: list[str] = field(default_factory=list)
    kept_in_progress: list[str] = field(default_factory=list)
    kept_within_retention: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    bytes_freed: int = 0
    backup_running: bool = False
    missed_run: bool = False
    alerts: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        return (
            f"examined {self.examined}, matched {self.matched}, {verb} {len(self.deleted)}, "
            f"kept by the safety floor {len(self.kept_by_safety_floor)}, ignored {self.ignored}, "
            f"failed {len(self.failed)}, bytes freed {self.bytes_freed:,}"
        )


class DryRunStorage:
    """Reads pass through; a delete is only remembered (and the file then looks gone)."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.deleted: set[str] = set()

    def ensure_folder(self, path: str) -> Folder:
        return self.inner.ensure_folder(path)

    def list(self, folder: Folder) -> list[StoredFile]:
        return [f for f in self.inner.list(folder) if f.id not in self.deleted]

    def put(self, folder: Folder, name: str, chunks: Iterable[bytes]) -> StoredFile:
        raise BackupError("dry run: nothing is written")

    def discard_incomplete(self, folder: Folder) -> int:
        return 0  # a dry run removes nothing

    def open(self, file_id: str) -> Iterator[bytes]:
        return self.inner.open(file_id)

    def stat(self, file_id: str) -> StoredFile:
        if file_id in self.deleted:
            raise StorageNotFound(f"{file_id} (dry run: would be deleted)")
        return self.inner.stat(file_id)

    def delete(self, file_id: str) -> None:
        self.inner.stat(file_id)  # the same StorageNotFound a real delete would raise
        self.deleted.add(file_id)


# --- backup_logs access for cleanup (its own SQL: logrepo stays the backup's) ------------------


def row_statuses(conn: psycopg.Connection, files: list[StoredFile]) -> dict[str, str]:
    """``retention.row_status`` per file id: rows matched by storage file id, else by name."""
    if not files:
        return {}
    rows = conn.execute(
        "SELECT google_drive_file_id, file_name, status FROM public.backup_logs"
        " WHERE google_drive_file_id = ANY(%s) OR file_name = ANY(%s)",
        ([f.id for f in files], [f.name for f in files]),
    ).fetchall()
    by_id: dict[str, list[str]] = {}
    by_name: dict[str, list[str]] = {}
    for file_id, name, status in rows:
        if file_id:
            by_id.setdefault(file_id, []).append(status)
        by_name.setdefault(name, []).append(status)
    result = {}
    for f in files:
        # A running backup's row has the name but not yet the id: always look at names too.
        statuses = by_id.get(f.id, []) + [s for s in by_name.get(f.name, []) if s == "in_progress" or f.id not in by_id]
        result[f.id] = retention.row_status(statuses)
    return result


def mark_deleted(conn: psycopg.Connection, f: StoredFile) -> int:
    """Set deleted_at on the file's row(s): by storage file id, falling back to the file name."""
    cur = conn.execute(
        "UPDATE public.backup_logs SET deleted_at = now() WHERE google_drive_file_id = %s AND deleted_at IS NULL",
        (f.id,),
    )
    if cur.rowcount:
        return cur.rowcount
    cur = conn.execute(
        "UPDATE public.backup_logs SET deleted_at = now()"
        " WHERE file_name = %s AND status = 'success' AND deleted_at IS NULL",
        (f.name,),
    )
    return cur.rowcount


def backup_lock_held(conn: psycopg.Connection) -> bool:
    """Whether some session holds the backup lock, without taking it (pg_locks splits a bigint
    advisory key into classid = high 32 bits, objid = low 32 bits, objsubid = 1)."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND classid = %s AND objid = %s AND objsubid = 1)",
        (BACKUP_LOCK_KEY >> 32, BACKUP_LOCK_KEY & 0xFFFFFFFF),
    ).fetchone()
    return bool(row and row[0])


# --- the deleting step -------------------------------------------------------------------------


def delete_planned(
    storage: Storage,
    plan: retention.Plan,
    record: Callable[[StoredFile], int],
    secrets: tuple[str, ...],
) -> tuple[list[StoredFile], list[dict[str, str]]]:
    """Delete every file the plan marks, verify each is gone, record it; one failure never stops
    the others. A file already gone counts as deleted (someone else removed it: the goal holds)."""
    deleted: list[StoredFile] = []
    failed: list[dict[str, str]] = []
    for decision in plan.with_action(retention.DELETE):
        f = decision.file
        try:
            with contextlib.suppress(StorageNotFound):
                storage.delete(f.id)
            try:
                storage.stat(f.id)
            except StorageNotFound:
                pass
            else:
                raise BackupError("the file is still there after the delete")
        except Exception as exc:
            reason = one_line(redact(str(exc) or type(exc).__name__, secrets), 300)
            log.error("cleanup: could not delete %s: %s", f.name, reason)
            failed.append({"file": f.name, "reason": reason})
            continue
        deleted.append(f)
        try:
            if not record(f):
                log.warning("cleanup: deleted %s, which had no backup_logs row", f.name)
        except Exception as exc:
            reason = one_line(redact(f"deleted, but backup_logs.deleted_at was not set: {exc}", secrets), 300)
            log.error("cleanup: %s: %s", f.name, reason)
            failed.append({"file": f.name, "reason": reason})
    return deleted, failed


class CleanupJob:
    def __init__(
        self,
        settings: Settings,
        storage: Storage | None = None,
        alerter: Alerter | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        from .backup import make_storage

        self.settings = settings
        self.storage = storage or make_storage(settings)
        self.alerter = alerter or Alerter(settings)
        self.clock = clock

    def run(self, dry_run: bool = False) -> CleanupResult:
        """Raises ConfigError / DatabaseUnavailable / LockBusy when it cannot start (after alerting
        for the first two); otherwise returns the result, ``failed`` when any file was not deleted
        or the folder could not be read."""
        conn = None
        try:
            conn = db.connect(
                self.settings.database_url, attempts=self.settings.connect_attempts, secrets=self.settings.secrets
            )
            folder_path = LogRepository(conn).config().folder_path
        except BackupError as exc:
            if not dry_run:  # a dry run reports, it never e-mails
                self._alert_could_not_start(conn, exc)
            if conn is not None:
                conn.close()
            raise
        assert conn is not None
        lock_conn: psycopg.Connection | None = None
        try:
            # The lock is transaction-scoped, on a connection kept inside one open transaction for
            # the whole run: a transaction-mode pooler (Supabase's port 6543) pins a server
            # connection to an open transaction, where a session lock would be taken on one pooled
            # connection and could outlive us on it. The lock ends with the transaction, whatever
            # way this process ends.
            lock_conn = db.connect(self.settings.database_url, attempts=1, secrets=self.settings.secrets)
            lock_conn.execute("BEGIN")
            if not lock_conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (CLEANUP_LOCK_KEY,)).fetchone()[0]:  # type: ignore[index]
                raise LockBusy("another cleanup of this database is running")
            return self._locked(conn, folder_path, dry_run)
        finally:
            if lock_conn is not None:
                with contextlib.suppress(psycopg.Error):
                    lock_conn.execute("ROLLBACK")
                lock_conn.close()
            conn.close()

    def _locked(self, conn: psycopg.Connection, folder_path: str, dry_run: bool) -> CleanupResult:
        s = self.settings
        now = self.clock()
        storage: Storage = DryRunStorage(self.storage) if dry_run else self.storage
        record: Callable[[StoredFile], int] = (lambda f: 1) if dry_run else (lambda f: mark_deleted(conn, f))
        result = CleanupResult(
            status="success",
            dry_run=dry_run,
            folder=folder_path,
            now=now.isoformat(),
            cutoff="",
            retention_days=s.retention_days,
            keep_min=s.keep_min,
        )
        try:
            folder = storage.ensure_folder(folder_path)
            files = storage.list(folder)
        except Exception as exc:
            reason = one_line(redact(f"cannot list the backup folder: {exc}", s.secrets), 300)
            log.error("cleanup: %s", reason)
            result.status, result.failed = "failed", [{"file": folder_path, "reason": reason}]
            files = []
        else:
            # Read the lock before the rows: a backup that starts after this point writes a file
            # that is not in ``files`` (listed above), so the plan cannot touch it.
            result.backup_running = backup_lock_held(conn)
            plan = retention.classify(
                files,
                now=now,
                tz=s.timezone,
                retention_days=s.retention_days,
                keep_min=s.keep_min,
                statuses=row_statuses(conn, files),
            )
            result.cutoff = plan.cutoff.isoformat()
            deleted, failed = delete_planned(storage, plan, record, s.secrets)
            result.examined, result.matched, result.ignored = len(files), len(plan.decisions), len(plan.ignored)
            result.deleted = [f.name for f in deleted]
            result.bytes_freed = sum(f.size for f in deleted)
            result.kept_by_safety_floor = [d.file.name for d in plan.with_reason(retention.FLOOR)]
            result.kept_future = [d.file.name for d in plan.with_reason(retention.FUTURE)]
            result.kept_in_progress = [d.file.name for d in plan.with_reason(retention.IN_PROGRESS)]
            result.kept_within_retention = len(plan.with_reason(retention.WITHIN))
            result.failed = failed
            if failed:
                result.status = "failed"
            for name in result.kept_future:
                log.warning("cleanup: kept %s: its name is dated in the future (check BACKUP_TIMEZONE/clock)", name)
            for name in result.kept_in_progress:
                log.warning("cleanup: kept %s: its backup_logs row is in_progress", name)
        self._check_missed_run(conn, now, folder_path, result)
        if result.status == "failed" and not dry_run:
            email = alerts.cleanup_failure_email(
                now,
                s.timezone,
                s.environment,
                folder_path,
                [(f["file"], f["reason"]) for f in result.failed],
                result.summary(),
            )
            self.alerter.deliver(email, alerts.configured_recipient(conn))
            result.alerts.append(email.kind)
        level = logging.ERROR if result.status == "failed" else logging.INFO
        log.log(level, "cleanup %s%s: %s", result.status, " (dry run)" if dry_run else "", result.summary())
        return result

    def _check_missed_run(self, conn: psycopg.Connection, now: datetime, folder: str, result: CleanupResult) -> None:
        """The daily cleanup doubles as the watchdog: a scheduler that stopped calling the backup
        produces no failure at all, only silence."""
        s = self.settings
        try:
            health = monitoring.read_health(conn, now, s.max_age_hours)
        except psycopg.Error as exc:
            log.error("cleanup: could not read backup health: %s", one_line(redact(str(exc), s.secrets)))
            return
        if not monitoring.missed_run(health):
            return
        result.missed_run = True
        last = datetime.fromisoformat(health.last_success_at) if health.last_success_at else None
        log.error(
            "no successful backup since %s (BACKUP_MAX_AGE_HOURS=%d)", health.last_success_at or "ever", s.max_age_hours
        )
        if result.dry_run:
            return
        email = alerts.missed_run_email(
            now,
            s.timezone,
            s.environment,
            last,
            s.max_age_hours,
            health.consecutive_failures,
            health.last_failure_reason,
            folder,
        )
        self.alerter.deliver(email, alerts.configured_recipient(conn))
        result.alerts.append(email.kind)

    def _alert_could_not_start(self, conn: psycopg.Connection | None, exc: BackupError) -> None:
        s = self.settings
        now = self.clock()
        reason = one_line(redact(str(exc), s.secrets))
        email = alerts.cleanup_failure_email(
            now,
            s.timezone,
            s.environment,
            "unknown (could not read the configuration)",
            [("(cleanup)", reason)],
            "did not start",
        )
        self.alerter.deliver(email, alerts.configured_recipient(conn) if conn is not None else None)


def run_cleanup(settings: Settings, dry_run: bool = False) -> CleanupResult:
    return CleanupJob(settings).run(dry_run=dry_run)
