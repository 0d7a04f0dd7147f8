"""Resolving a backup SOURCE (a file path, a backup_logs id, or ``latest``) to a byte stream."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dbbackup.core.ports import LogRow, OpenLog, Storage
from dbbackup.errors import BackupError, StorageNotFound, UsageError

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
READ_CHUNK = 1 << 20
# Where ids and ``latest`` are looked up: the backup log, the storage and its backend's name
# (BACKUP_STORAGE); ``wiring`` builds them only when a SOURCE needs them: a file path needs no
# configuration at all.
Lookup = Callable[[], tuple[OpenLog, Callable[[], Storage], str]]
# How many of the newest successful rows ``latest`` considers when looking for one whose file
# the configured storage holds.
LATEST_CANDIDATES = 50


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
    open_log, make_storage, backend = lookup()
    if source == "latest":
        return _latest(open_log, make_storage(), backend)
    with open_log() as log:
        row = log.get(source)
    if row is None:
        raise UsageError(f"no backup_logs row {source}")
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


def _latest(open_log: OpenLog, storage: Storage, backend: str) -> Source:
    """The newest successful backup that ``storage`` holds: rows another backend wrote are passed
    over, and so are rows (older than migration 008, or of another local folder) whose file this
    storage does not have."""
    with open_log() as log:
        rows = log.latest_successes(LATEST_CANDIDATES)
    if not rows:
        raise UsageError("no successful backup in backup_logs")
    for row in rows:
        file_id = row.google_drive_file_id
        if row.storage_backend not in (None, backend) or not file_id:
            continue
        try:
            storage.stat(file_id)
        except StorageNotFound:
            continue
        return Source(f"{row.file_name} ({row.id})", functools.partial(storage.open, file_id), row)
    raise UsageError(
        f"none of the {len(rows)} newest successful backups in backup_logs is in the configured storage"
        f" (BACKUP_STORAGE={backend}); name one by id or file instead"
    )


def _row_for_file(path: Path, lookup: Lookup) -> LogRow | None:
    """The log row of a local file, by name, when a database is configured (best effort)."""
    try:
        open_log, _, _ = lookup()
        with open_log(attempts=1) as log:
            return log.by_file_name(path.name)
    except BackupError:
        return None
