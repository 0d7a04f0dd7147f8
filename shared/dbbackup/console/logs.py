"""The backup log as the console shows it: the query string validated against whitelists (a
value is compared with allowed values, never put into SQL text), one page of rows with the
total, or every matching row streamed as spreadsheet-safe CSV from a server-side cursor."""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import psycopg

from dbbackup.core import naming
from dbbackup.core.messages import human_size
from dbbackup.errors import QueryError
from dbbackup.pg import log_query
from dbbackup.pg.log_query import DEFAULT_PER_PAGE, SORTABLE, LogQuery

# Allowed values of each parameter, the first being the default. The OpenAPI document and the
# docs/http-api.md are built from / checked against these.
CHOICES: dict[str, tuple[str, ...]] = {
    "status": ("all", "success", "failed", "in_progress"),
    "type": ("all", "automatic", "manual"),
    "range": ("all", "last_7_days", "last_30_days"),
    "sort": SORTABLE,
    "order": ("desc", "asc"),
}
DATES = ("from", "to")  # YYYY-MM-DD, inclusive, in BACKUP_TIMEZONE
PAGING = ("page", "per_page")
FILTERS = (*CHOICES, *DATES)  # what /api/logs.csv accepts
MAX_PER_PAGE, MAX_PAGE = 100, 1_000_000
FIRST_DATE, LAST_DATE = date(1900, 1, 1), date(9999, 12, 30)
CSV_BATCH = 500  # rows per fetch of the export's cursor, and per chunk sent
DRIVE_URL = "https://drive.google.com/file/d/{}/view"
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_NUMBER = re.compile(r"^[0-9]{1,7}$")
CSV_HEADER = (
    "id",
    "started_at",
    "completed_at",
    "backup_type",
    "status",
    "file_name",
    "file_size_bytes",
    "file_size_human",
    "google_drive_path",
    "drive_url",
    "failure_reason",
    "triggered_by",
    "deleted_at",
    "deleted",
)


def parse_query(query: str, *, paged: bool = True) -> LogQuery:
    """The query string of ``/api/logs`` (``paged``) or ``/api/logs.csv``; QueryError otherwise.
    An empty value means the default (a form's empty date field)."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query), errors="strict", max_num_fields=20)
    except (ValueError, UnicodeDecodeError):
        raise QueryError("query", "the query string is malformed") from None
    allowed = (*FILTERS, *PAGING) if paged else FILTERS
    given: dict[str, str] = {}
    for name, value in pairs:
        if name not in allowed:
            raise QueryError(name[:40], f"unknown parameter {name[:40]!r}; accepted: {', '.join(allowed)}")
        if name in given:
            raise QueryError(name, f"parameter {name!r} is given more than once")
        given[name] = value.strip()
    found: dict[str, Any] = {}
    for name, options in CHOICES.items():
        value = given.get(name) or options[0]
        if value not in options:
            raise QueryError(name, f"{name} must be one of {', '.join(options)}")
        found[name] = value
    date_from, date_to = _date(given, "from"), _date(given, "to")
    if (date_from or date_to) and found["range"] != "all":
        raise QueryError("range", "use either range or from/to, not both")
    if date_from and date_to and date_from > date_to:
        raise QueryError("from", "from is after to")
    page = _number(given, "page", 1, 1, MAX_PAGE)
    per_page = _number(given, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
    return LogQuery(**found, date_from=date_from, date_to=date_to, page=page, per_page=per_page)


def _date(given: dict[str, str], name: str) -> date | None:
    text = given.get(name)
    if not text:
        return None
    try:
        if not _DATE.match(text):
            raise ValueError
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    # Bounded so that the day after (`to` is inclusive) and local midnight in any zone stay
    # within what date and datetime can hold: 9999-12-31 would overflow into a 500.
    if day is None or not FIRST_DATE <= day <= LAST_DATE:
        raise QueryError(name, f"{name} must be a date YYYY-MM-DD from {FIRST_DATE} to {LAST_DATE}")
    return day


def _number(given: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = given.get(name) or str(default)
    if not _NUMBER.match(text) or not low <= int(text) <= high:
        raise QueryError(name, f"{name} must be a whole number from {low} to {high}")
    return int(text)


def read_page(conn: psycopg.Connection, q: LogQuery, tz: ZoneInfo, now: datetime, drive: bool) -> dict[str, Any]:
    """One page and the count (two statements; a row written between them may shift a page)."""
    total, rows = log_query.page(conn, q, tz, now)
    copies = log_query.copies_of(conn, [row["id"] for row in rows])
    return {
        "items": [present(row, tz, drive) | {"copies": copies.get(str(row["id"]), [])} for row in rows],
        "total": total,
        "page": q.page,
        "per_page": q.per_page,
        "pages": max(1, math.ceil(total / q.per_page)),
        "sort": q.sort,
        "order": q.order,
    }


def _iso(value: datetime | None, tz: ZoneInfo) -> str | None:
    return value.astimezone(tz).isoformat() if value else None


def present(row: dict[str, Any], tz: ZoneInfo, drive: bool) -> dict[str, Any]:
    """A backup_logs row as the console's Row (times in BACKUP_TIMEZONE, with their offset)."""
    size, file_id = row["file_size_bytes"], row["google_drive_file_id"]
    deleted = row["deleted_at"] is not None
    return {
        "id": str(row["id"]),
        "started_at": _iso(row["started_at"], tz),
        "completed_at": _iso(row["completed_at"], tz),
        "backup_type": row["backup_type"],
        "status": row["status"],
        "file_name": row["file_name"],
        "file_size_bytes": size,
        "file_size_human": human_size(size).split(" (")[0] if size is not None else None,
        "google_drive_file_id": file_id,
        "google_drive_path": row["google_drive_path"],
        # A deleted file's Drive link would open "not found": only live backups get one.
        "drive_url": DRIVE_URL.format(file_id) if drive and file_id and not deleted else None,
        "failure_reason": row["failure_reason"] if row["status"] == "failed" else None,
        "triggered_by": row["triggered_by"],
        "deleted_at": _iso(row["deleted_at"], tz),
        "deleted": deleted,
        "downloadable": row["status"] == "success" and not deleted,
        "encrypted": naming.is_encrypted(row["file_name"] or ""),
        "decrypt_command": decrypt_command(row["file_name"] or ""),
        # The last restore drill of this backup (weekly, or "Verify now"): the logs table's badge.
        "verify_status": row.get("verify_status"),
        "verified_at": _iso(row.get("verified_at"), tz),
    }


def decrypt_command(name: str) -> str | None:
    """What a person runs on a downloaded encrypted backup (the README's restore promise); only
    for names that can be shown in a shell line as they are."""
    if not naming.is_encrypted(name) or not naming.PATTERN.match(name):
        return None
    return f"age -d -i key.txt {name} | gunzip | psql -X -v ON_ERROR_STOP=1 -d EMPTY_DB_URL"


# The start of the cell, and of every segment a spreadsheet may split the cell into when it
# imports with ";" or "," as the separator (spaces after it may be trimmed), before a character
# that would start a formula there.
_FORMULA_START = re.compile(r"(^|[;,])( *)(?=[=+\-@\t\r])")


def safe_cell(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text: wherever a segment starts like a formula (the
    cell's start, or after a ";" or ","), a quote goes in front of it."""
    if value is None:
        return ""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return _FORMULA_START.sub(r"\1\2'", text)


def _csv_bytes(rows: list[tuple[Any, ...]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows([[safe_cell(v) for v in row] for row in rows])
    return buffer.getvalue().encode("utf-8")


class CsvExport:
    """Every matching row as CSV bytes, read in batches from a server-side cursor on a
    connection of its own, so memory stays flat whatever the table holds. ``close`` releases the
    connection; the adapter calls it when the response ends, whether or not it was read to the
    end (a client that goes away), and iterating to the end calls it too."""

    def __init__(self, conn: psycopg.Connection, q: LogQuery, tz: ZoneInfo, now: datetime, drive: bool) -> None:
        self.tz, self.drive = tz, drive
        self.rows = log_query.RowCursor(conn, q, tz, now, CSV_BATCH)  # errors here still become a JSON answer

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield _csv_bytes([CSV_HEADER])
            while batch := self.rows.fetch():
                rows = [present(row, self.tz, self.drive) for row in batch]
                yield _csv_bytes([tuple(row[k] for k in CSV_HEADER) for row in rows])
        finally:
            self.close()

    def close(self) -> None:
        self.rows.close()
