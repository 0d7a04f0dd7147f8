"""The ``restore_logs`` table (migration 012): one row per restore started from the console,
written with the functions' own connection. A target is recorded by its NAME, never its URL."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from dbbackup.errors import ConfigError

_COLUMNS = (
    "id, backup_log_id, file_name, target, replace_target, requested_by, status, started_at, completed_at,"
    " duration_seconds, bytes_read, tables_restored, rows_restored, failure_reason,"
    " (SELECT b.file_size_bytes FROM public.backup_logs b WHERE b.id = backup_log_id) AS total_bytes"
)


@dataclass(frozen=True)
class Outcome:
    status: str  # success | failed
    seconds: float
    bytes_read: int | None = None
    tables: int | None = None
    rows: int | None = None
    reason: str | None = None
    reason_kind: str | None = None  # "refused": the target or the backup said no before anything ran


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (float(v) if isinstance(v, Decimal) else str(v) if k in ("id", "backup_log_id") and v else v)
        for k, v in row.items()
    }


# One restore into a target at a time, across instances: a session lock on the app database,
# keyed by the target's name (two restores into one database would fight over its tables).
LOCK_PREFIX = "dbbackup restore into "


class PgRestoreLog:
    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def try_lock_target(self, target: str) -> bool:
        row = self.conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (LOCK_PREFIX + target,)).fetchone()
        return bool(row and row[0])

    def unlock_target(self, target: str) -> None:
        self.conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (LOCK_PREFIX + target,))

    def start(self, backup_log_id: str, file_name: str | None, target: str, replace: bool, who: str) -> str:
        try:
            row = self.conn.execute(
                "INSERT INTO public.restore_logs (backup_log_id, file_name, target, replace_target, requested_by)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (backup_log_id, file_name, target, replace, who),
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            raise ConfigError("restore_logs does not exist: run `dbbackup migrate`") from None
        assert row is not None
        return str(row[0])

    def fail_interrupted(self, target: str, reason: str) -> list[dict[str, Any]]:
        """Mark ``target``'s rows still ``in_progress`` failed (call it holding the target's lock:
        no restore into it is running, so such a row is one whose instance stopped mid-restore);
        the rows changed, each returned once (its alert is sent once)."""
        with self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "UPDATE public.restore_logs SET status = 'failed', completed_at = clock_timestamp(),"
                " failure_reason = %s WHERE target = %s AND status = 'in_progress'"
                " RETURNING id, backup_log_id, file_name, requested_by",
                (reason, target),
            ).fetchall()
        return [_plain(r) for r in rows]

    def progress(self, restore_id: str, bytes_read: int) -> None:
        self.conn.execute(
            "UPDATE public.restore_logs SET bytes_read = %s WHERE id = %s AND status = 'in_progress'",
            (bytes_read, restore_id),
        )

    def finish(self, restore_id: str, outcome: Outcome) -> None:
        self.conn.execute(
            "UPDATE public.restore_logs SET status = %s, completed_at = clock_timestamp(), duration_seconds = %s,"
            " bytes_read = coalesce(%s, bytes_read), tables_restored = %s, rows_restored = %s, failure_reason = %s"
            " WHERE id = %s",
            (
                outcome.status,
                outcome.seconds,
                outcome.bytes_read,
                outcome.tables,
                outcome.rows,
                outcome.reason,
                restore_id,
            ),
        )

    def get(self, restore_id: str) -> dict[str, Any] | None:
        with self.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(f"SELECT {_COLUMNS} FROM public.restore_logs WHERE id = %s", (restore_id,)).fetchone()
        return _plain(row) if row else None

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                f"SELECT {_COLUMNS} FROM public.restore_logs ORDER BY started_at DESC LIMIT %s", (limit,)
            ).fetchall()
        return [_plain(r) for r in rows]
