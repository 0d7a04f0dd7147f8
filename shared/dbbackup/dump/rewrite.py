"""Rewriting pg_dump's plain output on the fly so it restores into a server of its own version.

pg_dump 18 writes a few statements that older servers reject; the Supabase CLI has the same
problem and rewrites its dumps the same way. Each rule is a small, tested line rewrite applied
only outside COPY data, which passes through untouched at memory speed. The rewriter also
watches for pg_dump's completion marker: a stream that ends without it (or inside a COPY
block) was truncated and is not a backup.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from dbbackup.errors import BackupFailed

COMPLETION_MARKER = b"-- PostgreSQL database dump complete"
# What ends a supabase-profile file whose last section is ours, not pg_dump's (profiles.py).
END_MARKER = b"-- dbbackup: end of backup"
_COPY_START = re.compile(rb"^COPY (?P<table>.+) \((?P<cols>.*)\) FROM stdin;$")
_ATTVER_ONLY = re.compile(rb"^ALTER TABLE ONLY .+ ALTER COLUMN .+ SET \(pg_attver=\d+\);$")
_ATTVER_OPTION = re.compile(rb"(?:, )?pg_attver=\d+(?:, )?")
_CREATE_TABLE = re.compile(rb"^CREATE (?P<foreign>FOREIGN )?TABLE (?P<name>.+) \($")
_NOT_NULL_ELEMENT = re.compile(rb"^    NOT NULL (?P<col>\S+?)(?P<comma>,?)$")
_RUN_AS_OWNER = re.compile(rb", run_as_owner = \w+")

Rule = Callable[[bytes], bytes]


def copy_table(line: bytes) -> str | None:
    """The table of a ``COPY schema.table (cols) FROM stdin;`` header as ``schema.table`` with
    the identifiers unquoted (``"App Data"."Orders EU"`` -> ``App Data.Orders EU``); None when
    the line is not one pg_dump writes."""
    text = line.decode("utf-8", errors="replace")
    if not text.startswith("COPY "):
        return None
    pos, names = 5, list[str]()
    while len(names) < 2:
        if text.startswith('"', pos):
            end, name = pos + 1, list[str]()
            while True:
                quote = text.find('"', end)
                if quote < 0:
                    return None
                name.append(text[end:quote])
                if text.startswith('"', quote + 1):  # a doubled quote is one quote
                    name.append('"')
                    end = quote + 2
                    continue
                pos = quote + 1
                break
            names.append("".join(name))
        else:
            match = re.match(r"[^\s.\"(]+", text[pos:])
            if not match:
                return None
            names.append(match.group(0))
            pos += match.end()
        if len(names) == 1:
            if not text.startswith(".", pos):
                return None
            pos += 1
    return f"{names[0]}.{names[1]}"


def _comment_out(line: bytes, why: bytes) -> bytes:
    return b"-- " + line + b"  -- dbbackup: " + why


def rules_for(server_major: int) -> list[Rule]:
    """Line rewrites needed for a dump of a ``server_major`` server by the bundled pg_dump."""
    rules: list[Rule] = []
    if server_major < 17:
        # transaction_timeout exists from PostgreSQL 17; pg_dump >= 17 always sets it.
        def transaction_timeout(line: bytes) -> bytes:
            if line.startswith(b"SET transaction_timeout"):
                return _comment_out(line, b"transaction_timeout needs PostgreSQL 17+")
            return line

        rules.append(transaction_timeout)

    # Some server builds assign a per-column ``pg_attver`` option themselves; it is not a user
    # setting, setting it is ignored there and rejected ("unrecognized parameter") elsewhere.
    def attver(line: bytes) -> bytes:
        if b"pg_attver=" not in line:
            return line
        if _ATTVER_ONLY.match(line):
            return _comment_out(line, b"server-assigned column option")
        return _ATTVER_OPTION.sub(
            lambda m: b", " if m.group(0).startswith(b", ") and m.group(0).endswith(b", ") else b"", line
        )

    rules.append(attver)

    if server_major < 16:
        # pg_dump 18 spells out run_as_owner = true for pre-16 subscriptions, which already
        # behave that way; PostgreSQL 15 rejects the option.
        def run_as_owner(line: bytes) -> bytes:
            if line.startswith(b"CREATE SUBSCRIPTION "):
                return _RUN_AS_OWNER.sub(b"", line)
            return line

        rules.append(run_as_owner)
    return rules


def split_inherited_not_null(statement: list[bytes]) -> list[bytes]:
    """pg_dump 18 writes a child's NOT NULL on an inherited column as a ``NOT NULL col``
    element inside ``CREATE TABLE ... INHERITS``, syntax PostgreSQL < 18 rejects (the table is
    not created and its rows are lost). Move each into ``ALTER TABLE ONLY ... SET NOT NULL``,
    which means the same on those servers."""
    head = _CREATE_TABLE.match(statement[0])
    if not head:
        return statement
    body: list[bytes] = [statement[0]]
    moved: list[bytes] = []
    for line in statement[1:]:
        element = _NOT_NULL_ELEMENT.match(line)
        if not element:
            body.append(line)
            continue
        moved.append(element["col"])
        if not element["comma"]:  # it was the last element: drop the comma before it
            for k in range(len(body) - 1, 0, -1):
                if body[k].endswith(b","):
                    body[k] = body[k][:-1]
                    break
    kind = b"FOREIGN TABLE" if head["foreign"] else b"TABLE"
    return body + [b"ALTER %s ONLY %s ALTER COLUMN %s SET NOT NULL;" % (kind, head["name"], c) for c in moved]


@dataclass
class OwnRowPatch:
    """Rewrites the running backup's own row inside the dump's COPY of ``backup_logs``.

    When the dump is taken the row still says ``in_progress``; a file exists only if that very
    backup succeeded, so a database restored from it must show the row as ``success``, not as
    a run the next backup would mark "interrupted"."""

    table: bytes  # as it appears in the COPY header, e.g. b"public.backup_logs"
    row_id: str
    values: dict[str, str]  # column -> COPY text value


@dataclass
class DumpRewriter:
    rules: list[Rule]
    own_row: OwnRowPatch | None = None
    server_major: int = 18
    sql_bytes: int = 0
    saw_marker: bool = False
    rewritten: dict[str, int] = field(default_factory=dict)
    # The manifest: per table of a COPY block, [rows, bytes of its data lines] (exact: a COPY
    # text row is one line, newlines inside values are escaped).
    tables: dict[str, list[int]] = field(default_factory=dict)
    _pending: bytes = b""
    _counts: list[int] | None = None  # the running COPY block's entry of ``tables``
    _in_copy: bool = False
    _copy_patch: tuple[int, dict[int, bytes]] | None = None
    _statement: list[bytes] | None = None  # a CREATE TABLE being collected
    _midline: bool = False  # passing a long table-data line through (see feed)
    # Where pg_dump's entry headers ("-- Name: ...", "-- Data for Name: ...") start in the output,
    # with the header line: what a seekable writer cuts gzip members at (core.seek_index). The
    # consumer takes them after each feed; only lines outside COPY data are looked at.
    marks: list[tuple[int, bytes]] = field(default_factory=list)
    out_bytes: int = 0  # bytes returned so far
    # Inside COPY data: its COPY line, and the output offset of the latest row boundary in it
    # (-1: none yet), where a seekable writer may start a new part of a large table.
    copy_line: bytes = b""
    row_break: int = -1
    _base: int = 0  # output offset of the block _process is working on

    def feed(self, data: bytes) -> bytes:
        """Process a chunk; returns the bytes ready to go out."""
        self.sql_bytes += len(data)
        out = b""
        if self._midline:  # inside a table-data line already known not to be the "\." terminator
            nl = data.find(b"\n")
            if nl < 0:
                self._count(data, 0)
                self.out_bytes += len(data)
                return data
            out, data = data[: nl + 1], data[nl + 1 :]
            self._count(out, 1)
            self._midline = False
            self.row_break = self.out_bytes + len(out)  # the long line's end: a row boundary
        buf = self._pending + data if self._pending else data
        cut = buf.rfind(b"\n") + 1
        self._pending = buf[cut:]
        if cut:
            self._base = self.out_bytes + len(out)
            out += self._process(buf[:cut])
        # A long table-data line (a big bytea or text value) goes out as it arrives instead of
        # being held whole: memory stays bounded by the chunk size, whatever the row. Past two
        # bytes, or not starting with a backslash, it cannot be the "\." that ends the data.
        pending = self._pending
        if self._in_copy and self._copy_patch is None and pending and (len(pending) > 2 or pending[:1] != b"\\"):
            out += pending
            self._count(pending, 0)
            self._pending = b""
            self._midline = True
        self.out_bytes += len(out)
        return out

    def finish(self) -> bytes:
        """The remaining bytes; raises BackupFailed when the dump is incomplete."""
        self._base = self.out_bytes
        tail = self._process(self._pending + b"\n") if self._pending else b""
        if self._pending:
            tail = tail[:-1]
        self.out_bytes += len(tail)
        self._pending = b""
        if self._in_copy or self._statement is not None:
            raise BackupFailed("the dump ended inside table data (truncated output)")
        if not self.saw_marker:
            raise BackupFailed("the dump ended without pg_dump's completion marker (truncated output)")
        return tail

    def _process(self, block: bytes) -> bytes:
        out: list[bytes] = []
        pos = 0
        end = len(block)
        size = 0  # of out, while lines are added (COPY data is never added mid-loop)
        while pos < end:
            if self._in_copy:
                if block.startswith(b"\\.\n", pos):
                    stop = pos
                else:
                    found = block.find(b"\n\\.\n", pos)
                    stop = -1 if found < 0 else found + 1
                data_end = end if stop < 0 else stop
                data = block[pos:data_end]
                data = self._patch_copy(data) if self._copy_patch else data
                self._count(data, data.count(b"\n"))
                out.append(data)
                if stop < 0:
                    if data:
                        self.row_break = self._base + size + len(data)
                    return b"".join(out)
                out.append(b"\\.\n")
                size += len(data) + 3
                pos = stop + 3
                self._in_copy = False
                self._copy_patch = None
                self._counts = None
                self.copy_line, self.row_break = b"", -1
                continue
            nl = block.find(b"\n", pos)
            line = block[pos:nl]
            pos = nl + 1
            if line.startswith((b"-- Name: ", b"-- Data for Name: ")) and self._statement is None:
                self.marks.append((self._base + size, line))
            for ln in self._statement_lines(line):
                out.append(ln + b"\n")
                size += len(ln) + 1
        return b"".join(out)

    def _statement_lines(self, line: bytes) -> list[bytes]:
        """CREATE TABLE statements are rewritten whole (see split_inherited_not_null)."""
        if self._statement is not None:
            self._statement.append(line)
            if not line.endswith(b";") or line.startswith(b"    "):
                return []
            statement, self._statement = self._statement, None
            fixed = split_inherited_not_null(statement)
            if fixed != statement:
                self.rewritten["CREATE TABLE (inherited NOT NULL)"] = (
                    self.rewritten.get("CREATE TABLE (inherited NOT NULL)", 0) + 1
                )
            return [self._rewrite(ln) for ln in fixed]
        if self.server_major < 18 and _CREATE_TABLE.match(line):
            self._statement = [line]
            return []
        return [self._rewrite(line)]

    def _rewrite(self, line: bytes) -> bytes:
        if self.saw_marker and line.strip() and not line.startswith((b"--", b"\\unrestrict ")):
            # A file of several pg_dump runs holds several markers: only one that nothing but
            # comments and pg_dump's closing \unrestrict follow ends a complete dump.
            self.saw_marker = False
        if line.startswith(b"COPY ") and line.endswith(b"FROM stdin;"):
            self._in_copy = True
            self.copy_line, self.row_break = line, -1
            table = copy_table(line)
            if table is not None:
                self._counts = self.tables.setdefault(table, [0, 0])
            match = _COPY_START.match(line)
            if self.own_row and match and match["table"] == self.own_row.table:
                self._copy_patch = self._plan_patch(match["cols"])
            return line
        if line.startswith(COMPLETION_MARKER) or line == END_MARKER:
            self.saw_marker = True
            return line
        original = line
        for rule in self.rules:
            line = rule(line)
        if line != original:
            name = original.split(b" ", 2)[:2]
            key = b" ".join(name).decode(errors="replace")
            self.rewritten[key] = self.rewritten.get(key, 0) + 1
        return line

    def _count(self, data: bytes, rows: int) -> None:
        if self._counts is not None:
            self._counts[0] += rows
            self._counts[1] += len(data)

    def _plan_patch(self, cols: bytes) -> tuple[int, dict[int, bytes]] | None:
        assert self.own_row is not None
        names = [c.strip().strip('"') for c in cols.decode().split(",")]
        if "id" not in names:
            return None
        index = {n: i for i, n in enumerate(names)}
        patch = {index[c]: v.encode() for c, v in self.own_row.values.items() if c in index}
        return index["id"], patch

    def _patch_copy(self, data: bytes) -> bytes:
        assert self._copy_patch is not None and self.own_row is not None
        id_col, patch = self._copy_patch
        needle = self.own_row.row_id.encode()
        if needle not in data:
            return data
        lines = data.split(b"\n")
        for i, line in enumerate(lines):
            fields = line.split(b"\t")
            if len(fields) > id_col and fields[id_col] == needle:
                for col, value in patch.items():
                    fields[col] = value
                lines[i] = b"\t".join(fields)
        return b"\n".join(lines)
