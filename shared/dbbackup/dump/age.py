"""Encryption at rest in the standard age format (age-encryption.org/v1, X25519 recipients),
through pyrage (Rust's ``age`` crate): the one module that imports it. No cryptography is
written here; this module only streams bytes through pyrage and reads the header's text.

pyrage's streaming calls (``encrypt_io``/``decrypt_io``) read from and write to file-like
objects until the input ends, while our pipeline is a chain of iterators. ``_through`` bridges
the two: pyrage runs in a worker thread fed by a small queue, and the calling thread keeps
iterating the source itself. So closing the output generator still closes the source at once
(the dump's generator stops pg_dump), and memory stays bounded by the queue, whatever the size.

Backpressure, and why there is no deadlock: the worker can only block waiting for input (the
output queue is unbounded), and it can only produce output for input it was given, at most
``_IN_DEPTH`` chunks ahead; the calling thread drains the output after every chunk it feeds.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import io
import queue
import re
import threading
from collections.abc import Buffer, Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import pyrage
from pyrage import x25519

from dbbackup.core import ports
from dbbackup.errors import BackupFailed, ConfigError, UsageError

MAGIC: Final = b"age-encryption.org/v1\n"
SUFFIX: Final = ".age"
RECIPIENTS_VARIABLE: Final = "BACKUP_AGE_RECIPIENTS"
_OUT_SIZE = 1 << 20  # output handed on in pieces of about this size
_IN_DEPTH = 2
_SEPARATORS = re.compile(r"[\s,]+")
# What pyrage says when no identity opens any stanza of the header (age's NoMatchingKeys).
_NO_MATCH = "No matching keys found"


class AgeError(BackupFailed):
    """An age file could not be decrypted: damaged, truncated, or not for these identities."""


class NoMatchingIdentity(AgeError):
    """The file is encrypted to recipients none of the given identities belongs to."""

    def __init__(self) -> None:
        super().__init__(
            "no identity matches this backup: it was encrypted to other recipients"
            " (use the identity whose public key was in BACKUP_AGE_RECIPIENTS when it was made)"
        )


# --- keys ------------------------------------------------------------------------------------


def parse_recipients(text: str, variable: str = RECIPIENTS_VARIABLE) -> tuple[str, ...]:
    """``age1…`` public keys separated by commas and/or whitespace, each checked by pyrage;
    duplicates dropped, order kept. ConfigError names the variable and the bad entry's position
    (a recipient is public, but a pasted identity must never be echoed)."""
    found: list[str] = []
    for position, item in enumerate((t for t in _SEPARATORS.split(text) if t), start=1):
        if item.upper().startswith("AGE-SECRET-KEY-"):
            raise ConfigError(
                f"{variable}: entry {position} is an age identity (a private key), not a recipient;"
                " give the public key (age1…, printed by age-keygen -y) and keep the identity offline"
            )
        try:
            x25519.Recipient.from_str(item)
        except pyrage.RecipientError as exc:
            shown = item if len(item) <= 80 else item[:77] + "…"
            raise ConfigError(
                f"{variable}: entry {position} ({shown!r}) is not an age X25519 recipient: {exc}"
            ) from None
        if item not in found:
            found.append(item)
    return tuple(found)


@dataclass(frozen=True)
class Identities:
    """Parsed age identities (private keys) and where they came from; the key text is not kept
    beyond ``secrets`` (for redaction)."""

    keys: tuple[x25519.Identity, ...]
    source: str
    secrets: tuple[str, ...]

    def __repr__(self) -> str:
        return f"Identities({len(self.keys)} from {self.source})"


def parse_identities(text: str, source: str) -> Identities:
    """An identity file as age-keygen writes it (``#`` comments, one ``AGE-SECRET-KEY-1…`` per
    line), or the bare key text. UsageError names the line, never its content."""
    keys: list[x25519.Identity] = []
    secrets: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        secrets.append(line)
        try:
            keys.append(x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            raise UsageError(
                f"{source}: line {number} is not an age X25519 identity (AGE-SECRET-KEY-1…, as age-keygen writes)"
            ) from None
    if not keys:
        raise UsageError(f"{source} holds no age identity (AGE-SECRET-KEY-1… lines)")
    return Identities(tuple(keys), source, tuple(secrets))


def load_identities(path: str, source: str) -> Identities:
    """An identity file; UsageError (one line) when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read(1 << 20)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise UsageError(f"{source}: cannot read the identity file {path}: {reason}") from None
    return parse_identities(text, source)


# --- the header, read without a key ------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    recipients: int  # stanzas of the X25519 type
    stanzas: int
    length: int  # header bytes, up to and including the MAC line


def is_encrypted(head: bytes) -> bool:
    return head.startswith(MAGIC)


def read_header(head: bytes) -> Header:
    """Check the header's structure (age-encryption.org/v1: the version line, stanzas ``-> type
    args`` each with base64 body lines of at most 64 characters, the last one shorter, then
    ``--- MAC``). This is what can be checked without an identity; it authenticates nothing."""
    if not head.startswith(MAGIC):
        raise BackupFailed("not an age-encrypted file (its first line is not age-encryption.org/v1)")
    end = head.find(b"\n--- ")
    if end < 0 or head.find(b"\n", end + 1) < 0:
        raise BackupFailed("the age header is incomplete (no MAC line)")
    lines = head[len(MAGIC) : end].split(b"\n")
    mac = head[end + 5 : head.find(b"\n", end + 1)]
    if not re.fullmatch(rb"[A-Za-z0-9+/]{43}", mac):
        raise BackupFailed("the age header's MAC line is malformed")
    stanzas = recipients = 0
    in_body = False
    for line in lines:
        if line.startswith(b"-> "):
            if in_body:
                raise BackupFailed("the age header is malformed (a stanza body does not end with a short line)")
            stanzas += 1
            recipients += line.split(b" ")[1:2] == [b"X25519"]
            in_body = True
        elif in_body and re.fullmatch(rb"[A-Za-z0-9+/]{0,64}", line):
            in_body = len(line) == 64  # a full line says more follows
        else:
            raise BackupFailed("the age header is malformed")
    if in_body or not stanzas:
        raise BackupFailed("the age header is malformed (no complete stanza)")
    return Header(recipients, stanzas, end + 5 + len(mac) + 1)


# --- streaming ------------------------------------------------------------------------------


def encrypt(chunks: Iterable[bytes], recipients: Iterable[str]) -> Iterator[bytes]:
    """``chunks`` encrypted to every recipient. The age stream's last chunk, which marks the end,
    is only written after ``chunks`` ended without raising: a failed dump never looks complete."""
    keys = [x25519.Recipient.from_str(r) for r in recipients]
    if not keys:
        raise ConfigError(f"{RECIPIENTS_VARIABLE} holds no recipient")
    return _through(lambda r, w: pyrage.encrypt_io(r, w, keys), chunks, _encrypt_error)


def decrypt(chunks: Iterable[bytes], identities: Identities) -> Iterator[bytes]:
    """The plaintext of an age file. Each 64 KiB piece is authenticated before it is released;
    a flipped byte or a truncated file raises BackupFailed when its piece is reached, so a
    consumer must not act on the output (commit a restore) before the iterator is exhausted."""
    keys = list(identities.keys)
    return _through(lambda r, w: pyrage.decrypt_io(r, w, keys), chunks, _decrypt_error)


def _encrypt_error(exc: BaseException) -> BackupFailed:
    return BackupFailed(f"age encryption failed: {exc}")


def _decrypt_error(exc: BaseException) -> BackupFailed:
    text = str(exc)
    if text == _NO_MATCH:
        return NoMatchingIdentity()
    if "header" in text.lower():
        return AgeError(f"the age header is invalid ({text}): the file is damaged or not an age file")
    return AgeError(
        "the encrypted backup is damaged or truncated: age authentication failed"
        f" ({text}); nothing of it can be trusted"
    )


_EOF: Final = object()
_STOP: Final = object()


class _Stopped(Exception):
    """Raised into pyrage to end its copy when the output is no longer wanted."""


class _Reader(io.BufferedIOBase):
    """The worker's input: read(n) as pyrage's BufReader asks, never more than ``n`` bytes."""

    def __init__(self, inbox: queue.Queue[object]) -> None:
        super().__init__()
        self.inbox = inbox
        self.view = memoryview(b"")
        self.ended = False  # age reads again after the end to be sure; the queue has no more

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1, /) -> bytes:
        if not self.view:
            if self.ended:
                return b""
            item = self.inbox.get()
            if item is _EOF:
                self.ended = True
                return b""
            if item is _STOP or not isinstance(item, bytes):
                raise _Stopped("stopped")
            self.view = memoryview(item)
        size = len(self.view) if n is None or n < 0 else n
        piece, self.view = self.view[:size], self.view[size:]
        return bytes(piece)


class _Writer(io.BufferedIOBase):
    """The worker's output, gathered into pieces of about ``_OUT_SIZE`` for the caller."""

    def __init__(self, outbox: queue.SimpleQueue[object]) -> None:
        super().__init__()
        self.outbox = outbox
        self.pending = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Buffer, /) -> int:
        view = memoryview(data)
        self.pending += view
        if len(self.pending) >= _OUT_SIZE:
            self.flush_out()
        return view.nbytes

    def flush(self) -> None:
        """pyrage flushes its own buffer here; pieces go on when large or at the end."""

    def flush_out(self) -> None:
        if self.pending:
            self.outbox.put(bytes(self.pending))
            self.pending = bytearray()


_DONE: Final = object()


def _through(
    run: Callable[[_Reader, _Writer], object],
    chunks: Iterable[bytes],
    translate: Callable[[BaseException], BackupFailed],
) -> Iterator[bytes]:
    source = iter(chunks)
    inbox: queue.Queue[object] = queue.Queue(_IN_DEPTH)
    outbox: queue.SimpleQueue[object] = queue.SimpleQueue()
    finished = threading.Event()

    def work() -> None:
        writer = _Writer(outbox)
        try:
            run(_Reader(inbox), writer)
            writer.flush_out()
            outbox.put(_DONE)
        except BaseException as exc:  # handed to the calling thread, which raises it
            outbox.put(exc)
        finally:
            finished.set()

    over = threading.Event()  # the worker's _DONE was taken: nothing more will come

    def take(block: bool) -> Iterator[bytes]:
        while not over.is_set():
            try:
                item = outbox.get(block=block)
            except queue.Empty:
                return
            if item is _DONE:
                over.set()
                return
            if isinstance(item, BaseException):
                raise translate(item) from None
            assert isinstance(item, bytes)
            yield item

    def feed(item: object) -> Iterator[bytes]:
        while True:
            try:
                inbox.put(item, timeout=0.2)
                return
            except queue.Full:
                pass
            yield from take(block=False)
            if finished.is_set():  # the worker ended early (an error it has queued)
                yield from take(block=True)
                raise translate(RuntimeError("stopped before the end of its input"))

    def generate() -> Iterator[bytes]:
        # In a copy of the caller's context, so log lines keep their labels (structured_log).
        worker = threading.Thread(target=contextvars.copy_context().run, args=(work,), name="dbbackup-age", daemon=True)
        worker.start()
        try:
            for chunk in source:
                if chunk:
                    yield from feed(chunk)
                    yield from take(block=False)
            yield from feed(_EOF)
            yield from take(block=True)
        finally:
            if not finished.is_set():
                # Cut the worker loose: empty its inbox, then tell it to stop.
                try:
                    while True:
                        inbox.get_nowait()
                except queue.Empty:
                    pass
                inbox.put(_STOP)
            worker.join(timeout=30)
            close = getattr(source, "close", None)
            if close is not None:
                close()  # the dump's generator: stops pg_dump now, not when collected

    return generate()


class EncryptedDump:
    """A ``core.ports.Dump`` whose bytes are another dump's, encrypted: ``stats`` count what goes
    to storage (size and MD5 of the age file, which the job checks against what was stored)
    and carry the inner dump's SQL size."""

    def __init__(self, inner: ports.Dump, recipients: Sequence[str]) -> None:
        self.inner, self.recipients = inner, tuple(recipients)
        self._stats = ports.DumpStats()

    @property
    def stats(self) -> ports.DumpStats:
        return self._stats

    def __iter__(self) -> Generator[bytes]:
        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        for chunk in encrypt(iter(self.inner), self.recipients):
            md5.update(chunk)
            size += len(chunk)
            yield chunk
        inner = self.inner.stats
        # The members' offsets are of the gzip stream inside the age file: recorded, but no
        # byte range of the stored file can be read for them.
        index = dataclasses.replace(inner.index, encrypted=True) if inner.index is not None else None
        self._stats = ports.DumpStats(
            sql_bytes=inner.sql_bytes, gz_bytes=size, md5=md5.hexdigest(), tables=inner.tables, index=index
        )
