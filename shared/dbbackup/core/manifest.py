"""A backup's manifest, what it holds table by table, and the shrink check between two of them.

The manifest is counted while the dump streams (``dump.rewrite``): every COPY block's rows and
bytes, from the dump's own snapshot, with no extra query. It is stored on the attempt's row as
``{"tables": {"schema.table": {"rows": N, "bytes": B}, ...}}`` (names unquoted).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

Counts = Mapping[str, tuple[int, int]]  # schema.table -> (rows, bytes)


def as_json(tables: Counts) -> dict[str, Any]:
    """The stored shape, tables sorted by name."""
    return {"tables": {name: {"rows": rows, "bytes": size} for name, (rows, size) in sorted(tables.items())}}


def rows_of(manifest: Mapping[str, Any] | None) -> dict[str, int] | None:
    """Rows per table of a stored manifest; None when there is none (a backup taken before
    manifests existed) or it is not of the stored shape."""
    if not isinstance(manifest, Mapping) or not isinstance(manifest.get("tables"), Mapping):
        return None
    rows: dict[str, int] = {}
    for name, entry in manifest["tables"].items():
        if isinstance(entry, Mapping) and isinstance(entry.get("rows"), int):
            rows[str(name)] = int(entry["rows"])
    return rows


@dataclass(frozen=True)
class Shrink:
    table: str
    before: int
    after: int | None  # None: the table is gone


def shrunk(before: Mapping[str, int], after: Mapping[str, int], percent: int, min_rows: int) -> list[Shrink]:
    """Tables of ``before`` that disappeared, went to 0 rows, or lost more than ``percent`` % of
    their rows while they had at least ``min_rows`` (percent 0: only the first two)."""
    found: list[Shrink] = []
    for table in sorted(before):
        had = before[table]
        if table not in after:
            found.append(Shrink(table, had, None))
            continue
        now = after[table]
        if had > 0 and now == 0:
            found.append(Shrink(table, had, 0))
        elif percent and had >= min_rows and (had - now) * 100 > had * percent:
            found.append(Shrink(table, had, now))
    return found


def since(previous: datetime, now: datetime, tz: ZoneInfo) -> str:
    """ "since yesterday's backup", "since today's earlier backup", or "since the backup of <date>"."""
    days = (now.astimezone(tz).date() - previous.astimezone(tz).date()).days
    if days == 0:
        return "since today's earlier backup"
    if days == 1:
        return "since yesterday's backup"
    return f"since the backup of {previous.astimezone(tz):%Y-%m-%d}"


def describe(shrink: Shrink, when: str) -> str:
    """One warning line: ``public.invoices: 120,000 → 3 rows since yesterday's backup``."""
    if shrink.after is None:
        return f"{shrink.table}: {shrink.before:,} rows → table gone {when}"
    return f"{shrink.table}: {shrink.before:,} → {shrink.after:,} rows {when}"
