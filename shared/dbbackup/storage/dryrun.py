"""``--dry-run`` as a storage wrapper, not a flag threaded through the code: the cleanup's steps
run unchanged against a storage whose deletes are only remembered."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from dbbackup.core.ports import Folder, Storage, StoredFile
from dbbackup.errors import StorageError, StorageNotFound


class DryRunStorage:
    """Reads pass through; a delete is only remembered (and the file then looks gone); nothing
    is written or removed."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.deleted: set[str] = set()

    def ensure_folder(self, path: str) -> Folder:
        return self.inner.ensure_folder(path)

    def list(self, folder: Folder) -> list[StoredFile]:
        return [f for f in self.inner.list(folder) if f.id not in self.deleted]

    def put(self, folder: Folder, name: str, chunks: Iterable[bytes]) -> StoredFile:
        raise StorageError("dry run: nothing is written")

    def discard_incomplete(self, folder: Folder) -> int:
        return 0  # a dry run removes nothing

    def open(self, file_id: str) -> Iterator[bytes]:
        if file_id in self.deleted:
            raise StorageNotFound(f"{file_id} (dry run: would be deleted)")
        return self.inner.open(file_id)

    def open_range(self, file_id: str, offset: int, length: int) -> Iterator[bytes]:
        if file_id in self.deleted:
            raise StorageNotFound(f"{file_id} (dry run: would be deleted)")
        return self.inner.open_range(file_id, offset, length)

    def stat(self, file_id: str) -> StoredFile:
        if file_id in self.deleted:
            raise StorageNotFound(f"{file_id} (dry run: would be deleted)")
        return self.inner.stat(file_id)

    def delete(self, file_id: str) -> None:
        if file_id in self.deleted:
            raise StorageNotFound(f"{file_id} (dry run: already deleted)")
        self.inner.stat(file_id)  # the same StorageNotFound a real delete would raise
        self.deleted.add(file_id)
