"""Reading parts of a seekable backup: the members the index names, each decompressed alone.

A seekable ``.sql.gz`` (``core.seek_index``) is read by byte range (``Storage.open_range``), one
range per run of adjacent members, so a table's data costs what its members weigh, not the
file. An age-encrypted backup has no ranges to read: its gzip stream is decrypted from the start
and only the wanted members are decompressed (the offsets are of that stream).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from dbbackup.core.seek_index import Index, Member, index_of
from dbbackup.dump import age
from dbbackup.dump.gunzip import ReadStats, gunzip
from dbbackup.errors import BackupFailed
from dbbackup.restore.reading import encrypted_without_identity, open_stored
from dbbackup.restore.sources import Source


def index_for(source: Source) -> Index | None:
    """The index recorded with the source's backup, or None: no backup_logs row (a bare file),
    a backup written before seekable files, or an index that does not fit the file (a local
    file whose name matches a row but whose size does not)."""
    if source.row is None:
        return None
    index = index_of(source.row.manifest)
    if index is None or not index.members:
        return None
    last = index.members[-1]
    if not index.encrypted and source.size is not None and last.offset + last.length != source.size:
        return None
    return index


def runs(members: Sequence[Member]) -> list[list[Member]]:
    """``members`` (in file order) grouped into runs of adjacent ones: one range read each."""
    grouped: list[list[Member]] = []
    for m in sorted(members, key=lambda m: m.offset):
        if grouped and grouped[-1][-1].offset + grouped[-1][-1].length == m.offset:
            grouped[-1].append(m)
        elif not grouped or grouped[-1][-1].offset != m.offset:  # the same member twice: once
            grouped.append([m])
    return grouped


def open_members(
    source: Source, members: Sequence[Member], index: Index | None = None, identities: age.Identities | None = None
) -> Iterator[bytes]:
    """The SQL of ``members`` (in file order), decompressed, as one stream. ``index``: the one
    they come from (needed only to tell an encrypted backup, which then needs ``identities``).
    Raises BackupFailed when a member is damaged or does not decompress to its recorded size."""
    if index is not None and index.encrypted:
        yield from _from_stream(source, members, identities)
        return
    if source.open_range is None:
        raise BackupFailed(f"{source.label}: its storage cannot read byte ranges")
    for run in runs(members):
        start = run[0].offset
        length = run[-1].offset + run[-1].length - start
        yield from _checked(_exactly(source.open_range(start, length), start, length), run)


def _exactly(chunks: Iterable[bytes], start: int, length: int) -> Iterator[bytes]:
    """A range read that is exactly ``length`` bytes, or BackupFailed before a byte more is used
    (a storage that ignored the range would hand over other bytes of the file)."""
    got = 0
    for chunk in chunks:
        got += len(chunk)
        if got > length:
            raise BackupFailed(f"reading bytes {start:,}-{start + length - 1:,} gave more bytes than asked")
        yield chunk
    if got != length:
        raise BackupFailed(f"reading bytes {start:,}-{start + length - 1:,} gave {got:,} bytes, not {length:,}")


def _checked(chunks: Iterable[bytes], run: Sequence[Member]) -> Iterator[bytes]:
    stats = ReadStats()
    yield from gunzip(chunks, stats)
    want = sum(m.raw_length for m in run)
    got = sum(m.length for m in run)
    if stats.sql_bytes != want or stats.gz_bytes != got:
        raise BackupFailed(
            f"the members at byte {run[0].offset:,} decompress to {stats.sql_bytes:,} bytes, not the"
            f" {want:,} the index records (the file does not match its index)"
        )


def _from_stream(source: Source, members: Sequence[Member], identities: age.Identities | None) -> Iterator[bytes]:
    """The members cut out of the decrypted gzip stream, read from the start."""
    opened = open_stored(source)
    if identities is None:
        raise encrypted_without_identity(source.label, "reading its tables")
    stream = opened.gzip(identities, source.label, "restore")
    at = 0
    pending = bytearray()
    for run in runs(members):
        start = run[0].offset
        end = run[-1].offset + run[-1].length

        def cut(start: int = start, end: int = end) -> Iterator[bytes]:
            nonlocal at, pending
            while at < end:
                if pending:
                    chunk, pending = bytes(pending), bytearray()
                else:
                    chunk = next(stream, b"")
                    if not chunk:
                        raise BackupFailed("the backup ends before the members its index records")
                lo, hi = at, at + len(chunk)
                if hi > start:
                    piece = chunk[max(0, start - lo) : end - lo]
                    if hi > end:
                        pending += chunk[end - lo :]
                        hi = end
                    yield piece
                at = hi

        yield from _checked(cut(), run)
    if hasattr(stream, "close"):
        stream.close()
