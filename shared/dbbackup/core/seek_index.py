"""The index of a seekable backup: where each gzip member of the file starts and what it holds.

A seekable ``.sql.gz`` is an ordinary gzip file of several members (``gunzip`` and ``zcat``
read them as one stream); the writer (``dump.stream``) starts a new member at the section and
table boundaries this module's ``Planner`` picks, so that one table's data, or the pre-data or
post-data section, can be read by a byte range and decompressed alone. The index is stored in
the attempt's manifest (``backup_logs.manifest["index"]``) in this shape::

    {"version": 2, "encrypted": false,
     "members": [{"offset": 0, "length": 812, "raw_offset": 0, "raw_length": 4096,
                  "section": "pre-data", "tables": []}, ...
                 {..., "section": "data", "tables": [], "entries": ["SEQUENCE SET"]}, ...]}

``offset``/``length`` are bytes of the gzip stream (the stored file, or, when ``encrypted``,
the gzip stream inside the age file: then ranges cannot be read and a reader streams it);
``raw_*`` are bytes of the SQL it decompresses to; ``tables`` are the ``schema.table`` (unquoted,
as the manifest names them) whose COPY data the member holds; ``entries`` (a data member without
tables only; absent in an index written before it was recorded) the entry types it holds, so that
a reader can tell sequence values from large objects.

A table whose data outgrows ``PART_SIZE`` is cut into parts (version 2): the writer starts a new
member between two of its rows, and that member records ``"resume"``, the ``COPY ... FROM stdin;``
line its rows belong to (a later part of the same table records ``"resume": true``, "the line of
the part before", so a long line is stored once per table). The parts of one table hold no other
entry (the writer cuts before the next one too; only the end of a pg_dump run, which has no entry
header, may follow the last part), so a reader that takes all of a table's members reads
pg_dump's own bytes, and ``restore --jobs`` can load the parts side by side: a part is run as
``resume`` + its rows, and a part that a later one resumes is ended with ``\\.``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

VERSION = 2
READABLE = frozenset({1, 2})  # version 1: no parts (written before tables were cut into parts)
SECTIONS = ("pre-data", "data", "post-data")
# A member is closed at an entry boundary once it holds this much SQL: fewer, larger members
# compress as well as one stream (the deflate window is 32 KiB), while a small table restored
# alone reads at most about this much beside its own rows.
MIN_MEMBER = 1 << 20
# A table's data is cut into parts of about this much SQL (BACKUP_SEEKABLE_PART_MB): the unit of
# work of a parallel restore, so that one large table no longer sets its length alone.
PART_SIZE = 32 << 20

# pg_dump's TOC comment: "-- Name: t; Type: TABLE; Schema: s; Owner: o" (or "-- Data for Name:"),
# names unquoted, with newlines replaced by spaces.
TOC_HEADER = re.compile(
    rb"^-- (?P<data>Data for )?Name: (?P<name>.*?); Type: (?P<type>[^;]*); Schema: (?P<schema>[^;]*);"
    rb" Owner: (?P<owner>[^;]*)(?:; Tablespace: .*)?$"
)
# Entry types of the data section (pg_dump's SECTION_DATA); everything after them is post-data.
# ("BLOB METADATA": pg_dump 17+ writes the large objects' lo_create and owner between the sequence
# values and their data.)
DATA_TYPES = frozenset({"TABLE DATA", "SEQUENCE SET", "BLOB METADATA", "BLOBS", "LARGE OBJECT", "BLOB DATA"})
# Entry types of pg_dump's post-data section: a schema-only run (the supabase profile's first)
# has no data between its pre-data and these.
POST_TYPES = frozenset(
    {
        "CONSTRAINT",
        "FK CONSTRAINT",
        "CHECK CONSTRAINT",
        "INDEX",
        "INDEX ATTACH",
        "TRIGGER",
        "EVENT TRIGGER",
        "POLICY",
        "ROW SECURITY",
        "RULE",
        "MATERIALIZED VIEW DATA",
        "PUBLICATION",
        "PUBLICATION TABLE",
        "PUBLICATION TABLES IN SCHEMA",
        "SUBSCRIPTION",
        "SUBSCRIPTION TABLE",
        "STATISTICS DATA",
    }
)

# What a part's "resume" may hold: pg_dump's COPY line and nothing more (it is run on the
# target): names as pg_dump's fmtId writes them, quoted unless plain lower-case.
_IDENT = r'(?:"(?:[^"\n]|"")+"|[a-z_][a-z0-9_$]*)'
_COPY_LINE = re.compile(rf"COPY (?P<schema>{_IDENT})\.(?P<table>{_IDENT}) (?:\({_IDENT}(?:, {_IDENT})*\) )?FROM stdin;")


def copies_into(resume: str, table: str) -> bool:
    """``resume`` is pg_dump's COPY line and nothing more, and it loads ``table`` (``schema.table``
    unquoted, as the manifest names it)."""
    match = _COPY_LINE.fullmatch(resume)
    if match is None:
        return False
    schema, name = (_unquote(match[group]) for group in ("schema", "table"))
    return f"{schema}.{name}" == table


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


@dataclass(frozen=True)
class Toc:
    """One entry header of pg_dump's plain output."""

    name: str
    type: str
    schema: str  # "-" for objects without one
    owner: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


def parse_toc(line: bytes) -> Toc | None:
    """The header line's fields, or None when ``line`` is not a TOC header."""
    match = TOC_HEADER.match(line.rstrip(b"\n"))
    if not match:
        return None
    text = {k: v.decode("utf-8", errors="replace") for k, v in match.groupdict(b"").items()}
    return Toc(text["name"], text["type"], text["schema"], text["owner"])


@dataclass(frozen=True)
class Member:
    offset: int
    length: int
    raw_offset: int
    raw_length: int
    section: str
    tables: tuple[str, ...] = ()
    # A data member holding no table's rows: the entry types it holds ("SEQUENCE SET", or the
    # large objects' "BLOBS"...), so that a reader can pass over large objects. Empty: unknown
    # (an index written before it was recorded) or a member that holds tables' rows.
    entries: tuple[str, ...] = ()
    # A part after the first of a table's data: the COPY line its rows continue ("" otherwise).
    resume: str = ""

    @property
    def large_objects_only(self) -> bool:
        """Whether it is known to hold large objects and no sequence values nor rows."""
        return bool(self.entries) and not self.tables and "SEQUENCE SET" not in self.entries


@dataclass(frozen=True)
class Index:
    members: tuple[Member, ...]
    encrypted: bool = False
    version: int = VERSION

    def for_tables(self, tables: Iterable[str]) -> list[Member]:
        """The members holding any of ``tables``' data, in file order."""
        wanted = set(tables)
        return [m for m in self.members if wanted.intersection(m.tables)]

    def of_section(self, section: str) -> list[Member]:
        return [m for m in self.members if m.section == section]

    def resumed(self) -> frozenset[int]:
        """The offsets of the members a later part resumes: they end inside COPY data."""
        return frozenset(m.offset for m, after in zip(self.members, self.members[1:], strict=False) if after.resume)


def as_json(index: Index) -> dict[str, Any]:
    return {
        "version": index.version,
        "encrypted": index.encrypted,
        "members": [
            {
                "offset": m.offset,
                "length": m.length,
                "raw_offset": m.raw_offset,
                "raw_length": m.raw_length,
                "section": m.section,
                "tables": list(m.tables),
            }
            | ({"entries": list(m.entries)} if m.entries else {})
            | _resume_json(m, before)
            for before, m in zip((None, *index.members), index.members, strict=False)
        ],
    }


def _resume_json(member: Member, before: Member | None) -> dict[str, Any]:
    """A table's second part carries its COPY line; every later one ``true``, "the line of the part
    before": a table with many columns and hundreds of parts would otherwise repeat a long line in
    the manifest hundreds of times."""
    if not member.resume:
        return {}
    return {"resume": True if before is not None and before.resume == member.resume else member.resume}


def from_json(value: Any) -> Index | None:
    """The stored index, or None when there is none or it is not of a shape this code reads (a
    later version, a damaged value): a reader then streams the whole file."""
    if not isinstance(value, Mapping) or value.get("version") not in READABLE:
        return None
    raw = value.get("members")
    if not isinstance(raw, list):
        return None
    members: list[Member] = []
    keys = ("offset", "length", "raw_offset", "raw_length")
    for item in raw:
        if not isinstance(item, Mapping) or not all(isinstance(item.get(k), int) for k in keys):
            return None
        tables = item.get("tables", [])
        entries = item.get("entries", [])
        resume = item.get("resume", "")
        if item.get("section") not in SECTIONS or not isinstance(tables, list) or not isinstance(entries, list):
            return None
        if resume is True:  # the line of the part before, which must be one
            resume = members[-1].resume if members else ""
            if not resume:
                return None
        if not isinstance(resume, str) or (resume and (len(tables) != 1 or not copies_into(resume, str(tables[0])))):
            return None
        members.append(
            Member(
                int(item["offset"]),
                int(item["length"]),
                int(item["raw_offset"]),
                int(item["raw_length"]),
                str(item["section"]),
                tuple(str(t) for t in tables),
                tuple(str(e) for e in entries),
                resume,
            )
        )
    if members and members[0].resume:
        return None
    for before, part in itertools.pairwise(members):
        if part.resume and before.tables != part.tables:  # a part follows its own table's rows only
            return None
    return Index(tuple(members), bool(value.get("encrypted", False)), int(value["version"]))


def index_of(manifest: Mapping[str, Any] | None) -> Index | None:
    """The index in a stored manifest (``core.manifest``), None for a backup without one."""
    if not isinstance(manifest, Mapping):
        return None
    return from_json(manifest.get("index"))


@dataclass
class Planner:
    """Decides, entry header by entry header, where the writer starts a new member.

    Sections follow pg_dump's order (pre-data, data, post-data): a data entry starts or continues
    the data section; a post-data entry (an index, a constraint...), and any other entry after
    data or post-data, is post-data. A new member starts at every
    section change, between table data, the sequence values and the large objects after them, before
    a table whose data is expected to be large (``sizes``: bytes per ``schema.table``, an
    estimate), and at any table boundary once the member holds ``min_member`` bytes of SQL.
    Inside a table's rows, ``split`` starts a new part every ``part_size`` bytes when the member
    holds that table alone. A file of several pg_dump runs (the supabase profile) passes through
    the sections more than once; each part is labelled as it comes."""

    sizes: Mapping[str, int] = field(default_factory=dict)
    min_member: int = MIN_MEMBER
    part_size: int = PART_SIZE
    section: str = "pre-data"
    start: int = 0  # raw offset where the open member starts
    tables: list[str] = field(default_factory=list)
    entries: list[str] = field(default_factory=list)  # a data member's entry types, but its tables'
    resume: str = ""  # the open member is a part that continues this COPY
    _kind: str = ""  # "table", "sequences" or "other" (large objects): what the open data member holds
    _parted: bool = False  # the open member is a part of a table: the next entry starts a new one
    _alone: bool = False  # the open member started at the header of the table it holds

    def cut_before(self, toc: Toc, raw_offset: int) -> Closed | None:
        """Called at each entry header (``raw_offset``: where its comment block starts). When a
        new member starts there, the section and tables of the one it closes; else None."""
        if toc.type in DATA_TYPES:
            section = "data"
        elif toc.type in POST_TYPES or self.section in ("data", "post-data"):
            section = "post-data"
        else:
            section = "pre-data"
        kind = {"TABLE DATA": "table", "SEQUENCE SET": "sequences"}.get(toc.type, "other")
        held = raw_offset - self.start
        large = held >= self.min_member or self.sizes.get(toc.qualified, 0) >= self.min_member
        cut = held > 0 and (
            self._parted
            or section != self.section
            or (section == "data" and (kind != self._kind or (kind == "table" and large)))
        )
        closed = None
        if cut:
            closed = self.current()
            self._restart(raw_offset)
        self.section = section
        self._kind = kind
        if kind == "table" and toc.qualified not in self.tables:
            self._alone = not self.tables and not self.entries and self.section == "data"
            self.tables.append(toc.qualified)
        elif section == "data" and kind != "table" and toc.type not in self.entries:
            self.entries.append(toc.type)
        return closed

    def split(self, raw_offset: int, copy_line: str) -> Closed | None:
        """Called at a row boundary inside the COPY data of ``copy_line``: when the open member
        holds only that table's data, from its header on, and ``part_size`` of it, the member
        closed there (a new part starts); else None."""
        if not (self._alone and len(self.tables) == 1 and self._kind == "table"):
            return None
        table = self.tables[0]
        if raw_offset - self.start < self.part_size or not copies_into(copy_line, table):
            return None
        closed = self.current()
        self._restart(raw_offset)
        self.tables, self.resume, self._parted, self._alone = [table], copy_line, True, True
        return closed

    def _restart(self, raw_offset: int) -> None:
        self.start = raw_offset
        self.tables = []
        self.entries = []
        self.resume = ""
        self._parted = self._alone = False

    def current(self) -> Closed:
        """The open member's section, tables, (a data member without tables) entry types, and
        the COPY line it resumes (a part after a table's first)."""
        entries = tuple(self.entries) if self.section == "data" and not self.tables else ()
        return Closed(self.section, tuple(self.tables), entries, self.resume)


@dataclass(frozen=True)
class Closed:
    """What the writer records of a member it closes (with its offsets, a ``Member``)."""

    section: str
    tables: tuple[str, ...] = ()
    entries: tuple[str, ...] = ()
    resume: str = ""


def check_cover(members: Sequence[Member], gz_size: int, sql_size: int) -> str | None:
    """Why ``members`` do not cover the stream exactly (None when they do): the writer's own
    check before it records an index, and the tests'."""
    at = raw = 0
    for m in members:
        if m.offset != at or m.raw_offset != raw or m.length <= 0:
            return f"member at {m.offset} does not follow the previous one (expected offset {at}, raw {raw})"
        at += m.length
        raw += m.raw_length
    if at != gz_size or raw != sql_size:
        return f"members cover {at} of {gz_size} bytes ({raw} of {sql_size} of SQL)"
    return None
