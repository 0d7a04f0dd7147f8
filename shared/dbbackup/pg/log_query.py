"""The console's queries of ``backup_logs``: a filtered, sorted page with its count, and every
matching row through a server-side cursor. Filter values are always parameters; the only parts
of the SQL text that vary come from whitelists (a sort column is also quoted as an identifier)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

RANGE_DAYS = {"last_7_days": 7, "last_30_days": 30}
SORTABLE = ("started_at", "file_size_bytes", "status")
DEFAULT_PER_PAGE = 20
_COLUMNS = (
    "id, started_at, completed_at, backup_type, status, file_name, file_size_bytes, google_drive_file_id,"
    " google_drive_path, failure_reason, triggered_by, deleted_at, verify_status, verified_at"
)


@dataclass(frozen=True)
class LogQuery:
    status: str = "all"
    type: str = "all"
    range: str = "all"
    date_from: date | None = None
    date_to: date | None = None
    sort: str = "started_at"
    order: str = "desc"
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz)


def _where(q: LogQuery, tz: ZoneInfo, now: datetime) -> tuple[sql.Composable, list[Any]]:
    clauses: list[sql.Composable] = [sql.SQL("TRUE")]
    params: list[Any] = []
    if q.status != "all":
        clauses.append(sql.SQL("status = %s"))
        params.append(q.status)
    if q.type != "all":
        clauses.append(sql.SQL("backup_type = %s"))
        params.append(q.type)
    if q.range in RANGE_DAYS:
        clauses.append(sql.SQL("started_at >= %s"))
        params.append(now - timedelta(days=RANGE_DAYS[q.range]))
    if q.date_from:
        clauses.append(sql.SQL("started_at >= %s"))
        params.append(_local_midnight(q.date_from, tz))
    if q.date_to:
        # Inclusive: everything before the next local midnight.
        clauses.append(sql.SQL("started_at < %s"))
        params.append(_local_midnight(q.date_to + timedelta(days=1), tz))
    return sql.SQL(" AND ").join(clauses), params


def _order(q: LogQuery) -> sql.Composable:
    assert q.sort in SORTABLE  # parse_query's whitelist; quoted as an identifier besides
    direction = sql.SQL("ASC" if q.order == "asc" else "DESC")
    column = sql.Identifier(q.sort)
    if q.sort == "started_at":
        return sql.SQL("started_at {d}, id {d}").format(d=direction)
    # Failed rows have no size: they go last either way; ties stay newest first and stable.
    return sql.SQL("{c} {d} NULLS LAST, started_at DESC, id DESC").format(c=column, d=direction)


def _select(q: LogQuery, tz: ZoneInfo, now: datetime) -> tuple[sql.Composed, list[Any]]:
    where, params = _where(q, tz, now)
    statement = sql.SQL("SELECT {cols} FROM public.backup_logs WHERE {where} ORDER BY {order}").format(
        cols=sql.SQL(_COLUMNS), where=where, order=_order(q)
    )
    return statement, params


def page(conn: psycopg.Connection, q: LogQuery, tz: ZoneInfo, now: datetime) -> tuple[int, list[dict[str, Any]]]:
    """The count of matching rows and the rows of page ``q.page``."""
    where, params = _where(q, tz, now)
    with conn.cursor(row_factory=dict_row) as cur:
        count = cur.execute(sql.SQL("SELECT count(*) AS n FROM public.backup_logs WHERE {}").format(where), params)
        total = int(count.fetchall()[0]["n"])
        statement, params = _select(q, tz, now)
        rows = cur.execute(
            sql.SQL("{} LIMIT %s OFFSET %s").format(statement), [*params, q.per_page, (q.page - 1) * q.per_page]
        ).fetchall()
    return total, rows


def copies_of(conn: psycopg.Connection, ids: list[Any]) -> dict[str, list[dict[str, Any]]]:
    """Per backup_logs id, its copies (target, status, deleted) in the order they were written;
    empty before migration 011."""
    if not ids:
        return {}
    found: dict[str, list[dict[str, Any]]] = {}
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT backup_log_id, target, status, deleted_at IS NOT NULL AS deleted FROM public.backup_copies"
                " WHERE backup_log_id = ANY(%s) ORDER BY created_at, id",
                (ids,),
            ).fetchall()
    except psycopg.errors.UndefinedTable:
        return {}
    for r in rows:
        found.setdefault(str(r["backup_log_id"]), []).append(
            {"target": r["target"], "status": r["status"], "deleted": r["deleted"]}
        )
    return found


class RowCursor:
    """Every matching row, ``batch`` at a time, from a server-side cursor on ``conn`` (which it
    owns and closes), so memory stays flat whatever the table holds."""

    def __init__(self, conn: psycopg.Connection, q: LogQuery, tz: ZoneInfo, now: datetime, batch: int) -> None:
        self.conn, self.batch = conn, batch
        try:
            # A named cursor lives in a transaction: read-only, and bounded in case the client
            # stalls and leaves it idle (it would hold back vacuum).
            conn.autocommit = False
            conn.read_only = True
            conn.execute("SET LOCAL idle_in_transaction_session_timeout = '10min'")
            statement, params = _select(q, tz, now)
            self.cursor = conn.cursor("dbbackup_console_csv", row_factory=dict_row)
            self.cursor.itersize = batch
            self.cursor.execute(statement, params)
        except BaseException:
            conn.close()
            raise

    def fetch(self) -> list[dict[str, Any]]:
        return self.cursor.fetchmany(self.batch)

    def close(self) -> None:
        self.conn.close()  # idempotent; the server rolls the read-only transaction back
