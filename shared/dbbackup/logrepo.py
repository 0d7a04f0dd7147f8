"""The ``backup_logs`` repository, the app settings we read, and the per-database backup lock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from .errors import ConfigError

# pg_try_advisory_lock key for "a backup is running on this database" ("dbback").
BACKUP_LOCK_KEY = 0x6462_6261_636B
PG_DUMP_APPLICATION_NAME = "dbbackup-pg_dump"  # what our pg_dump runs show in pg_stat_activity
INTERRUPTED = "interrupted: the run stopped before finishing (crash, timeout or kill)"
STATUSES = ("success", "failed", "in_progress")


@dataclass(frozen=True)
class BackupConfig:
    folder_path: str
    notification_email: str | None
    enabled: bool


def as_bool(value: str | None) -> bool:
    if value is None:
        return True
    text = value.strip().lower()
    if text in ("true", "t", "1", "yes", "on"):
        return True
    if text in ("false", "f", "0", "no", "off"):
        return False
    raise ConfigError(f"invoice_configurations.backup_enabled={value!r} is not a boolean")


class LogRepository:
    """Every statement is a single autocommit statement, valid through any pooler."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def server_version(self) -> tuple[int, str]:
        num = int(self.conn.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]
        text = str(self.conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        return num // 10000, text.split()[0]

    def config(self) -> BackupConfig:
        try:
            rows = dict(
                self.conn.execute(
                    "SELECT config_key, config_value FROM public.invoice_configurations"
                    " WHERE config_key IN"
                    " ('backup_folder_path', 'backup_notification_email', 'backup_enabled')"
                ).fetchall()
            )
        except psycopg.errors.UndefinedTable:
            raise ConfigError("invoice_configurations does not exist: run `dbbackup migrate`") from None
        folder = rows.get("backup_folder_path")
        if not folder or not folder.strip():
            raise ConfigError("invoice_configurations.backup_folder_path is not set")
        return BackupConfig(
            folder_path=folder.strip(),
            notification_email=rows.get("backup_notification_email"),
            enabled=as_bool(rows.get("backup_enabled")),
        )

    def try_lock(self) -> bool:
        """The backup lock, unless a pg_dump of ours is still connected to this database: a run
        whose lock connection dropped (a pooler or network blip) may still be dumping, and its
        row must not be relabelled "interrupted" under it, nor a second dump start beside it."""
        row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (BACKUP_LOCK_KEY,)).fetchone()
        if not (row and row[0]):
            return False
        dumping = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = %s AND pid <> pg_backend_pid())",
            (PG_DUMP_APPLICATION_NAME,),
        ).fetchone()
        if dumping and dumping[0]:
            self.unlock()
            return False
        return True

    def unlock(self) -> None:
        self.conn.execute("SELECT pg_advisory_unlock(%s)", (BACKUP_LOCK_KEY,))

    def recover_stale(self) -> list[dict[str, Any]]:
        """Mark rows left ``in_progress`` by a dead run as failed, and return them. Call only
        holding the lock: then no other backup can be running, so every in_progress row is an
        orphan."""
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "UPDATE public.backup_logs SET status = 'failed', failure_reason = %s,"
                " completed_at = now() WHERE status = 'in_progress'"
                " RETURNING id, backup_type, file_name, google_drive_path",
                (INTERRUPTED,),
            ).fetchall()

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
        row = self.conn.execute(
            "INSERT INTO public.backup_logs (backup_type, status, file_name, google_drive_path,"
            f" triggered_by, started_at{columns}) VALUES (%s, 'in_progress', %s, %s, %s, clock_timestamp(){values})"
            " RETURNING id",
            params,
        ).fetchone()
        assert row is not None
        return str(row[0])

    def succeeded_for_schedule(self, schedule_time: datetime) -> dict[str, Any] | None:
        """The successful backup of this scheduled slot (Cloud Scheduler's ScheduleTime), if any."""
        try:
            with self.conn.cursor(row_factory=dict_row) as cur:
                return cur.execute(
                    "SELECT id, file_name, google_drive_path FROM public.backup_logs"
                    " WHERE schedule_time = %s AND status = 'success' ORDER BY started_at LIMIT 1",
                    (schedule_time,),
                ).fetchone()
        except psycopg.errors.UndefinedColumn:
            raise ConfigError("backup_logs has no schedule_time column: run `dbbackup migrate`") from None

    def rename(self, log_id: str, file_name: str) -> None:
        self.conn.execute("UPDATE public.backup_logs SET file_name = %s WHERE id = %s", (file_name, log_id))

    def succeed(self, log_id: str, *, size: int, file_id: str, path: str, md5: str, sql_bytes: int) -> None:
        cur = self.conn.execute(
            "UPDATE public.backup_logs SET status = 'success', completed_at = clock_timestamp(),"
            " file_size_bytes = %s, google_drive_file_id = %s, google_drive_path = %s,"
            " md5_checksum = %s, sql_bytes = %s, failure_reason = NULL"
            " WHERE id = %s AND status = 'in_progress'",
            (size, file_id, path, md5, sql_bytes, log_id),
        )
        if cur.rowcount != 1:
            raise ConfigError(f"backup_logs row {log_id} was no longer in_progress")

    def fail(self, log_id: str, reason: str) -> None:
        self.conn.execute(
            "UPDATE public.backup_logs SET status = 'failed', completed_at = clock_timestamp(),"
            " failure_reason = %s WHERE id = %s",
            (reason, log_id),
        )

    def get(self, log_id: str) -> dict[str, Any] | None:
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute("SELECT * FROM public.backup_logs WHERE id = %s", (log_id,)).fetchone()

    def latest_success(self) -> dict[str, Any] | None:
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "SELECT * FROM public.backup_logs WHERE status = 'success' AND deleted_at IS NULL"
                " ORDER BY started_at DESC LIMIT 1"
            ).fetchone()

    def by_file_name(self, file_name: str) -> dict[str, Any] | None:
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "SELECT * FROM public.backup_logs WHERE file_name = %s AND status = 'success'"
                " ORDER BY started_at DESC LIMIT 1",
                (file_name,),
            ).fetchone()

    def recent(self, status: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        where = "WHERE status = %s" if status else ""
        params: tuple[Any, ...] = (status, limit) if status else (limit,)
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                f"SELECT * FROM public.backup_logs {where} ORDER BY started_at DESC LIMIT %s",
                params,
            ).fetchall()


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
