"""The storage contract every backend (local folder, Google Drive, ...) fulfils.

Backends translate their SDK's errors into ``StorageNotFound`` / ``StorageExists`` /
``StorageError`` inside themselves; nothing else imports an SDK's exceptions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Folder:
    """A resolved folder: ``id`` is the backend's handle, ``path`` the human-readable path."""

    id: str
    path: str


@dataclass(frozen=True)
class StoredFile:
    id: str
    name: str
    size: int
    path: str
    modified: datetime | None = None
    md5: str | None = None


class Storage(Protocol):
    def ensure_folder(self, path: str) -> Folder:
        """Resolve ``path`` (a validated backup_folder_path), creating missing folders.
        Idempotent."""
        ...

    def list(self, folder: Folder) -> list[StoredFile]:
        """Complete files directly in ``folder`` (never in-progress uploads)."""
        ...

    def put(self, folder: Folder, name: str, chunks: Iterable[bytes]) -> StoredFile:
        """Store the bytes of ``chunks`` as ``name`` in ``folder``.

        All or nothing: the file becomes visible only after ``chunks`` is exhausted without
        raising; if iterating raises (the dump failed) or the write fails, nothing is left
        behind and the exception propagates. Raises StorageExists rather than overwrite."""
        ...

    def discard_incomplete(self, folder: Folder) -> int:
        """Remove what writes killed mid-way left in ``folder`` (never visible to ``list``); the
        number removed. Call only holding the backup lock: then no write can be in flight."""
        ...

    def open(self, file_id: str) -> Iterator[bytes]:
        """The file's bytes, streamed in chunks. Raises StorageNotFound."""
        ...

    def stat(self, file_id: str) -> StoredFile:
        """Raises StorageNotFound when the file does not exist."""
        ...

    def delete(self, file_id: str) -> None:
        """Remove the file. Raises StorageNotFound when it does not exist."""
        ...
