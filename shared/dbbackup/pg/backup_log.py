"""``backup_logs``, the backup settings in ``invoice_configurations`` and the locks: the one place
their SQL lives (``core.ports.BackupLog``). Every statement is a single autocommit statement,
valid through any pooler; every driver error leaves here as DatabaseError."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from dbbackup.core.backup import INTERRUPTED
from dbbackup.core.ports import (
    AlertContext,
    BackupConfig,
    Copy,
    HealthFacts,
    LogRow,
    ManifestEntry,
    OpenLog,
    StoredFile,
)
from dbbackup.errors import BackupError, ConfigError
from dbbackup.pg import connect as db
from dbbackup.pg.app_settings import adopt_notification_email, read_backup_config, read_notification_email

# pg_try_advisory_lock key for "a backup is running on this database" ("dbback").
BACKUP_LOCK_KEY = 0x6462_6261_636B
# pg_try_advisory_xact_lock key for "a cleanup is running on this database" ("dbclea").
CLEANUP_LOCK_KEY = 0x6462_636C_6561
# Advisory lock key for the storage-blobs/ folders ("dbblob"): a backup holds it shared from the
# moment it lists the blobs until its row says success; a cleanup collects blobs only holding it
# exclusively, so a blob a running backup relies on is never one it deletes.
BLOB_LOCK_KEY = 0x6462_626C_6F62
# Session advisory lock key for "a restore drill is running" ("dbdril"): one drill into
# VERIFY_DATABASE_URL (or a throwaway server) at a time, weekly or Verify now, on any instance.
DRILL_LOCK_KEY = 0x6462_6472_696C
PG_DUMP_APPLICATION_NAME = "dbbackup-pg_dump"  # what our pg_dump runs show in pg_stat_activity
STATUSES = ("success", "failed", "in_progress")
# Attempts that ended; an in_progress row has not told us anything yet.
_ENDED = "status IN ('success', 'failed')"

__all__ = ["BACKUP_LOCK_KEY", "BLOB_LOCK_KEY", "CLEANUP_LOCK_KEY", "INTERRUPTED", "STATUSES", "PgBackupLog", "opener"]


def _translated[**P, R](method: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        self = args[0]
        assert isinstance(self, PgBackupLog)
        with db.sql_errors(self.secrets):
            return method(*args, **kwargs)

    return wrapper


class PgBackupLog:
    def __init__(
        self,
        conn: psycopg.Connection,
        url: str,
        secrets: tuple[str, ...] = (),
        notification_email: str | None = None,
    ) -> None:
        self.conn = conn
        self.url = url  # for a fresh connection when this one died (failure records and alerts)
        self.secrets = secrets
        self.initial_recipient = notification_email  # BACKUP_NOTIFICATION_EMAIL, applied at the first run

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[LogRow]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            return [LogRow.of(r) for r in cur.execute(sql, params).fetchall()]

    def _row(self, sql: str, params: Sequence[Any] = ()) -> LogRow | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return row[0] if row else None

    # --- settings --------------------------------------------------------------------------

    @_translated
    def config(self) -> BackupConfig:
        if self.initial_recipient:
            with contextlib.suppress(psycopg.errors.UndefinedTable):  # read_backup_config says "migrate"
                adopt_notification_email(self.conn, self.initial_recipient)
        return read_backup_config(self.conn)

    def notification_email(self) -> str | None:
        return read_notification_email(self.conn)

    # --- locks -----------------------------------------------------------------------------

    @_translated
    def try_lock(self) -> bool:
        """The backup lock, unless a pg_dump of ours is still connected to this database: a run
        whose lock connection dropped (a pooler or network blip) may still be dumping, and its
        row must not be relabelled "interrupted" under it, nor a second dump start beside it."""
        if not self._value("SELECT pg_try_advisory_lock(%s)", (BACKUP_LOCK_KEY,)):
            return False
        dumping = self._value(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = %s AND pid <> pg_backend_pid())",
            (PG_DUMP_APPLICATION_NAME,),
        )
        if dumping:
            self.unlock()
            return False
        return True

    @_translated
    def unlock(self) -> None:
        self.conn.execute("SELECT pg_advisory_unlock(%s)", (BACKUP_LOCK_KEY,))

    @_translated
    def backup_lock_held(self) -> bool:
        """Whether some session holds the backup lock, without taking it (pg_locks splits a bigint
        advisory key into classid = high 32 bits, objid = low 32 bits, objsubid = 1)."""
        return bool(
            self._value(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND classid = %s AND objid = %s AND objsubid = 1)",
                (BACKUP_LOCK_KEY >> 32, BACKUP_LOCK_KEY & 0xFFFFFFFF),
            )
        )

    @contextlib.contextmanager
    def cleanup_lock(self) -> Iterator[bool]:
        """Transaction-scoped, on a connection kept inside one open transaction for the block: a
        transaction-mode pooler (Supabase's port 6543) pins a server connection to an open
        transaction, where a session lock would be taken on one pooled connection and could
        outlive us on it. The lock ends with the transaction, whatever way this process ends."""
        lock_conn = db.connect(self.url, attempts=1, secrets=self.secrets)
        try:
            with db.sql_errors(self.secrets):
                lock_conn.execute("BEGIN")
                row = lock_conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (CLEANUP_LOCK_KEY,)).fetchone()
            yield bool(row and row[0])
        finally:
            with contextlib.suppress(psycopg.Error):
                lock_conn.execute("ROLLBACK")
            lock_conn.close()

    @_translated
    def lock_blobs_shared(self) -> None:
        """Session-scoped on this connection, like the backup lock beside it; waits while a
        cleanup collects blobs (that collection is bounded: a listing and its deletes)."""
        self.conn.execute("SELECT pg_advisory_lock_shared(%s)", (BLOB_LOCK_KEY,))

    @_translated
    def unlock_blobs_shared(self) -> None:
        self.conn.execute("SELECT pg_advisory_unlock_shared(%s)", (BLOB_LOCK_KEY,))

    @contextlib.contextmanager
    def blob_collection_lock(self) -> Iterator[bool]:
        """The blob lock exclusively, tried (False: a backup holds it shared), transaction-scoped
        on a connection of its own, as ``cleanup_lock``."""
        lock_conn = db.connect(self.url, attempts=1, secrets=self.secrets)
        try:
            with db.sql_errors(self.secrets):
                lock_conn.execute("BEGIN")
                row = lock_conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (BLOB_LOCK_KEY,)).fetchone()
            yield bool(row and row[0])
        finally:
            with contextlib.suppress(psycopg.Error):
                lock_conn.execute("ROLLBACK")
            lock_conn.close()

    # --- one attempt's row -----------------------------------------------------------------

    @_translated
    def recover_stale(self) -> list[LogRow]:
        """Holding the lock no other backup can be running, so every in_progress row is an orphan."""
        return self._rows(
            "UPDATE public.backup_logs SET status = 'failed', failure_reason = %s,"
            " completed_at = now() WHERE status = 'in_progress'"
            " RETURNING id, backup_type, file_name, google_drive_path",
            (INTERRUPTED,),
        )

    @_translated
    def start(
        self,
        backup_type: str,
        file_name: str,
        path: str,
        triggered_by: str | None,
        schedule_time: datetime | None = None,
    ) -> str:
        # The column is named only when there is a slot: a manual or CLI backup still works on a
        # database migrated before 007.
        columns, values = (", schedule_time", ", %s") if schedule_time is not None else ("", "")
        params: tuple[Any, ...] = (backup_type, file_name, path, triggered_by)
        params += (schedule_time,) if schedule_time is not None else ()
        log_id = self._value(
            "INSERT INTO public.backup_logs (backup_type, status, file_name, google_drive_path,"
            f" triggered_by, started_at{columns}) VALUES (%s, 'in_progress', %s, %s, %s, clock_timestamp(){values})"
            " RETURNING id",
            params,
        )
        assert log_id is not None
        return str(log_id)

    @_translated
    def succeeded_for_schedule(self, schedule_time: datetime) -> LogRow | None:
        """The successful backup of this scheduled slot (Cloud Scheduler's ScheduleTime), if any."""
        try:
            return self._row(
                "SELECT id, file_name, google_drive_path FROM public.backup_logs"
                " WHERE schedule_time = %s AND status = 'success' ORDER BY started_at LIMIT 1",
                (schedule_time,),
            )
        except psycopg.errors.UndefinedColumn:
            raise ConfigError("backup_logs has no schedule_time column: run `dbbackup migrate`") from None

    @_translated
    def rename(self, log_id: str, file_name: str) -> None:
        self.conn.execute("UPDATE public.backup_logs SET file_name = %s WHERE id = %s", (file_name, log_id))

    @_translated
    def succeed(
        self, log_id: str, *, size: int, file_id: str, path: str, md5: str, sql_bytes: int, backend: str
    ) -> None:
        sql = (
            "UPDATE public.backup_logs SET status = 'success', completed_at = clock_timestamp(),"
            " file_size_bytes = %s, google_drive_file_id = %s, google_drive_path = %s,"
            " md5_checksum = %s, sql_bytes = %s, failure_reason = NULL{backend}"
            " WHERE id = %s AND status = 'in_progress'"
        )
        values = (size, file_id, path, md5, sql_bytes)
        try:
            cur = self.conn.execute(sql.format(backend=", storage_backend = %s"), (*values, backend, log_id))
        except psycopg.errors.UndefinedColumn:
            # Migrated before 008: the file is stored, so the row still says success (autocommit:
            # the failed statement left nothing to roll back); `latest` then asks the storage.
            cur = self.conn.execute(sql.format(backend=""), (*values, log_id))
        if cur.rowcount != 1:
            raise ConfigError(f"backup_logs row {log_id} was no longer in_progress")

    def fail(self, log_id: str, reason: str) -> None:
        """Write the failure, over a fresh connection if the old one died with the server."""
        try:
            self._fail(self.conn, log_id, reason)
            return
        except psycopg.Error:
            pass
        with (
            contextlib.suppress(BackupError, psycopg.Error),
            db.connect(self.url, attempts=3, secrets=self.secrets) as conn,
        ):
            self._fail(conn, log_id, reason)

    @staticmethod
    def _fail(conn: psycopg.Connection, log_id: str, reason: str) -> None:
        conn.execute(
            "UPDATE public.backup_logs SET status = 'failed', completed_at = clock_timestamp(),"
            " failure_reason = %s WHERE id = %s",
            (reason, log_id),
        )

    @_translated
    def record_copies(self, log_id: str, copies: Sequence[Copy]) -> None:
        try:
            with self.conn.transaction():
                for c in copies:
                    self.conn.execute(
                        "INSERT INTO public.backup_copies (backup_log_id, target, file_id, path, file_size_bytes,"
                        " md5_checksum, status, failure_reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                        " ON CONFLICT (backup_log_id, target) DO UPDATE SET file_id = EXCLUDED.file_id,"
                        " path = EXCLUDED.path, file_size_bytes = EXCLUDED.file_size_bytes,"
                        " md5_checksum = EXCLUDED.md5_checksum, status = EXCLUDED.status,"
                        " failure_reason = EXCLUDED.failure_reason",
                        (log_id, c.target, c.file_id, c.path, c.size, c.md5, c.status, c.reason),
                    )
        except psycopg.errors.UndefinedTable:
            # A database migrated before 011 still backs up; only the per-copy record is missing.
            _log.warning(
                "backup %s: backup_copies does not exist (run `dbbackup migrate`); copies not recorded", log_id
            )

    @_translated
    def record_storage_manifest(self, log_id: str, entries: Sequence[ManifestEntry]) -> None:
        try:
            # COPY: a project may hold hundreds of thousands of objects.
            with (
                self.conn.transaction(),
                self.conn.cursor() as cur,
                cur.copy(
                    "COPY public.storage_manifest (backup_log_id, bucket, object_key, size_bytes, sha256,"
                    " content_type, metadata, etag) FROM STDIN"
                ) as copy,
            ):
                for e in entries:
                    copy.write_row(
                        (log_id, e.bucket, e.key, e.size, e.sha256, e.content_type, Jsonb(e.metadata), e.etag)
                    )
        except psycopg.errors.UndefinedTable:
            raise ConfigError(
                "storage_manifest does not exist: run `dbbackup migrate` (migration 015) before BACKUP_SUPABASE_STORAGE"
            ) from None

    def _manifest(self, where: str, params: Sequence[Any]) -> list[ManifestEntry]:
        try:
            with self.conn.transaction(), self.conn.cursor(row_factory=dict_row) as cur:
                rows = cur.execute(
                    "SELECT bucket, object_key, size_bytes, sha256, content_type, metadata, etag"
                    f" FROM public.storage_manifest WHERE {where} ORDER BY bucket, object_key",
                    params,
                ).fetchall()
        except psycopg.errors.UndefinedTable:
            return []
        return [
            ManifestEntry(
                r["bucket"],
                r["object_key"],
                r["size_bytes"],
                r["sha256"],
                r["content_type"],
                {str(k): str(v) for k, v in (r["metadata"] or {}).items()},
                r["etag"],
            )
            for r in rows
        ]

    @_translated
    def storage_manifest(self, log_id: str) -> list[ManifestEntry]:
        return self._manifest("backup_log_id = %s", (log_id,))

    @_translated
    def last_storage_manifest(self) -> list[ManifestEntry]:
        return self._manifest(
            "backup_log_id = (SELECT m.backup_log_id FROM public.storage_manifest m"
            " JOIN public.backup_logs b ON b.id = m.backup_log_id WHERE b.status = 'success'"
            " ORDER BY b.started_at DESC LIMIT 1)",
            (),
        )

    @_translated
    def referenced_blobs(self, gone: Sequence[str] = ()) -> set[str]:
        try:
            with self.conn.transaction():
                rows = self.conn.execute(
                    "SELECT DISTINCT m.sha256 FROM public.storage_manifest m"
                    " JOIN public.backup_logs b ON b.id = m.backup_log_id"
                    " WHERE b.status = 'success' AND ("
                    "  (b.deleted_at IS NULL AND NOT coalesce(b.google_drive_file_id, '') = ANY(%(gone)s))"
                    "  OR EXISTS (SELECT 1 FROM public.backup_copies c WHERE c.backup_log_id = b.id"
                    "   AND c.status = 'success' AND c.deleted_at IS NULL"
                    "   AND NOT coalesce(c.file_id, '') = ANY(%(gone)s)))",
                    {"gone": list(gone)},
                ).fetchall()
        except psycopg.errors.UndefinedTable:
            return set()
        return {r[0] for r in rows}

    @_translated
    def copies(self, log_id: str) -> list[Copy]:
        """The attempt's copies, in the order they were recorded (none before migration 011)."""
        try:
            with self.conn.transaction(), self.conn.cursor(row_factory=dict_row) as cur:
                rows = cur.execute(
                    "SELECT target, status, file_id, path, file_size_bytes, md5_checksum, failure_reason"
                    " FROM public.backup_copies WHERE backup_log_id = %s AND deleted_at IS NULL"
                    " ORDER BY created_at, id",
                    (log_id,),
                ).fetchall()
        except psycopg.errors.UndefinedTable:
            return []
        return [
            Copy(
                r["target"],
                r["status"],
                r["file_id"],
                r["path"],
                r["file_size_bytes"],
                r["md5_checksum"],
                r["failure_reason"],
            )
            for r in rows
        ]

    @_translated
    def flag_size_warning(self, log_id: str, text: str) -> None:
        self.conn.execute("UPDATE public.backup_logs SET size_warning = %s WHERE id = %s", (text, log_id))

    def _needs_009(self, sql: str, params: Sequence[Any]) -> None:
        try:
            self.conn.execute(sql, params)
        except psycopg.errors.UndefinedColumn:
            raise ConfigError("backup_logs has no manifest/verify columns: run `dbbackup migrate`") from None

    @_translated
    def record_manifest(self, log_id: str, manifest: dict[str, Any]) -> None:
        self._needs_009("UPDATE public.backup_logs SET manifest = %s WHERE id = %s", (Jsonb(manifest), log_id))

    @_translated
    def flag_shrink(self, log_id: str, lines: Sequence[str]) -> None:
        self._needs_009(
            "UPDATE public.backup_logs SET shrink_warnings = %s WHERE id = %s", (Jsonb(list(lines)), log_id)
        )

    @_translated
    def record_verification(self, log_id: str, status: str, detail: str) -> None:
        self._needs_009(
            # A skipped drill says nothing about the backup: it never erases an earlier verdict
            # (the row keeps its passed/failed, its time and detail; the skip is only logged).
            "UPDATE public.backup_logs SET verified_at = clock_timestamp(), verify_status = %s, verify_detail = %s"
            " WHERE id = %s AND (%s <> 'skipped' OR verify_status IS NULL OR verify_status = 'skipped')",
            (status, detail, log_id, status),
        )

    @contextlib.contextmanager
    def drill_lock(self) -> Iterator[bool]:
        """The drill lock on this connection for the block; False when another session holds it."""
        with db.sql_errors(self.secrets):
            got = bool(self._value("SELECT pg_try_advisory_lock(%s)", (DRILL_LOCK_KEY,)))
        try:
            yield got
        finally:
            if got:
                with contextlib.suppress(psycopg.Error):
                    self.conn.execute("SELECT pg_advisory_unlock(%s)", (DRILL_LOCK_KEY,))

    @_translated
    def previous_success(self, exclude_id: str) -> LogRow | None:
        """The successful attempt before ``exclude_id`` (by start), with its manifest."""
        try:
            return self._row(
                "SELECT id, started_at, completed_at, file_name, manifest FROM public.backup_logs"
                " WHERE status = 'success' AND id::text <> %s AND started_at <="
                " (SELECT started_at FROM public.backup_logs WHERE id::text = %s)"
                " ORDER BY started_at DESC LIMIT 1",
                (exclude_id, exclude_id),
            )
        except psycopg.errors.UndefinedColumn:
            raise ConfigError("backup_logs has no manifest column: run `dbbackup migrate`") from None

    @_translated
    def last_verified(self) -> LogRow | None:
        """The newest attempt a restore drill ran on (passed, failed or skipped)."""
        try:
            return self._row(
                "SELECT id, file_name, started_at, verified_at, verify_status, verify_detail FROM public.backup_logs"
                " WHERE verified_at IS NOT NULL ORDER BY verified_at DESC LIMIT 1"
            )
        except psycopg.errors.UndefinedColumn:
            return None

    # --- reading ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _live(self) -> Iterator[PgBackupLog | None]:
        """This log if its connection still works, else one on a fresh connection, else None."""
        try:
            self.conn.execute("SELECT 1")
            alive = True
        except psycopg.Error:
            alive = False
        if alive:  # yield outside the try: an error in the caller's block is the caller's
            yield self
            return
        try:
            conn = db.connect(self.url, attempts=1, secrets=self.secrets)
        except BackupError:
            yield None
            return
        with conn:
            yield PgBackupLog(conn, self.url, self.secrets)

    def alert_context(self) -> AlertContext:
        with self._live() as log:
            if log is None:
                return AlertContext(None, 1, None)
            with db.sql_errors(self.secrets):
                return AlertContext(log.last_success(), log.consecutive_failures(), log.notification_email())

    @_translated
    def get(self, log_id: str) -> LogRow | None:
        return self._row("SELECT * FROM public.backup_logs WHERE id = %s", (log_id,))

    @_translated
    def latest_successes(self, limit: int) -> list[LogRow]:
        """Successful backups with a file left: retention may have deleted the primary's copy and
        kept another (a retention-locked bucket), which still restores."""
        try:
            with self.conn.transaction():
                return self._rows(
                    "SELECT * FROM public.backup_logs b WHERE status = 'success' AND (deleted_at IS NULL"
                    " OR EXISTS (SELECT 1 FROM public.backup_copies c WHERE c.backup_log_id = b.id"
                    " AND c.status = 'success' AND c.deleted_at IS NULL))"
                    " ORDER BY started_at DESC LIMIT %s",
                    (limit,),
                )
        except psycopg.errors.UndefinedTable:  # migrated before 011
            return self._rows(
                "SELECT * FROM public.backup_logs WHERE status = 'success' AND deleted_at IS NULL"
                " ORDER BY started_at DESC LIMIT %s",
                (limit,),
            )

    @_translated
    def by_file_name(self, file_name: str, size: int | None = None) -> LogRow | None:
        return self._row(
            "SELECT * FROM public.backup_logs WHERE file_name = %s AND status = 'success'"
            " ORDER BY file_size_bytes IS NOT DISTINCT FROM %s DESC, started_at DESC LIMIT 1",
            (file_name, size),
        )

    @_translated
    def recent(self, status: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Whole rows as the table has them (``dbbackup logs`` prints every column)."""
        where = "WHERE status = %s" if status else ""
        params: tuple[Any, ...] = (status, limit) if status else (limit,)
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                f"SELECT * FROM public.backup_logs {where} ORDER BY started_at DESC LIMIT %s",
                params,
            ).fetchall()

    @_translated
    def whole_row(self, log_id: str) -> dict[str, Any] | None:
        """Every column of one row (``latest``: the newest successful, not deleted backup)."""
        where = (
            "status = 'success' AND deleted_at IS NULL ORDER BY started_at DESC LIMIT 1"
            if log_id == "latest"
            else "id = %s"
        )
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                f"SELECT * FROM public.backup_logs WHERE {where}", () if log_id == "latest" else (log_id,)
            ).fetchone()

    @_translated
    def last_success(self, exclude_id: str | None = None) -> LogRow | None:
        """The newest successful attempt (deleted files included: its size and time still count)."""
        return self._row(
            "SELECT id, started_at, completed_at, file_name, file_size_bytes FROM public.backup_logs"
            " WHERE status = 'success' AND id::text IS DISTINCT FROM %s ORDER BY started_at DESC LIMIT 1",
            (exclude_id,),
        )

    @_translated
    def consecutive_failures(self) -> int:
        """Failed attempts since the newest success (all of them when none ever succeeded)."""
        return int(
            self._value(
                "SELECT count(*) FROM public.backup_logs WHERE status = 'failed' AND started_at >"
                " coalesce((SELECT max(started_at) FROM public.backup_logs WHERE status = 'success'), '-infinity')"
            )
            or 0
        )

    def _attempts(self, since: datetime) -> tuple[int, int]:
        row = self.conn.execute(
            f"SELECT count(*), count(*) FILTER (WHERE status = 'success')"
            f" FROM public.backup_logs WHERE {_ENDED} AND started_at >= %s",
            (since,),
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    @_translated
    def health_facts(self, now: datetime) -> HealthFacts:
        success = self.last_success()
        attempts_7, ok_7 = self._attempts(now - timedelta(days=7))
        attempts_30, ok_30 = self._attempts(now - timedelta(days=30))
        return HealthFacts(
            last_success=success,
            previous_success=self.last_success(exclude_id=success.id) if success else None,
            last_failure=self._row(
                "SELECT id, started_at, failure_reason FROM public.backup_logs WHERE status = 'failed'"
                " ORDER BY started_at DESC LIMIT 1",
            ),
            last_size_warning=self._value(
                "SELECT size_warning FROM public.backup_logs WHERE status = 'success' ORDER BY started_at DESC LIMIT 1",
            ),
            consecutive_failures=self.consecutive_failures(),
            attempts_7d=attempts_7,
            successes_7d=ok_7,
            attempts_30d=attempts_30,
            successes_30d=ok_30,
            last_verified=self.last_verified(),
        )

    # --- retention ------------------------------------------------------------------------

    @_translated
    def row_statuses(self, files: Sequence[StoredFile]) -> dict[str, list[str]]:
        if not files:
            return {}
        rows = self.conn.execute(
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
            names = [s for s in by_name.get(f.name, []) if s == "in_progress" or f.id not in by_id]
            result[f.id] = by_id.get(f.id, []) + names
        return result

    @_translated
    def mark_deleted(self, f: StoredFile, target: str | None = None, primary: bool = True) -> int:
        """By storage file id, falling back to the file name: the copy's ``backup_copies`` row
        (with ``target``), and the attempt's ``backup_logs`` row when it is the primary target's."""
        copies = 0
        if target is not None:
            with contextlib.suppress(psycopg.errors.UndefinedTable), self.conn.transaction():
                copies = self.conn.execute(
                    "UPDATE public.backup_copies c SET deleted_at = now() FROM public.backup_logs b"
                    " WHERE c.backup_log_id = b.id AND c.target = %s AND c.deleted_at IS NULL"
                    " AND (c.file_id = %s OR (c.file_id IS NULL AND b.file_name = %s))",
                    (target, f.id, f.name),
                ).rowcount
        if not primary:
            return copies
        cur = self.conn.execute(
            "UPDATE public.backup_logs SET deleted_at = now() WHERE google_drive_file_id = %s AND deleted_at IS NULL",
            (f.id,),
        )
        if cur.rowcount:
            return cur.rowcount
        cur = self.conn.execute(
            "UPDATE public.backup_logs SET deleted_at = now()"
            " WHERE file_name = %s AND status = 'success' AND deleted_at IS NULL",
            (f.name,),
        )
        return cur.rowcount


_log = logging.getLogger("dbbackup.backup")


def opener(url: str, connect_attempts: int, secrets: tuple[str, ...], notification_email: str | None = None) -> OpenLog:
    """``core.ports.OpenLog`` for this database."""

    @contextlib.contextmanager
    def open_log(attempts: int | None = None) -> Iterator[PgBackupLog]:
        conn = db.connect(url, attempts=connect_attempts if attempts is None else attempts, secrets=secrets)
        try:
            yield PgBackupLog(conn, url, secrets, notification_email)
        finally:
            conn.close()

    return open_log
