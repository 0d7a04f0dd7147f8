"""The backup history the console draws (``GET /api/history``): one small row per attempt of
the last N days, oldest first."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row


def attempts_since(conn: psycopg.Connection, since: datetime) -> list[dict[str, Any]]:
    """Every attempt started at or after ``since``: id, when, type, status, stored size and how
    long it took (seconds; None while it runs), and the first line of a failure's reason."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT id::text AS id, started_at, backup_type, status, file_size_bytes,"
            " EXTRACT(EPOCH FROM (completed_at - started_at))::float8 AS duration_seconds,"
            " split_part(failure_reason, E'\\n', 1) AS failure_reason"
            " FROM public.backup_logs WHERE started_at >= %s ORDER BY started_at, id",
            (since,),
        ).fetchall()


def window(now: datetime, days: int) -> datetime:
    return now - timedelta(days=days)
