"""Resolving a backup SOURCE (a file path, a backup_logs id, or ``latest``) to a byte stream."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from . import db
from .errors import BackupError, StorageNotFound, UsageError
from .logrepo import LogRepository
from .settings import Settings

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
READ_CHUNK = 1 << 20


@dataclass
class Source:
    label: str  # what to call it in messages
    open: Callable[[], Iterator[bytes]]
    row: dict[str, Any] | None  # its backup_logs row, when known


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while block := fh.read(READ_CHUNK):
            yield block


def resolve(source: str, settings_loader: Callable[[], Settings] = Settings.from_env) -> Source:
    """A path that exists is a file; otherwise an id or ``latest`` is looked up in backup_logs
    (DATABASE_URL) and opened from the configured storage."""
    path = Path(source)
    if path.is_file():
        return Source(str(path), lambda: _file_chunks(path), _row_for_file(path, settings_loader))
    if source != "latest" and not UUID_RE.match(source):
        raise UsageError(f"{source}: no such file, and not a backup_logs id or 'latest'")
    settings = settings_loader()
    with db.connect(settings.database_url, secrets=settings.secrets) as conn:
        repo = LogRepository(conn)
        row = repo.latest_success() if source == "latest" else repo.get(source)
    if row is None:
        raise UsageError(
            "no successful backup in backup_logs" if source == "latest" else f"no backup_logs row {source}"
        )
    if row["status"] != "success":
        raise UsageError(f"backup {row['id']} is {row['status']}, not a successful backup")
    if row["deleted_at"] is not None:
        raise UsageError(f"backup {row['id']} ({row['file_name']}) was deleted by retention")
    from .backup import make_storage

    storage = make_storage(settings)
    file_id = row["google_drive_file_id"]
    try:
        storage.stat(file_id)
    except StorageNotFound:
        raise UsageError(f"backup {row['id']}: file {row['file_name']} is missing from storage") from None
    return Source(f"{row['file_name']} ({row['id']})", lambda: storage.open(file_id), row)


def _row_for_file(path: Path, settings_loader: Callable[[], Settings]) -> dict[str, Any] | None:
    """The log row of a local file, by name, when a database is configured (best effort)."""
    try:
        settings = settings_loader()
        with db.connect(settings.database_url, attempts=1, secrets=settings.secrets) as conn:
            return LogRepository(conn).by_file_name(path.name)
    except (BackupError, psycopg.Error):
        return None
