"""Resolving a backup SOURCE (a file path, a backup_logs id, or ``latest``) to a byte stream."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dbbackup.core.ports import BackupLog, LogRow, OpenLog, Storage
from dbbackup.errors import BackupError, StorageNotFound, UsageError
from dbbackup.redact import one_line

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
READ_CHUNK = 1 << 20
# Where ids and ``latest`` are looked up: the backup log, a storage by target name, and the
# targets BACKUP_STORAGE lists (the first is the primary); ``wiring`` builds them only when a
# SOURCE needs them: a file path needs no configuration at all.
Lookup = Callable[[], tuple[OpenLog, Callable[[str], Storage], tuple[str, ...]]]
# How many of the newest successful rows ``latest`` considers when looking for one whose file
# the configured storage holds.
LATEST_CANDIDATES = 50


@dataclass
class Source:
    label: str  # what to call it in messages
    open: Callable[[], Iterator[bytes]]
    row: LogRow | None  # its backup_logs row, when known
    target: str | None = None  # the storage target it is read from, for a logged backup
    # ``(offset, length)`` -> those bytes of the stored file (Storage.open_range), streamed.
    open_range: Callable[[int, int], Iterator[bytes]] | None = None
    size: int | None = None  # of the stored file, when known without reading it


def _file_chunks(path: Path, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        fh.seek(offset)
        left = length
        while left is None or left > 0:
            block = fh.read(READ_CHUNK if left is None else min(READ_CHUNK, left))
            if not block:
                break
            if left is not None:
                left -= len(block)
            yield block


def resolve(source: str, lookup: Lookup, from_target: str | None = None) -> Source:
    """A path that exists is a file; otherwise an id or ``latest`` is looked up in backup_logs
    (DATABASE_URL) and read from the first target (in BACKUP_STORAGE's order) that holds a good
    copy, or from ``from_target`` only."""
    path = Path(source)
    if path.is_file():
        if from_target is not None:
            raise UsageError("--from picks a copy of a logged backup; a file path is read as it is")
        return Source(
            str(path),
            lambda: _file_chunks(path),
            _row_for_file(path, lookup),
            open_range=functools.partial(_file_chunks, path),
            size=path.stat().st_size,
        )
    if source != "latest" and not UUID_RE.match(source):
        raise UsageError(f"{source}: no such file, and not a backup_logs id or 'latest'")
    open_log, storage_for, targets = lookup()
    if from_target is not None and from_target not in targets:
        raise UsageError(f"--from {from_target}: not one of BACKUP_STORAGE's targets ({', '.join(targets)})")
    wanted = (from_target,) if from_target else targets
    if source == "latest":
        return _latest(open_log, storage_for, wanted, targets)
    with open_log() as log:
        row = log.get(source)
        copies = _copies(log, row, targets) if row is not None else []
    if row is None:
        raise UsageError(f"no backup_logs row {source}")
    if row.status != "success":
        raise UsageError(f"backup {row.id} is {row.status}, not a successful backup")
    if row.deleted_at is not None and not copies:
        raise UsageError(f"backup {row.id} ({row.file_name}) was deleted by retention")
    if not copies:
        raise UsageError(f"backup {row.id} ({row.file_name}) has no storage file id in backup_logs")
    problems: list[str] = []
    found = _first_held(row, copies, wanted, storage_for, problems)
    if found is None:
        where = from_target or ", ".join(targets)
        held = ", ".join(t for t, _ in copies)
        detail = f"; {'; '.join(problems)}" if problems else ""
        raise UsageError(
            f"backup {row.id}: file {row.file_name} is missing from storage ({where}; copies recorded in:"
            f" {held}){detail}"
        )
    return found


def _copies(log: BackupLog, row: LogRow, targets: tuple[str, ...]) -> list[tuple[str, str]]:
    """(target, file id) of each good copy of ``row``: its ``backup_copies`` rows, or, for a backup
    made before them (or by one target), the row's own file on the backend that wrote it."""
    recorded = [(c.target, c.file_id) for c in log.copies(row.id) if c.status == "success" and c.file_id]
    if recorded:
        return recorded  # the live ones: retention may have deleted the primary's and kept another
    if not row.google_drive_file_id or row.deleted_at is not None:
        return []
    return [(row.storage_backend or targets[0], row.google_drive_file_id)]


def _first_held(
    row: LogRow,
    copies: list[tuple[str, str]],
    wanted: tuple[str, ...],
    storage_for: Callable[[str], Storage],
    problems: list[str] | None = None,
) -> Source | None:
    """The first wanted target whose copy is there; a target out of reach (an outage, a revoked
    key) is noted in ``problems`` and the next one is tried: that is what several copies are for."""
    for target in wanted:
        for name, file_id in copies:
            if name != target:
                continue
            try:
                storage = storage_for(target)
                stat = storage.stat(file_id)
            except StorageNotFound:
                continue
            except BackupError as exc:  # StorageError, ConfigError: this copy is out of reach now
                if problems is not None:
                    problems.append(f"{target}: {one_line(str(exc), 200)}")
                continue
            # Name the target whenever there is a choice of copies (several targets configured).
            label = f"{row.file_name} ({row.id}" + (f", from {target})" if len(wanted) > 1 or len(copies) > 1 else ")")
            return Source(
                label,
                functools.partial(storage.open, file_id),
                row,
                target,
                functools.partial(storage.open_range, file_id),
                stat.size,
            )
    return None


def _latest(
    open_log: OpenLog, storage_for: Callable[[str], Storage], wanted: tuple[str, ...], targets: tuple[str, ...]
) -> Source:
    """The newest successful backup whose copy a wanted target holds: rows of another backend,
    and rows (older than migration 008, or of another local folder) whose file is not there, are
    passed over."""
    with open_log() as log:
        rows = log.latest_successes(LATEST_CANDIDATES)
        candidates = [(row, _copies(log, row, targets)) for row in rows]
    if not rows:
        raise UsageError("no successful backup in backup_logs")
    problems: list[str] = []
    for row, copies in candidates:
        found = _first_held(row, copies, wanted, storage_for, problems)
        if found is not None:
            return found
    detail = f" ({problems[0]})" if problems else ""
    raise UsageError(
        f"none of the {len(rows)} newest successful backups in backup_logs is in the configured storage"
        f" (BACKUP_STORAGE={','.join(wanted)}){detail}; name one by id or file instead"
    )


def _row_for_file(path: Path, lookup: Lookup) -> LogRow | None:
    """The log row of a local file, by name, when a database is configured (best effort)."""
    try:
        open_log, _, _ = lookup()
        with open_log(attempts=1) as log:
            return log.by_file_name(path.name, path.stat().st_size)
    except BackupError:
        return None
