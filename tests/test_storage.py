"""The Storage contract, written once; every backend is added to STORAGES and must pass it, and
so must every wrapper in WRAPPERS, over each backend.

A dry run writes nothing, so where a contract test writes, it writes through the storage the dry
run wraps (``writer``) and checks everything else through the dry run; a write through the dry
run itself must be refused and leave nothing behind (``refused_or``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from dbbackup.errors import ConfigError, StorageError, StorageExists, StorageNotFound
from dbbackup.storage import Storage
from dbbackup.storage.dryrun import DryRunStorage
from dbbackup.storage.local import LocalStorage
from fakes._http import Fault

pytest_plugins = ["fakes.fixtures"]  # the fake servers' fixtures (drive_fake, drive_storage, ...)

# A backend is a factory of a root folder, or the name of a fixture that starts its fake server.
STORAGES: dict[str, Callable[[Path], Storage] | str] = {
    "local": LocalStorage,
    "google_drive": "drive_storage",
    "gcs": "gcs_storage",
    "s3": "s3_storage",
}
# A wrapper is a Storage over another Storage; it is tested over every backend.
WRAPPERS: dict[str, Callable[[Storage], Storage]] = {"dry_run": DryRunStorage}
SUBJECTS = [(None, b) for b in sorted(STORAGES)] + [(w, b) for w in sorted(WRAPPERS) for b in sorted(STORAGES)]


def make_backend(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> Storage:
    make = STORAGES[name]
    if isinstance(make, str):
        return request.getfixturevalue(make)
    return make(tmp_path / "root")


@pytest.fixture(params=SUBJECTS, ids=[f"{w}({b})" if w else b for w, b in SUBJECTS])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    wrapper, backend = request.param
    inner = make_backend(request, tmp_path, backend)
    return WRAPPERS[wrapper](inner) if wrapper else inner


@pytest.fixture(params=sorted(STORAGES))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    return make_backend(request, tmp_path, request.param)


def writer(storage: Storage) -> Storage:
    """Where a contract test puts the files it then reads: a dry run's inner storage, since the
    dry run writes nothing."""
    return storage.inner if isinstance(storage, DryRunStorage) else storage


def refused_or(storage: Storage, expected: type[Exception]) -> AbstractContextManager[Any]:
    """What a write through ``storage`` must raise: ``expected``, or a dry run's refusal."""
    if isinstance(storage, DryRunStorage):
        return pytest.raises(StorageError, match="dry run: nothing is written")
    return pytest.raises(expected)


def test_put_then_list_open_stat_delete(storage: Storage) -> None:
    folder = storage.ensure_folder("MyDrive/Database Backups/nightly")
    stored = writer(storage).put(folder, "DB_Backup_2026-01-01_01-00.sql.gz", iter([b"abc", b"", b"def"]))
    assert (stored.name, stored.size) == ("DB_Backup_2026-01-01_01-00.sql.gz", 6)
    assert [f.name for f in storage.list(folder)] == [stored.name]
    assert b"".join(storage.open(stored.id)) == b"abcdef"
    assert storage.stat(stored.id).size == 6
    storage.delete(stored.id)
    with pytest.raises(StorageNotFound):
        storage.stat(stored.id)
    with pytest.raises(StorageNotFound):
        b"".join(storage.open(stored.id))
    with pytest.raises(StorageNotFound):
        storage.delete(stored.id)
    assert storage.list(folder) == []


def test_open_range_reads_exactly_those_bytes(storage: Storage) -> None:
    """A seekable backup's members are read by byte range (restore --table)."""
    folder = storage.ensure_folder("A")
    data = bytes(range(256)) * 12_000  # ~3 MB: ranges that cross the backends' download chunks
    stored = writer(storage).put(folder, "f.sql.gz", iter([data[:1_000_000], data[1_000_000:]]))
    for offset, length in ((0, 1), (5, 10), (999_990, 2_000_000), (len(data) - 7, 7), (0, len(data))):
        assert b"".join(storage.open_range(stored.id, offset, length)) == data[offset : offset + length]
    with pytest.raises(StorageError):  # past the end: the file is not what the index says
        b"".join(storage.open_range(stored.id, len(data) - 3, 10))
    with pytest.raises(StorageNotFound):
        b"".join(storage.open_range("A/nothing.sql.gz", 0, 1))


def test_a_drive_download_that_ignores_range_is_refused(drive_storage: Any, drive_fake: Any) -> None:
    """A server (or proxy) that ignores Range answers 200 with the whole file: those bytes are
    not the range's, and restore --table would run them as SQL."""
    folder = drive_storage.ensure_folder("A")
    data = bytes(range(256)) * 40
    stored = writer(drive_storage).put(folder, "f.sql.gz", iter([data]))

    def ignore_range(exchange: Any) -> None:
        del exchange.headers["Range"]

    drive_fake.arm(Fault(ignore_range, method="GET", when=lambda e: e.query.get("alt") == "media", times=99))
    with pytest.raises(StorageError, match="Range header was ignored"):
        b"".join(drive_storage.open_range(stored.id, 100, 50))
    assert b"".join(drive_storage.open_range(stored.id, 0, len(data))) == data  # 200, the whole file: the range


def test_ensure_folder_is_idempotent(storage: Storage) -> None:
    assert storage.ensure_folder("A/B") == storage.ensure_folder("A/B")


def test_a_subfolder_is_idempotent_and_its_files_stay_out_of_the_parents_listing(storage: Storage) -> None:
    folder = storage.ensure_folder("A/B")
    # Read-only (a restore, a dry run): a missing subfolder is not created.
    try:
        ghost = storage.subfolder(folder, "storage-blobs", create=False)
        assert storage.list(ghost) == []  # a bucket's prefix: nothing to create, nothing in it
    except StorageNotFound:
        pass
    assert storage.list(folder) == []
    sub = writer(storage).subfolder(folder, "storage-blobs")
    assert storage.subfolder(folder, "storage-blobs") == sub != folder
    assert storage.subfolder(folder, "storage-blobs", create=False) == sub
    stored = writer(storage).put(sub, "0" * 64, iter([b"blob"]))
    assert [f.name for f in storage.list(sub)] == ["0" * 64]
    assert storage.list(folder) == []  # a backup listing never sees the blobs
    assert b"".join(storage.open(stored.id)) == b"blob"
    for bad in ("", "a/b", ".hidden"):
        with pytest.raises((StorageError, ConfigError)):
            storage.subfolder(folder, bad)


def test_an_empty_file_is_stored_and_read_back(storage: Storage) -> None:
    """A Storage object may be empty (its blob then is too)."""
    folder = writer(storage).subfolder(storage.ensure_folder("A"), "storage-blobs")
    stored = writer(storage).put(folder, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", iter([]))
    assert stored.size == 0 and storage.stat(stored.id).size == 0
    assert b"".join(storage.open(stored.id)) == b""


def test_a_failing_stream_leaves_nothing_behind(storage: Storage) -> None:
    folder = storage.ensure_folder("A")

    def broken() -> Iterator[bytes]:
        yield b"x" * 1000
        raise RuntimeError("pg_dump died")

    with refused_or(storage, RuntimeError):
        storage.put(folder, "f.sql.gz", broken())
    assert storage.list(folder) == []
    if isinstance(writer(storage), LocalStorage):
        assert list(Path(folder.path).iterdir()) == []


def test_put_never_overwrites(storage: Storage) -> None:
    folder = storage.ensure_folder("A")
    first = writer(storage).put(folder, "f.sql.gz", iter([b"first"]))
    with refused_or(storage, StorageExists):
        storage.put(folder, "f.sql.gz", iter([b"second"]))
    assert b"".join(storage.open(first.id)) == b"first"


def test_missing_files_are_not_found(storage: Storage) -> None:
    with pytest.raises(StorageNotFound):
        storage.stat("A/nothing.sql.gz")
    with pytest.raises(StorageNotFound):
        storage.open("A/nothing.sql.gz")
    with pytest.raises(StorageNotFound):
        storage.delete("A/nothing.sql.gz")


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
    kept = writer(storage).put(folder, "DB_Backup_2026-01-01_01-00.sql.gz", iter([b"complete"]))
    dry_run = isinstance(storage, DryRunStorage)
    if isinstance(writer(storage), LocalStorage):
        leftover = Path(folder.path) / ".partial-0123456789ab-DB_Backup_2026-01-01_02-00.sql.gz"
        leftover.write_bytes(b"half a dump")
        assert storage.discard_incomplete(folder) == (0 if dry_run else 1)
        assert leftover.exists() == dry_run  # a dry run removes nothing
    else:
        assert storage.discard_incomplete(folder) == 0
    assert [f.name for f in storage.list(folder)] == [kept.name]


def test_a_dry_run_delete_leaves_the_inner_file_in_place(backend: Storage) -> None:
    folder = backend.ensure_folder("A")
    stored = backend.put(folder, "DB_Backup_2026-01-01_01-00.sql.gz", iter([b"keep me"]))
    dry = DryRunStorage(backend)
    dry.delete(stored.id)
    assert dry.list(folder) == []
    assert [f.id for f in backend.list(folder)] == [stored.id]
    assert backend.stat(stored.id).size == 7
    assert b"".join(backend.open(stored.id)) == b"keep me"
    # What it deleted is its own memory: another dry run over the same storage still sees the file.
    assert [f.id for f in DryRunStorage(backend).list(folder)] == [stored.id]


def test_a_dry_run_refuses_a_write_without_reading_its_stream(backend: Storage) -> None:
    folder = backend.ensure_folder("A")
    read: list[bytes] = []

    def dump() -> Iterator[bytes]:
        # The stream is pg_dump's output: a refused write must not run the dump behind it.
        read.append(b"started")
        yield b"data"

    with pytest.raises(StorageError, match="dry run: nothing is written"):
        DryRunStorage(backend).put(folder, "DB_Backup_2026-01-01_01-00.sql.gz", dump())
    assert read == []
    assert backend.list(folder) == []
