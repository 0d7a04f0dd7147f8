"""Resolving a backup SOURCE (a file path, a backup_logs id, or ``latest``) to a byte stream."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dbbackup.core.ports import LogRow, OpenLog, Storage
from dbbackup.errors import BackupError, StorageNotFound, UsageError

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
READ_CHUNK = 1 << 20
# Where ids and ``latest`` are looked up: the backup log and the storage (``wiring`` builds both,
# only when a SOURCE needs them: a file path needs no configuration at all).
Lookup = Callable[[], tuple[OpenLog, Callable[[], Storage]]]


@dataclass
class Source:
    label: str  # what to call it in messages
    open: Callable[[], Iterator[bytes]]
    row: LogRow | None  # its backup_logs row, when known


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while block := fh.read(READ_CHUNK):
            yield block


def resolve(source: str, lookup: Lookup) -> Source:
    """A path that exists is a file; otherwise an id or ``latest`` is looked up in backup_logs
    (DATABASE_URL) and opened from the configured storage."""
    path = Path(source)
    if path.is_file():
        return Source(str(path), lambda: _file_chunks(path), _row_for_file(path, lookup))
    if source != "latest" and not UUID_RE.match(source):
        raise UsageError(f"{source}: no such file, and not a backup_logs id or 'latest'")
    open_log, make_storage = lookup()
    with open_log() as log:
        row = log.latest_success() if source == "latest" else log.get(source)
    if row is None:
        raise UsageError(
            "no successful backup in backup_logs" if source == "latest" else f"no backup_logs row {source}"
        )
    if row.status != "success":
        raise UsageError(f"backup {row.id} is {row.status}, not a successful backup")
    if row.deleted_at is not None:
        raise UsageError(f"backup {row.id} ({row.file_name}) was deleted by retention")
    if not row.google_drive_file_id:
        raise UsageError(f"backup {row.id} ({row.file_name}) has no storage file id in backup_logs")
    storage = make_storage()
    file_id = row.google_drive_file_id
    try:
        storage.stat(file_id)
    except StorageNotFound:
        raise UsageError(f"backup {row.id}: file {row.file_name} is missing from storage") from None
    return Source(f"{row.file_name} ({row.id})", lambda: storage.open(file_id), row)


def _row_for_file(path: Path, lookup: Lookup) -> LogRow | None:
    """The log row of a local file, by name, when a database is configured (best effort)."""
    try:
        open_log, _ = lookup()
        with open_log(attempts=1) as log:
            return log.by_file_name(path.name)
    except BackupError:
        return None
