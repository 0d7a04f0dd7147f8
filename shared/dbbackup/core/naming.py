"""Backup file names: ``DB_Backup_YYYY-MM-DD_HH-MM.sql.gz`` in the configured time zone.

A second backup in the same minute gets ``_2``, ``_3``, ... before ``.sql.gz``; the pattern
below (shared with retention) accepts both forms so no backup escapes pruning or listing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

PREFIX = "DB_Backup_"
SUFFIX = ".sql.gz"
# ASCII digits only and anchored with \Z (``$`` would accept a trailing newline): retention deletes
# what this matches, so nothing that merely looks like a backup name may match.
PATTERN = re.compile(
    r"^DB_Backup_(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})_(?P<hour>[0-9]{2})-(?P<minute>[0-9]{2})"
    r"(?:_(?P<seq>[2-9]|[1-9][0-9]+))?\.sql\.gz\Z"
)


def base_name(moment: datetime, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime(f"{PREFIX}%Y-%m-%d_%H-%M{SUFFIX}")


def with_sequence(name: str, seq: int) -> str:
    return name if seq <= 1 else f"{name[: -len(SUFFIX)]}_{seq}{SUFFIX}"


def free_name(moment: datetime, tz: ZoneInfo, taken: Iterable[str]) -> str:
    """The first name for ``moment`` not in ``taken`` (never overwrite an earlier backup)."""
    used = set(taken)
    base = base_name(moment, tz)
    seq = 1
    while with_sequence(base, seq) in used:
        seq += 1
    return with_sequence(base, seq)


def parse(name: str, tz: ZoneInfo) -> datetime | None:
    """The local time a backup name encodes, or None when the name is not a backup's."""
    match = PATTERN.match(name)
    if not match:
        return None
    try:
        naive = datetime.strptime(f"{match['date']} {match['hour']}:{match['minute']}", "%Y-%m-%d %H:%M")
    except ValueError:
        return None
    # In the hour a clock falls back, a local time names two moments; reading it as the later one
    # makes a file look younger, never older, so retention can only keep it longer.
    return naive.replace(tzinfo=tz, fold=1)
