"""Opening a stored backup for reading: its bytes measured as stored (size and MD5, what
``backup_logs`` recorded), then, for an age file, decrypted with the identities given, so that
restore and verify see the same gzip stream whichever kind of file it is."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from dbbackup.dump import age
from dbbackup.errors import BackupFailed, UsageError
from dbbackup.restore.sources import Source

# Enough of the file to hold any age header we write (one stanza per recipient, about 100
# bytes each), so it can be read before anything else is.
HEAD_BYTES = 1 << 16


@dataclass
class Stored:
    """The file as stored; complete once its stream was read to the end."""

    size: int = 0
    md5: str = ""
    encrypted: bool = False
    header: age.Header | None = None
    header_error: str | None = None  # why an age file's header is not well formed


def _measured(chunks: Iterable[bytes], stored: Stored) -> Iterator[bytes]:
    md5 = hashlib.md5(usedforsecurity=False)
    for chunk in chunks:
        md5.update(chunk)
        stored.size += len(chunk)
        yield chunk
    stored.md5 = md5.hexdigest()


def encrypted_without_identity(label: str, what: str) -> UsageError:
    return UsageError(
        f"{label} is encrypted (age): {what} needs its identity; pass --identity FILE (as age-keygen"
        " wrote it) or set BACKUP_AGE_IDENTITY (a file or the key) or BACKUP_AGE_IDENTITY_SECRET"
    )


@dataclass
class Opened:
    stored: Stored
    raw: Iterator[bytes]  # the stored bytes, from the start (measured as they are read)

    def gzip(self, identities: age.Identities | None, label: str, what: str) -> Iterator[bytes]:
        """The gzip stream: the file itself, or its decryption (``AgeError`` as it goes)."""
        if not self.stored.encrypted:
            return self.raw
        if identities is None:
            raise encrypted_without_identity(label, what)
        return age.decrypt(self.raw, identities)


def open_stored(source: Source) -> Opened:
    """Read the start of the file to learn whether it is an age file (by its first line, not its
    name: a renamed file is still recognised), keeping every byte for the reader."""
    stored = Stored()
    raw = _measured(source.open(), stored)
    head = bytearray()
    taken: list[bytes] = []
    for chunk in raw:
        taken.append(chunk)
        head += chunk
        if len(head) >= HEAD_BYTES:
            break
    stored.encrypted = age.is_encrypted(bytes(head[: len(age.MAGIC)]))
    if stored.encrypted:
        try:
            stored.header = age.read_header(bytes(head))
        except BackupFailed as exc:
            stored.header_error = str(exc)
    return Opened(stored, itertools.chain(taken, raw))
