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

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from dbbackup.core.seek_index import Toc, parse_toc

COMPLETE = b"-- PostgreSQL database dump complete"
_COPY_END = b"\n\\.\n"


SESSION_SET = (b"SET default_tablespace ", b"SET default_table_access_method ")


@dataclass(frozen=True, eq=False)
class Entry:
    """``kind``: ``preamble`` | ``entry`` | ``trailer``; ``toc`` is the header of an ``entry``.

    From ``entries()``: ``sql`` is the entry's text (for a data entry, up to and including its
    ``COPY ... FROM stdin;`` line), ``copy_data`` the COPY rows (without the ``\\.`` line), to be
    consumed or skipped before the next entry is pulled; once it is exhausted, ``tail()`` is
    what followed them (``\\.`` and the blank lines). From a ``Splitter`` they are empty."""

    kind: str
    toc: Toc | None = None
    seq: int = 0  # position in the script, from 0 (the preamble)
    sql: bytes = b""
    copy_data: Iterator[bytes] | None = None
    _tail: list[bytes] = field(default_factory=list, repr=False)

    @property
    def name(self) -> str:
        return self.toc.name if self.toc else ""

    @property
    def type(self) -> str:
        """pg_dump's entry type (TABLE, TABLE DATA, SEQUENCE, INDEX, FK CONSTRAINT, ...), or
        ``PREAMBLE`` / ``TRAILER``."""
        return self.toc.type if self.toc else self.kind.upper()

    @property
    def schema(self) -> str:
        return self.toc.schema if self.toc else ""

    @property
    def qualified(self) -> str:
        """``schema.name`` unquoted (for a table, the manifest's and the index's name)."""
        return self.toc.qualified if self.toc else ""

    @property
    def table(self) -> str:
        """For a TABLE DATA entry, the ``schema.table`` it loads (as the index names it)."""
        return self.qualified if self.type == "TABLE DATA" else ""

    def tail(self) -> bytes:
        return b"".join(self._tail)


@dataclass(frozen=True)
class Piece:
    entry: Entry
    data: bytes
    first: bool = False  # the entry's first piece
    copy: bool = False  # COPY rows (between the COPY line and the \\. line)


class Splitter:
    def __init__(self) -> None:
        self._entry = Entry("preamble")
        self._started = False  # whether a piece of the current entry went out
        self._pending = b""  # an incomplete last line
        self._dash = False  # a "--" line held back: it may open the next entry's header
        # pg_dump writes the SET lines an entry needs (default_tablespace, table access method)
        # before its header: held back, they go with the entry that follows them.
        self._held: list[bytes] = []
        self._in_copy = False
        self._line_start = True  # inside COPY data: whether the next byte starts a line
        self._seq = 0
        self._out: list[Piece] = []
        self._parts: list[bytes] = []  # of the piece being built, of the current entry
        self._copy_part = False  # whether _parts are COPY rows

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
                self._emit(rest, copy=True)
            else:
                self._line(rest)
        self._release()
        return self._take()

    def _copy(self, buf: bytes, pos: int) -> int:
        """COPY data from ``pos``; returns where it stopped (after ``\\.`` or at the end)."""
        if self._line_start and buf.startswith(b"\\.\n", pos):
            self._emit(b"\\.\n")
            self._in_copy = False
            return pos + 3
        found = buf.find(_COPY_END, pos)
        if found >= 0:
            self._emit(buf[pos : found + 1], copy=True)
            self._emit(b"\\.\n")
            self._in_copy = False
            return found + 4
        cut = buf.rfind(b"\n", pos) + 1
        tail = buf[cut:] if cut else buf[pos:]
        if (cut or self._line_start) and tail in (b"\\", b"\\."):
            # Perhaps the start of the terminator line: wait for the next chunk.
            self._emit(buf[pos : len(buf) - len(tail)], copy=True)
            self._pending = tail
            self._line_start = True
        else:
            self._emit(buf[pos:], copy=True)
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
            self._release()
            self._emit(b"--\n")
        if line == b"--\n":
            self._dash = True
            return
        if line.startswith((b"-- Name: ", b"-- Data for Name: ")) and (toc := parse_toc(line)) is not None:
            self._start(Entry("entry", toc), line)  # a member cut right before the header line
            return
        if self._entry.kind == "entry" and (line.startswith(SESSION_SET) or (self._held and line == b"\n")):
            self._held.append(line)
            return
        self._release()
        if line.startswith(b"COPY ") and line.rstrip(b"\n").endswith(b"FROM stdin;"):
            self._in_copy = True
            self._line_start = True
        self._emit(line)

    def _release(self) -> None:
        """Held SET lines that no header followed stay where they were."""
        if self._held:
            held, self._held = self._held, []
            for line in held:
                self._emit(line)

    def _start(self, entry: Entry, data: bytes) -> None:
        self._close()
        self._seq += 1
        self._entry = Entry(entry.kind, entry.toc, self._seq)
        self._started = False
        held, self._held = self._held, []
        self._emit(b"".join(held) + data)

    def _emit(self, data: bytes, copy: bool = False) -> None:
        if data:
            if copy != self._copy_part:
                self._close()
                self._copy_part = copy
            self._parts.append(data)

    def _close(self) -> None:
        if self._parts:
            self._out.append(Piece(self._entry, b"".join(self._parts), not self._started, self._copy_part))
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


def entries(chunks: Iterable[bytes]) -> Iterator[Entry]:
    """The script's entries, streamed: each with its ``sql``, a data entry's rows in
    ``copy_data`` (consume or skip them before pulling the next entry, as with
    ``itertools.groupby``; the next pull passes over what is left)."""
    cursor = _Cursor(pieces(chunks))
    while cursor.piece is not None:
        header = cursor.piece.entry
        sql: list[bytes] = []
        while cursor.piece is not None and cursor.piece.entry is header and not cursor.piece.copy:
            sql.append(cursor.piece.data)
            cursor.advance()
        if cursor.piece is None or cursor.piece.entry is not header:
            yield Entry(header.kind, header.toc, header.seq, b"".join(sql))
            continue
        tail: list[bytes] = []
        rows = cursor.rows(header, tail)
        yield Entry(header.kind, header.toc, header.seq, b"".join(sql), rows, tail)
        for _ in rows:  # what the consumer left of them
            pass


class _Cursor:
    def __init__(self, stream: Iterator[Piece]) -> None:
        self.stream = stream
        self.piece: Piece | None = next(stream, None)

    def advance(self) -> None:
        self.piece = next(self.stream, None)

    def rows(self, header: Entry, tail: list[bytes]) -> Iterator[bytes]:
        while self.piece is not None and self.piece.entry is header:
            if self.piece.copy:
                yield self.piece.data
            else:
                tail.append(self.piece.data)
            self.advance()


def split(data: bytes | Iterable[bytes]) -> list[tuple[Entry, bytes]]:
    """The whole entries of a script small enough to hold (pre-data, post-data)."""
    result: list[tuple[Entry, list[bytes]]] = []
    for piece in pieces([data] if isinstance(data, bytes) else data):
        if piece.first or not result or result[-1][0] is not piece.entry:
            result.append((piece.entry, [piece.data]))
        else:
            result[-1][1].append(piece.data)
    return [(entry, b"".join(parts)) for entry, parts in result]


# An identifier as pg_dump writes it: quoted when it must be.
IDENT = rb'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
QUALIFIED = rb"(?P<q>" + IDENT + rb"\." + IDENT + rb")"
_ON_TABLE = (
    re.compile(rb"^ALTER (?:TABLE|FOREIGN TABLE) (?:ONLY )?" + QUALIFIED, re.M),
    re.compile(rb"^CREATE (?:UNIQUE )?INDEX " + IDENT + rb" ON (?:ONLY )?" + QUALIFIED, re.M),
    re.compile(rb"^CREATE (?:CONSTRAINT )?TRIGGER .*? ON " + QUALIFIED, re.M | re.S),
    re.compile(rb"^CREATE POLICY " + IDENT + rb" ON " + QUALIFIED, re.M),
    re.compile(rb"^CREATE RULE " + IDENT + rb" AS\s+ON \w+ TO " + QUALIFIED, re.M),
    re.compile(rb"^ALTER SEQUENCE " + IDENT + rb"\." + IDENT + rb" OWNED BY " + QUALIFIED + rb"\.", re.M),
    re.compile(rb"^COMMENT ON (?:TABLE|COLUMN) " + QUALIFIED, re.M),
    re.compile(rb"^COMMENT ON (?:CONSTRAINT|TRIGGER|POLICY|RULE) " + IDENT + rb" ON " + QUALIFIED, re.M),
    re.compile(rb"^SECURITY LABEL .*? ON (?:TABLE|COLUMN) " + QUALIFIED, re.M),
)
_REFERENCES = re.compile(rb"REFERENCES " + QUALIFIED)
_ATTACH = re.compile(rb"ATTACH PARTITION " + QUALIFIED)
_COMMENT_ON_INDEX = re.compile(rb"^COMMENT ON INDEX " + QUALIFIED, re.M)
_INHERITS = re.compile(rb"^INHERITS \((?P<list>[^)]*)\);$", re.M)
_EXTENSION = re.compile(
    rb"^CREATE EXTENSION IF NOT EXISTS (?P<e>" + IDENT + rb") WITH SCHEMA (?P<s>" + IDENT + rb")", re.M
)


def unquote(qualified: bytes) -> str:
    """``"App Data"."Orders EU"`` -> ``App Data.Orders EU`` (the manifest's form)."""
    parts = re.findall(IDENT, qualified)
    return ".".join(p[1:-1].replace(b'""', b'"').decode() if p.startswith(b'"') else p.decode() for p in parts)


def statements(sql: bytes) -> bytes:
    """The entry without its comment lines."""
    return b"\n".join(line for line in sql.split(b"\n") if not line.startswith(b"--"))


def table_of(sql: bytes) -> str | None:
    """The table (``schema.table`` unquoted) an entry's statement is about: an index, a
    constraint, a default, a trigger, a policy, a rule, a sequence's owner, a comment."""
    body = statements(sql)
    for pattern in _ON_TABLE:
        match = pattern.search(body)
        if match:
            return unquote(match["q"])
    return None


def references(sql: bytes) -> list[str]:
    """The tables a foreign key entry points at."""
    return [unquote(m["q"]) for m in _REFERENCES.finditer(statements(sql))]


def commented_index(sql: bytes) -> str | None:
    """The index a COMMENT ON INDEX entry is about."""
    match = _COMMENT_ON_INDEX.search(statements(sql))
    return unquote(match["q"]) if match else None


def parents(sql: bytes) -> list[str]:
    """The tables a CREATE TABLE ... INHERITS (...) inherits from."""
    match = _INHERITS.search(statements(sql))
    return [unquote(m["q"]) for m in re.finditer(QUALIFIED, match["list"])] if match else []


def extension(sql: bytes) -> tuple[str, str] | None:
    """(name, schema) of a CREATE EXTENSION entry."""
    match = _EXTENSION.search(statements(sql))
    return (unquote(match["e"]), unquote(match["s"])) if match else None


def qualified_names(sql: bytes) -> set[str]:
    """Every ``schema.name`` a statement spells out (unquoted)."""
    return {unquote(m["q"]) for m in re.finditer(QUALIFIED, statements(sql))}


def attached(sql: bytes) -> str | None:
    """The partition a TABLE ATTACH / INDEX ATTACH entry attaches."""
    match = _ATTACH.search(statements(sql))
    return unquote(match["q"]) if match else None
