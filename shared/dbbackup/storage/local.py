"""The local-folder backend: ``BACKUP_LOCAL_ROOT`` / ``backup_folder_path`` / file.

A file is written under a hidden temporary name, fsynced, then hard-linked to its final name
(which fails instead of overwriting) so a reader never sees a partial backup.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from dbbackup.core import folder_path
from dbbackup.core.ports import Folder, StoredFile
from dbbackup.errors import StorageError, StorageExists, StorageNotFound

READ_CHUNK = 1 << 20
TEMP_PREFIX = ".partial-"


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()

    def _abs(self, file_id: str) -> Path:
        path = (self.root / file_id).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise StorageNotFound(f"{file_id}: outside the storage root")
        return path

    def _file(self, path: Path, st: os.stat_result | None = None) -> StoredFile:
        st = st or path.stat()
        rel = path.relative_to(self.root.resolve()).as_posix()
        return StoredFile(
            id=rel,
            name=path.name,
            size=st.st_size,
            path=str(path),
            modified=datetime.fromtimestamp(st.st_mtime, UTC),
        )

    def ensure_folder(self, path: str) -> Folder:
        segments = folder_path.split(path)
        target = self.root.joinpath(*segments)
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create folder {target}: {exc.strerror or exc}") from None
        if not os.access(target, os.W_OK | os.X_OK):
            raise StorageError(f"folder {target} is not writable")
        return Folder(id="/".join(segments), path=str(target))

    def subfolder(self, folder: Folder, name: str, create: bool = True) -> Folder:
        if not name or "/" in name or name.startswith("."):
            raise StorageError(f"invalid folder name {name!r}")
        if not create:
            child = self._abs(f"{folder.id}/{name}")
            if not child.is_dir():
                raise StorageNotFound(f"folder {child} does not exist")
            return Folder(id=f"{folder.id}/{name}", path=str(child))
        return self.ensure_folder(f"{folder.id}/{name}")

    def list(self, folder: Folder) -> list[StoredFile]:
        directory = self._abs(folder.id)
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            raise StorageNotFound(f"folder {directory} does not exist") from None
        except OSError as exc:
            raise StorageError(f"cannot list {directory}: {exc.strerror or exc}") from None
        return [
            self._file(Path(e.path).resolve(), e.stat())
            for e in entries
            if e.is_file(follow_symlinks=False) and not e.name.startswith(TEMP_PREFIX)
        ]

    def discard_incomplete(self, folder: Folder) -> int:
        # A kill -9 or a platform timeout skips put()'s cleanup and leaves its temporary file.
        removed = 0
        for entry in os.scandir(self._abs(folder.id)):
            if entry.name.startswith(TEMP_PREFIX) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
        return removed

    def put(self, folder: Folder, name: str, chunks: Iterable[bytes]) -> StoredFile:
        if "/" in name or name.startswith("."):
            raise StorageError(f"invalid file name {name!r}")
        directory = self._abs(folder.id)
        final = directory / name
        if final.exists():
            raise StorageExists(f"{final} already exists")
        temp = directory / f"{TEMP_PREFIX}{secrets.token_hex(6)}-{name}"
        md5 = hashlib.md5(usedforsecurity=False)
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        except OSError as exc:
            raise StorageError(f"cannot create {temp}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "wb", buffering=0) as fh:
                for chunk in chunks:
                    md5.update(chunk)
                    view = memoryview(chunk)
                    while view:
                        try:
                            written = fh.write(view)
                        except OSError as exc:
                            raise StorageError(f"write to {final} failed: {exc.strerror or exc}") from None
                        view = view[written:]
                os.fsync(fh.fileno())
            try:
                os.link(temp, final)
            except FileExistsError:
                raise StorageExists(f"{final} already exists") from None
            except OSError as exc:
                raise StorageError(f"cannot publish {final}: {exc.strerror or exc}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        self._fsync_dir(directory)
        return StoredFile(**{**self._file(final).__dict__, "md5": md5.hexdigest()})

    @staticmethod
    def _fsync_dir(directory: Path) -> None:
        with contextlib.suppress(OSError):
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _opened(self, file_id: str) -> tuple[Path, BinaryIO]:
        """The file, opened now (so a missing one fails at the call, not at the first read); the
        caller's generator closes it."""
        path = self._abs(file_id)
        try:
            return path, open(path, "rb")
        except FileNotFoundError:
            raise StorageNotFound(f"{path} does not exist") from None
        except OSError as exc:
            raise StorageError(f"cannot open {path}: {exc.strerror or exc}") from None

    def open(self, file_id: str) -> Iterator[bytes]:
        _, fh = self._opened(file_id)

        def chunks() -> Iterator[bytes]:
            with fh:
                while block := fh.read(READ_CHUNK):
                    yield block

        return chunks()

    def open_range(self, file_id: str, offset: int, length: int) -> Iterator[bytes]:
        path, fh = self._opened(file_id)

        def chunks() -> Iterator[bytes]:
            with fh:
                fh.seek(offset)
                left = length
                while left > 0:
                    block = fh.read(min(READ_CHUNK, left))
                    if not block:
                        raise StorageError(f"{path} ended before byte {offset + length:,}")
                    left -= len(block)
                    yield block

        return chunks()

    def stat(self, file_id: str) -> StoredFile:
        path = self._abs(file_id)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise StorageNotFound(f"{path} does not exist") from None
        if not path.is_file():
            raise StorageNotFound(f"{path} is not a file")
        return self._file(path, st)

    def delete(self, file_id: str) -> None:
        path = self._abs(file_id)
        try:
            path.unlink()
        except FileNotFoundError:
            raise StorageNotFound(f"{path} does not exist") from None
        except OSError as exc:
            raise StorageError(f"cannot delete {path}: {exc.strerror or exc}") from None
        self._fsync_dir(path.parent)
