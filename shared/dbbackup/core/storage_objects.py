"""Supabase Storage's objects in a backup: list every object, make sure its bytes are a blob in
every target, record the manifest; and the way back (``restore_objects``).

Content-addressed: a blob is ``<backup folder>/storage-blobs/<sha256 of the bytes>``, so an object
that did not change, or the same bytes under two keys, is stored once across all backups.

Two streaming reads rather than one: the sha256 (the blob's name) is known only once the object
has been read to its end, and the Storage port has no rename, so the object is first read to hash
it and, only when no target holds that blob yet, read a second time straight into the targets
(through ``core.fanout``: one read for every target). The second read is hashed again and raises
before its end when the bytes differ (the object changed in between), so ``put`` commits nothing
and the object is tried once more. Neither read holds more than a chunk: no object is ever whole
in memory or on disk. An object whose listed size and ETag equal the previous backup's record,
and whose blob every target still holds with that size, is neither HEADed nor read (the ETag is the
store's own digest of the bytes; its content type and metadata are the previous record's). A blob
is trusted by its name and its listed size: one of another size is rewritten. An object deleted
between the listing and its HEAD or read is left out and counted (``vanished``).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from dbbackup.core.fanout import fan_out
from dbbackup.core.ports import Folder, ManifestEntry, ObjectStore, Storage, StoredFile, Target
from dbbackup.errors import StorageChanged, StorageError, StorageNotFound

BLOB_FOLDER = "storage-blobs"
ATTEMPTS = 2  # an object that changes while it is copied is read once more
VANISHED_NAMED = 5  # how many vanished objects the warning names


@dataclass
class StorageCopy:
    """What a backup did with the project's Storage (the ``"storage"`` of its answer)."""

    buckets: int = 0
    objects: int = 0
    bytes: int = 0
    new_blobs: int = 0
    vanished: int = 0  # listed, then deleted before they were read: not in this backup
    entries: list[ManifestEntry] = field(default_factory=list, repr=False)
    vanished_keys: list[str] = field(default_factory=list, repr=False)  # "<bucket>/<key>", the first few

    def as_dict(self) -> dict[str, int]:
        return {
            "buckets": self.buckets,
            "objects": self.objects,
            "bytes": self.bytes,
            "new_blobs": self.new_blobs,
            "vanished": self.vanished,
        }

    def warning(self) -> str | None:
        """The backup's warning line when objects vanished while it ran."""
        if not self.vanished:
            return None
        more = f" and {self.vanished - len(self.vanished_keys)} more" if self.vanished > len(self.vanished_keys) else ""
        return (
            f"Supabase Storage: {self.vanished} object(s) deleted while the backup ran are not in it:"
            f" {', '.join(self.vanished_keys)}{more}"
        )


def hashed(chunks: Iterable[bytes]) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def checked(chunks: Iterable[bytes], sha256: str, what: str) -> Iterator[bytes]:
    """``chunks``, raising before their end when they are not the bytes of ``sha256``: a write
    fed by it then commits nothing."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
        yield chunk
    if digest.hexdigest() != sha256:
        raise StorageChanged(
            f"{what} changed while it was being copied (sha256 {digest.hexdigest()}, expected {sha256})"
        )


class BlobStore:
    """The ``storage-blobs`` folder of each target, listed once (a Drive file's id is not its
    name, so existence is looked up in the listing, not asked per blob)."""

    def __init__(self, targets: Sequence[tuple[Target, Folder]] = (), discard_incomplete: bool = False) -> None:
        """``discard_incomplete``: first remove what interrupted blob uploads left in each
        folder (a backup's, holding the backup lock: no other write is in flight)."""
        self.folders: dict[str, tuple[Storage, Folder]] = {}
        self.known: dict[str, dict[str, StoredFile]] = {}
        for target, folder in targets:
            self.add(target, folder, discard_incomplete=discard_incomplete)

    def add(self, target: Target, folder: Folder, create: bool = True, discard_incomplete: bool = False) -> None:
        """The target's blob folder inside ``folder``, listed; ``create=False`` (a restore)
        creates nothing and raises StorageNotFound when the target has no such folder."""
        sub = target.storage.subfolder(folder, BLOB_FOLDER, create=create)
        if discard_incomplete:
            target.storage.discard_incomplete(sub)
        known = {f.name: f for f in target.storage.list(sub)}
        self.folders[target.name] = (target.storage, sub)
        self.known[target.name] = known

    def lacking(self, sha256: str, size: int | None = None) -> list[str]:
        """The targets without the blob; a blob listed with another size than ``size`` (a torn
        or foreign file under that name) counts as missing: it is rewritten."""
        return [
            name
            for name, known in self.known.items()
            if sha256 not in known or (size is not None and known[sha256].size != size)
        ]

    def missing_now(self, wanted: set[str]) -> dict[str, list[str]]:
        """Per target, the wanted blobs a fresh listing does not show (a cleanup that ran while
        this backup copied would have removed a blob it found unreferenced)."""
        found: dict[str, list[str]] = {}
        for name, (storage, folder) in self.folders.items():
            present = {f.name for f in storage.list(folder)}
            if lost := sorted(wanted - present):
                found[name] = lost
        return found

    def open(self, sha256: str) -> Iterator[bytes]:
        for name, known in self.known.items():
            if sha256 in known:
                return self.folders[name][0].open(known[sha256].id)
        raise StorageNotFound(f"blob {sha256} is in no target's {BLOB_FOLDER} folder")


def copy_objects(
    source: ObjectStore,
    wanted: Sequence[str],
    blobs: BlobStore,
    previous: Sequence[ManifestEntry] = (),
) -> StorageCopy:
    """Every object of the ``wanted`` buckets (empty: all) as a blob in every target; raises
    StorageError naming the bucket or object that could not be read or stored."""
    result = StorageCopy()
    found = source.buckets()
    buckets = list(wanted) or found
    if missing := [b for b in buckets if b not in found]:
        raise StorageError(
            f"Supabase Storage: bucket(s) {', '.join(missing)} (BACKUP_STORAGE_BUCKETS) do not exist at {source.where}"
        )
    before = {(e.bucket, e.key): e for e in previous}
    result.buckets = len(buckets)
    for bucket in buckets:
        for obj in source.objects(bucket):
            what = f"object {bucket}/{obj.key}"
            last = before.get((bucket, obj.key))
            if (
                last
                and obj.etag
                and last.etag == obj.etag
                and last.size == obj.size
                and not blobs.lacking(last.sha256, last.size)
            ):
                # Unchanged since the previous backup (the listing's size and ETag, the store's
                # digest of the bytes): no HEAD, no read; its type and metadata as recorded then.
                entry = ManifestEntry(
                    bucket, obj.key, last.size, last.sha256, last.content_type, dict(last.metadata), last.etag
                )
            else:
                try:
                    head = source.head(bucket, obj.key)
                    sha256, size = _store(source, bucket, obj.key, blobs, what, result)
                except StorageNotFound:
                    # Deleted since the listing (at the HEAD or at the read): not part of this backup.
                    result.vanished += 1
                    if len(result.vanished_keys) < VANISHED_NAMED:
                        result.vanished_keys.append(f"{bucket}/{obj.key}")
                    continue
                entry = ManifestEntry(bucket, obj.key, size, sha256, head.content_type, dict(head.metadata), head.etag)
            result.entries.append(entry)
            result.objects += 1
            result.bytes += entry.size
    if lost := blobs.missing_now({e.sha256 for e in result.entries}):
        text = "; ".join(f"{t}: {', '.join(s[:12] for s in shas[:3])}" for t, shas in lost.items())
        raise StorageError(f"Supabase Storage: blobs vanished while the backup ran (a concurrent cleanup?): {text}")
    return result


def _store(
    source: ObjectStore, bucket: str, key: str, blobs: BlobStore, what: str, result: StorageCopy
) -> tuple[str, int]:
    """Hash the object, then write it to every target lacking that blob; its sha256 and size."""
    for attempt in range(ATTEMPTS):
        sha256, size = hashed(source.read(bucket, key))
        lacking = blobs.lacking(sha256, size)
        if not lacking:
            return sha256, size
        writers = {name: _writer(blobs, name, sha256) for name in lacking}
        try:
            written = fan_out(checked(source.read(bucket, key), sha256, what), writers)
        except StorageChanged:
            if attempt + 1 < ATTEMPTS:
                continue
            raise
        for name, stored in written.items():
            if isinstance(stored, Exception):
                raise StorageError(f"Supabase Storage: {what} could not be stored in {name}: {stored}")
            if stored.size != size:
                storage = blobs.folders[name][0]
                with contextlib.suppress(Exception):
                    storage.delete(stored.id)  # never left to be trusted by its name
                raise StorageError(
                    f"Supabase Storage: {what}: {name} holds {stored.size} bytes, {size} were read;"
                    " the blob was deleted"
                )
            blobs.known[name][sha256] = stored
        result.new_blobs += 1
        return sha256, size
    raise AssertionError("unreachable")


def _writer(blobs: BlobStore, name: str, sha256: str) -> Callable[[Iterator[bytes]], StoredFile]:
    storage, folder = blobs.folders[name]
    wrong = blobs.known[name].get(sha256)  # listed with another size: replaced

    def write(chunks: Iterator[bytes]) -> StoredFile:
        if wrong is not None:
            with contextlib.suppress(StorageNotFound):
                storage.delete(wrong.id)
            blobs.known[name].pop(sha256, None)
        return storage.put(folder, sha256, chunks)

    return write


@dataclass
class StorageRestore:
    """What ``storage-restore`` did."""

    backup_log_id: str
    endpoint: str
    buckets: int = 0
    buckets_created: list[str] = field(default_factory=list)
    objects: int = 0
    restored: int = 0
    skipped: int = 0
    bytes_written: int = 0

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def restore_objects(
    log_id: str,
    entries: Sequence[ManifestEntry],
    sink: ObjectStore,
    open_blob: Callable[[str], Iterator[bytes]],
) -> StorageRestore:
    """Put every entry back. Idempotent: an object already there with the same size and, read
    through a streaming sha256, the same bytes (and the same content type) is skipped; the
    store's ETag is not compared, as a multipart upload's is no digest of the bytes."""
    report = StorageRestore(log_id, sink.where)
    for bucket in sorted({e.bucket for e in entries}):
        report.buckets += 1
        if sink.ensure_bucket(bucket):
            report.buckets_created.append(bucket)
    for e in entries:
        report.objects += 1
        what = f"object {e.bucket}/{e.key}"
        if _same(sink, e):
            report.skipped += 1
            continue
        sink.write(e.bucket, e.key, checked(open_blob(e.sha256), e.sha256, what), e.content_type, dict(e.metadata))
        report.restored += 1
        report.bytes_written += e.size
    return report


def _same(sink: ObjectStore, e: ManifestEntry) -> bool:
    try:
        head = sink.head(e.bucket, e.key)
    except StorageNotFound:
        return False
    if head.size != e.size or (e.content_type and head.content_type != e.content_type):
        return False
    return hashed(sink.read(e.bucket, e.key))[0] == e.sha256


def unreferenced(files: Iterable[StoredFile], referenced: set[str]) -> list[StoredFile]:
    """The blobs no kept backup's manifest refers to (names that are no sha256 are not ours)."""
    return [f for f in files if len(f.name) == 64 and f.name not in referenced and _hex(f.name)]


def _hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
