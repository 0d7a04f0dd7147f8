"""Backup health from ``backup_logs``: last success and its age, failures in a row, success
rates, size trend. Read-only SQL, one statement each, usable through any pooler."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from .logrepo import iso

# Attempts that ended; an in_progress row has not told us anything yet.
_ENDED = "status IN ('success', 'failed')"


@dataclass
class Health:
    checked_at: str
    healthy: bool
    max_age_hours: int
    last_success_at: str | None
    last_success_age_hours: float | None
    last_success_id: str | None
    last_success_file: str | None
    last_failure_at: str | None
    last_failure_id: str | None
    last_failure_reason: str | None
    consecutive_failures: int
    success_rate_7d: float | None  # None: no attempt in the window
    attempts_7d: int
    success_rate_30d: float | None
    attempts_30d: int
    last_backup_bytes: int | None
    previous_backup_bytes: int | None
    size_change_bytes: int | None
    size_change_percent: float | None
    last_size_warning: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _one(conn: psycopg.Connection, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchone()  # type: ignore[arg-type]


def last_success(conn: psycopg.Connection, exclude_id: str | None = None) -> dict[str, Any] | None:
    """The newest successful attempt (deleted files included: its size and time still count)."""
    return _one(
        conn,
        "SELECT id, started_at, completed_at, file_name, file_size_bytes FROM public.backup_logs"
        " WHERE status = 'success' AND id::text IS DISTINCT FROM %s ORDER BY started_at DESC LIMIT 1",
        (exclude_id,),
    )


def consecutive_failures(conn: psycopg.Connection) -> int:
    """Failed attempts since the newest success (all of them when none ever succeeded)."""
    row = _one(
        conn,
        "SELECT count(*) AS n FROM public.backup_logs WHERE status = 'failed' AND started_at >"
        " coalesce((SELECT max(started_at) FROM public.backup_logs WHERE status = 'success'), '-infinity')",
    )
    return int(row["n"]) if row else 0


def _rate(conn: psycopg.Connection, since: datetime) -> tuple[float | None, int]:
    row = _one(
        conn,
        f"SELECT count(*) AS attempts, count(*) FILTER (WHERE status = 'success') AS ok"
        f" FROM public.backup_logs WHERE {_ENDED} AND started_at >= %s",
        (since,),
    )
    attempts = int(row["attempts"]) if row else 0
    return (round(100 * int(row["ok"]) / attempts, 1) if row and attempts else None), attempts


def read_health(conn: psycopg.Connection, now: datetime, max_age_hours: int) -> Health:
    success = last_success(conn)
    previous = last_success(conn, exclude_id=str(success["id"])) if success else None
    failure = _one(
        conn,
        "SELECT id, started_at, failure_reason FROM public.backup_logs WHERE status = 'failed'"
        " ORDER BY started_at DESC LIMIT 1",
    )
    warning = _one(
        conn,
        "SELECT size_warning FROM public.backup_logs WHERE status = 'success' ORDER BY started_at DESC LIMIT 1",
    )
    rate_7, n_7 = _rate(conn, now - timedelta(days=7))
    rate_30, n_30 = _rate(conn, now - timedelta(days=30))
    success_at = (success["completed_at"] or success["started_at"]) if success else None
    age = round((now - success_at).total_seconds() / 3600, 2) if success_at else None
    size = success["file_size_bytes"] if success else None
    prev_size = previous["file_size_bytes"] if previous else None
    change = size - prev_size if size is not None and prev_size is not None else None
    streak = consecutive_failures(conn)
    return Health(
        checked_at=now.isoformat(),
        healthy=age is not None and age <= max_age_hours and streak == 0,
        max_age_hours=max_age_hours,
        last_success_at=iso(success_at),
        last_success_age_hours=age,
        last_success_id=str(success["id"]) if success else None,
        last_success_file=success["file_name"] if success else None,
        last_failure_at=iso(failure["started_at"]) if failure else None,
        last_failure_id=str(failure["id"]) if failure else None,
        last_failure_reason=failure["failure_reason"] if failure else None,
        consecutive_failures=streak,
        success_rate_7d=rate_7,
        attempts_7d=n_7,
        success_rate_30d=rate_30,
        attempts_30d=n_30,
        last_backup_bytes=size,
        previous_backup_bytes=prev_size,
        size_change_bytes=change,
        size_change_percent=round(100 * change / prev_size, 1) if change is not None and prev_size else None,
        last_size_warning=warning["size_warning"] if warning else None,
    )


def missed_run(health: Health) -> bool:
    """No success within BACKUP_MAX_AGE_HOURS (or none at all): the daily check must alert."""
    age = health.last_success_age_hours
    return age is None or age > health.max_age_hours


def flag_size_warning(conn: psycopg.Connection, log_id: str, text: str) -> None:
    conn.execute("UPDATE public.backup_logs SET size_warning = %s WHERE id = %s", (text, log_id))
