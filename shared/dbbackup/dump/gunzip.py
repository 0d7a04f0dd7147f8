"""Reading a gzip backup as a stream: decompressed chunks, with size, MD5 and integrity."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import cast

from isal import isal_zlib

from dbbackup.errors import BackupFailed

# isal's stub declares ``error`` as an instance of Exception; it is the class zlib errors raise.
ISAL_ERROR = cast(type[Exception], isal_zlib.error)

GZIP_WBITS = 31
# Output per decompress call: SQL of a blank-padded table compresses 30x or more, so one input
# chunk may expand enormously; bounding each call keeps memory flat whatever the data.
MAX_OUT = 1 << 20


@dataclass
class ReadStats:
    gz_bytes: int = 0
    sql_bytes: int = 0
    md5: str = ""


def gunzip(chunks: Iterable[bytes], stats: ReadStats) -> Iterator[bytes]:
    """Decompress a gzip stream (several members allowed, as gzip itself does).

    Raises BackupFailed on corrupt data or when the stream ends inside a member; the CRC and
    length in each member's trailer are checked by the decompressor. ``stats`` is complete
    once the iterator is exhausted."""
    md5 = hashlib.md5(usedforsecurity=False)
    dec = isal_zlib.decompressobj(GZIP_WBITS)
    in_member = False
    for chunk in chunks:
        md5.update(chunk)
        stats.gz_bytes += len(chunk)
        data = chunk
        while data:
            in_member = True
            try:
                out = dec.decompress(data, MAX_OUT)
            except ISAL_ERROR as exc:
                raise BackupFailed(f"the gzip stream is corrupt near byte {stats.gz_bytes:,}: {exc}") from None
            if out:
                stats.sql_bytes += len(out)
                yield out
            if dec.eof:
                data = dec.unused_data
                dec = isal_zlib.decompressobj(GZIP_WBITS)
                in_member = False
            else:
                data = dec.unconsumed_tail
    if stats.gz_bytes == 0:
        raise BackupFailed("the file is empty")
    if in_member:
        raise BackupFailed("the gzip stream is truncated (it ends before the gzip trailer)")
    stats.md5 = md5.hexdigest()
