"""Backup file names: ``DB_Backup_YYYY-MM-DD_HH-MM.sql.gz`` in the configured time zone, or
``….sql.gz.age`` when backups are encrypted (``ENCRYPTED_SUFFIX``).

A second backup in the same minute gets ``_2``, ``_3``, ... before the suffix; the pattern
below (shared with retention) accepts every form so no backup escapes pruning or listing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

PREFIX = "DB_Backup_"
SUFFIX = ".sql.gz"
ENCRYPTED_SUFFIX = ".sql.gz.age"
SUFFIXES = (SUFFIX, ENCRYPTED_SUFFIX)
# ASCII digits only and anchored with \Z (``$`` would accept a trailing newline): retention deletes
# what this matches, so nothing that merely looks like a backup name may match.
PATTERN = re.compile(
    r"^DB_Backup_(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})_(?P<hour>[0-9]{2})-(?P<minute>[0-9]{2})"
    r"(?:_(?P<seq>[2-9]|[1-9][0-9]+))?\.sql\.gz(?P<age>\.age)?\Z"
)


def base_name(moment: datetime, tz: ZoneInfo, suffix: str = SUFFIX) -> str:
    return moment.astimezone(tz).strftime(f"{PREFIX}%Y-%m-%d_%H-%M") + suffix


def stem(name: str) -> str:
    """The name without its suffix: a plain and an encrypted file of one minute share it."""
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def with_sequence(name: str, seq: int) -> str:
    base = stem(name)
    return name if seq <= 1 else f"{base}_{seq}{name[len(base) :]}"


def free_name(moment: datetime, tz: ZoneInfo, taken: Iterable[str], suffix: str = SUFFIX) -> str:
    """The first name for ``moment`` whose stem no file in ``taken`` has (never overwrite an
    earlier backup, and never give an encrypted and a plain file of one minute the same number)."""
    used = {stem(name) for name in taken}
    base = base_name(moment, tz, suffix)
    seq = 1
    while stem(with_sequence(base, seq)) in used:
        seq += 1
    return with_sequence(base, seq)


def is_encrypted(name: str) -> bool:
    return name.endswith(ENCRYPTED_SUFFIX)


def media_type(name: str) -> str:
    """What storage and downloads call the file: an age file is opaque bytes, not gzip."""
    return "application/octet-stream" if is_encrypted(name) else "application/gzip"


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
