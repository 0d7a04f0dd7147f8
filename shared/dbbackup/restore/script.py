"""pg_dump's plain script split into its entries, as it streams (pure: no I/O).

pg_dump introduces every object of a plain dump with a TOC comment block::

    --
    -- Name: orders; Type: TABLE; Schema: public; Owner: app
    --

(``-- Data for Name: ...; Type: TABLE DATA; ...`` before a table's COPY block). An entry here is
that block and everything up to the next one. What comes before the first is the ``preamble``
(pg_dump's SET lines, ``\\restrict``); from ``-- PostgreSQL database dump complete`` on is the
``trailer``. COPY data is never looked into (a row may read like a header): it passes through at
memory speed in pieces, so a table of any size streams with bounded memory.

Two ways to use it:

- ``Splitter``: ``feed(chunk)`` / ``finish()`` give ``Piece`` s, each a run of bytes of one entry
  (``piece.first`` on its first), for streaming a whole file and keeping only some entries;
- ``split(data)``: the whole entries of a small script (a pre-data or post-data member), as
  ``(Entry, bytes)``.

Concatenating every piece (or every entry's bytes) gives back the input exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from dbbackup.core.seek_index import Toc, parse_toc

COMPLETE = b"-- PostgreSQL database dump complete"
_COPY_END = b"\n\\.\n"


@dataclass(frozen=True)
class Entry:
    """``kind``: ``preamble`` | ``entry`` | ``trailer``; ``toc`` is the header of an ``entry``."""

    kind: str
    toc: Toc | None = None
    seq: int = 0  # position in the script, from 0 (the preamble)

    @property
    def name(self) -> str:
        return self.toc.name if self.toc else ""

    @property
    def type(self) -> str:
        """pg_dump's entry type: TABLE, TABLE DATA, SEQUENCE, INDEX, FK CONSTRAINT, ..."""
        return self.toc.type if self.toc else ""

    @property
    def schema(self) -> str:
        return self.toc.schema if self.toc else ""

    @property
    def qualified(self) -> str:
        """``schema.name`` unquoted (for a table, the manifest's and the index's name)."""
        return self.toc.qualified if self.toc else ""


@dataclass(frozen=True)
class Piece:
    entry: Entry
    data: bytes
    first: bool = False  # the entry's first piece


class Splitter:
    def __init__(self) -> None:
        self._entry = Entry("preamble")
        self._started = False  # whether a piece of the current entry went out
        self._pending = b""  # an incomplete last line
        self._dash = False  # a "--" line held back: it may open the next entry's header
        self._in_copy = False
        self._line_start = True  # inside COPY data: whether the next byte starts a line
        self._seq = 0
        self._out: list[Piece] = []
        self._parts: list[bytes] = []  # of the piece being built, of the current entry

    def feed(self, chunk: bytes) -> list[Piece]:
        buf = self._pending + chunk if self._pending else chunk
        self._pending = b""
        pos = 0
        end = len(buf)
        while pos < end:
            if self._in_copy:
                pos = self._copy(buf, pos)
                continue
            nl = buf.find(b"\n", pos)
            if nl < 0:
                self._pending = buf[pos:]
                break
            self._line(buf[pos : nl + 1])
            pos = nl + 1
        return self._take()

    def finish(self) -> list[Piece]:
        """The rest (a last line without a newline)."""
        if self._pending:
            rest, self._pending = self._pending, b""
            if self._in_copy:
                self._emit(rest)
            else:
                self._line(rest)
        if self._dash:
            self._dash = False
            self._emit(b"--\n")
        return self._take()

    def _copy(self, buf: bytes, pos: int) -> int:
        """COPY data from ``pos``; returns where it stopped (after ``\\.`` or at the end)."""
        if self._line_start and buf.startswith(b"\\.\n", pos):
            self._emit(b"\\.\n")
            self._in_copy = False
            return pos + 3
        found = buf.find(_COPY_END, pos)
        if found >= 0:
            self._emit(buf[pos : found + 4])
            self._in_copy = False
            return found + 4
        cut = buf.rfind(b"\n", pos) + 1
        tail = buf[cut:] if cut else buf[pos:]
        if (cut or self._line_start) and tail in (b"\\", b"\\."):
            # Perhaps the start of the terminator line: wait for the next chunk.
            self._emit(buf[pos : len(buf) - len(tail)])
            self._pending = tail
            self._line_start = True
        else:
            self._emit(buf[pos:])
            self._line_start = buf.endswith(b"\n")
        return len(buf)

    def _line(self, line: bytes) -> None:
        if self._dash:
            self._dash = False
            if line.startswith((b"-- Name: ", b"-- Data for Name: ")):
                toc = parse_toc(line)
                if toc is not None:
                    self._start(Entry("entry", toc), b"--\n" + line)
                    return
            if line.startswith(COMPLETE):
                self._start(Entry("trailer"), b"--\n" + line)
                return
            self._emit(b"--\n")
        if line == b"--\n":
            self._dash = True
            return
        if line.startswith((b"-- Name: ", b"-- Data for Name: ")) and (toc := parse_toc(line)) is not None:
            self._start(Entry("entry", toc), line)  # a member cut right before the header line
            return
        if line.startswith(b"COPY ") and line.rstrip(b"\n").endswith(b"FROM stdin;"):
            self._in_copy = True
            self._line_start = True
        self._emit(line)

    def _start(self, entry: Entry, data: bytes) -> None:
        self._close()
        self._seq += 1
        self._entry = Entry(entry.kind, entry.toc, self._seq)
        self._started = False
        self._emit(data)

    def _emit(self, data: bytes) -> None:
        if data:
            self._parts.append(data)

    def _close(self) -> None:
        if self._parts:
            self._out.append(Piece(self._entry, b"".join(self._parts), not self._started))
            self._parts = []
            self._started = True

    def _take(self) -> list[Piece]:
        self._close()
        out, self._out = self._out, []
        return out


def pieces(chunks: Iterable[bytes]) -> Iterator[Piece]:
    """Every piece of a script given in chunks."""
    splitter = Splitter()
    for chunk in chunks:
        yield from splitter.feed(chunk)
    yield from splitter.finish()


def split(data: bytes | Iterable[bytes]) -> list[tuple[Entry, bytes]]:
    """The whole entries of a script small enough to hold (pre-data, post-data)."""
    result: list[tuple[Entry, list[bytes]]] = []
    for piece in pieces([data] if isinstance(data, bytes) else data):
        if piece.first or not result or result[-1][0] is not piece.entry:
            result.append((piece.entry, [piece.data]))
        else:
            result[-1][1].append(piece.data)
    return [(entry, b"".join(parts)) for entry, parts in result]
