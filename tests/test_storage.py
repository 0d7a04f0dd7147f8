"""The Storage contract, written once; every backend is added to STORAGES and must pass it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dbbackup.errors import ConfigError, StorageExists, StorageNotFound
from dbbackup.storage import Storage
from dbbackup.storage.local import LocalStorage

pytest_plugins = ["fakes.fixtures"]  # the fake servers' fixtures (drive_fake, drive_storage, ...)

# A backend is a factory of a root folder, or the name of a fixture that starts its fake server.
STORAGES: dict[str, Callable[[Path], Storage] | str] = {"local": LocalStorage, "google_drive": "drive_storage"}


@pytest.fixture(params=sorted(STORAGES))
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    make = STORAGES[request.param]
    if isinstance(make, str):
        return request.getfixturevalue(make)
    return make(tmp_path / "root")


def test_put_then_list_open_stat_delete(storage: Storage) -> None:
    folder = storage.ensure_folder("MyDrive/Database Backups/nightly")
    stored = storage.put(folder, "DB_Backup_2026-01-01_01-00.sql.gz", iter([b"abc", b"", b"def"]))
    assert (stored.name, stored.size) == ("DB_Backup_2026-01-01_01-00.sql.gz", 6)
    assert [f.name for f in storage.list(folder)] == [stored.name]
    assert b"".join(storage.open(stored.id)) == b"abcdef"
    assert storage.stat(stored.id).size == 6
    storage.delete(stored.id)
    with pytest.raises(StorageNotFound):
        storage.stat(stored.id)
    with pytest.raises(StorageNotFound):
        storage.delete(stored.id)
    assert storage.list(folder) == []


def test_ensure_folder_is_idempotent(storage: Storage) -> None:
    assert storage.ensure_folder("A/B") == storage.ensure_folder("A/B")


def test_a_failing_stream_leaves_nothing_behind(storage: Storage) -> None:
    folder = storage.ensure_folder("A")

    def broken() -> Iterator[bytes]:
        yield b"x" * 1000
        raise RuntimeError("pg_dump died")

    with pytest.raises(RuntimeError):
        storage.put(folder, "f.sql.gz", broken())
    assert storage.list(folder) == []
    if isinstance(storage, LocalStorage):
        assert list(Path(folder.path).iterdir()) == []


def test_put_never_overwrites(storage: Storage) -> None:
    folder = storage.ensure_folder("A")
    first = storage.put(folder, "f.sql.gz", iter([b"first"]))
    with pytest.raises(StorageExists):
        storage.put(folder, "f.sql.gz", iter([b"second"]))
    assert b"".join(storage.open(first.id)) == b"first"


def test_missing_files_are_not_found(storage: Storage) -> None:
    with pytest.raises(StorageNotFound):
        storage.stat("A/nothing.sql.gz")
    with pytest.raises(StorageNotFound):
        storage.open("A/nothing.sql.gz")


@pytest.mark.parametrize("path", ["", "A//B", "A/../B", "../A", "A/\x07B", "A/" + "x" * 256, " A/B"])
def test_invalid_folder_paths_are_rejected_before_any_call(storage: Storage, path: str) -> None:
    with pytest.raises(ConfigError, match="backup_folder_path"):
        storage.ensure_folder(path)


def test_local_ids_cannot_escape_the_root(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("x")
    with pytest.raises(StorageNotFound):
        LocalStorage(tmp_path / "root").stat("../secret")


def test_discard_incomplete_removes_only_what_a_killed_write_left(storage: Storage) -> None:
    folder = storage.ensure_folder("A")
    kept = storage.put(folder, "DB_Backup_2026-01-01_01-00.sql.gz", iter([b"complete"]))
    if isinstance(storage, LocalStorage):
        leftover = Path(folder.path) / ".partial-0123456789ab-DB_Backup_2026-01-01_02-00.sql.gz"
        leftover.write_bytes(b"half a dump")
        assert storage.discard_incomplete(folder) == 1
        assert not leftover.exists()
    else:
        assert storage.discard_incomplete(folder) == 0
    assert [f.name for f in storage.list(folder)] == [kept.name]
