"""Restoring some tables of a backup: ``dbbackup restore SOURCE --table S.T [--into-schema NAME]``.

What is restored, for each table asked for (``--schema`` asks for every table of a schema, a
partitioned table brings its partitions): its CREATE TABLE, the sequences it owns (serial and
identity columns), column defaults, comments, its rows, its sequences' values, its constraints
and indexes, triggers, rules, row security and policies; an inheritance child's parents where
the target lacks them, as definitions only; a foreign key only when the table it points at is
restored too (the others are reported, not restored). Types and domains the table
uses, and trigger functions, are created only when the target lacks them. Nothing else of the
backup is run: no other table, view, function, extension or grant.

It runs in one psql session and one transaction: on any error nothing is left behind.

A seekable backup (``core.seek_index``) is read by byte range: the pre-data member, the members
holding those tables' data and sequence values, and the post-data member; the rest of the file
is never downloaded. Without an index (an older backup, a bare file, an encrypted one) the whole
file is streamed once and what is not asked for is passed over.

``into_schema``: the tables (and their sequences) are created in that schema instead, beside the
live ones, with every schema-qualified reference pg_dump wrote to them rewritten, so a person
can compare and copy rows back. Without it the tables must not exist in the target.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from dbbackup.core.seek_index import DATA_TYPES, POST_TYPES, SECTIONS, Index, Member
from dbbackup.dump.age import Identities
from dbbackup.dump.gunzip import ReadStats, gunzip
from dbbackup.dump.rewrite import DumpRewriter
from dbbackup.errors import UsageError
from dbbackup.pg import binaries as pgbin
from dbbackup.pg.catalog import create_database, missing_database, present
from dbbackup.pg.conninfo import check_dump_url, check_url, libpq_target
from dbbackup.restore import script
from dbbackup.restore.reading import encrypted_without_identity, open_stored
from dbbackup.restore.restorer import feed_psql
from dbbackup.restore.script import IDENT, QUALIFIED, Entry, unquote
from dbbackup.restore.seekable import index_for, open_members
from dbbackup.restore.sources import Source

# Kept when on a restored table (the table itself decides).
_ON_TABLE_PRE = frozenset({"DEFAULT", "COMMENT", "CHECK CONSTRAINT", "SECURITY LABEL"})
_ON_TABLE_POST = frozenset(
    {"CONSTRAINT", "CHECK CONSTRAINT", "INDEX", "TRIGGER", "POLICY", "ROW SECURITY", "RULE", "COMMENT"}
)
_FUNCTION_CALL = re.compile(QUALIFIED + rb"\(")
_ADD_CONSTRAINT = re.compile(rb"ADD CONSTRAINT (?P<c>" + IDENT + rb")")
_INDEX_NAMES = re.compile(
    rb"^ALTER INDEX " + QUALIFIED + rb" ATTACH PARTITION (?P<p>" + IDENT + rb"\." + IDENT + rb")", re.M
)
_SIMPLE = re.compile(r"[a-z_][a-z0-9_$]*")


@dataclass
class TablesResult:
    source: str
    tables: list[str]  # schema.table restored (as named in the backup)
    into_schema: str | None
    skipped: list[str]  # foreign keys not restored: "public.orders: orders_customer_fkey -> public.customers"
    gz_bytes: int  # of the file read: the members' bytes, or the whole file
    sql_bytes: int
    seconds: float
    indexed: bool  # read by range (the file's index) rather than streamed whole
    messages: list[str] = field(default_factory=list)


def quote(name: str) -> str:
    return name if _SIMPLE.fullmatch(name) else '"' + name.replace('"', '""') + '"'


def _split(qualified: str) -> tuple[str, str]:
    schema, _, name = qualified.partition(".")
    return schema, name


@dataclass
class Plan:
    """What to keep of the script, decided once its pre-data section is known."""

    tables: list[str]
    sequences: set[str]
    into: str | None
    entries: set[int] = field(default_factory=set)  # seq of pre-data entries to run
    indexes: set[str] = field(default_factory=set)  # indexes (and constraint indexes) created
    skipped: list[str] = field(default_factory=list)
    rename: re.Pattern[bytes] | None = None
    renamed: dict[str, bytes] = field(default_factory=dict)
    # Inheritance parents of the tables, created (definition only, no rows) where the target
    # lacks them; shell_entries: each one's pre-data entries (its sequences' too).
    shells: list[str] = field(default_factory=list)
    shell_entries: dict[str, set[int]] = field(default_factory=dict)
    shell_sequences: dict[str, set[str]] = field(default_factory=dict)

    def reuse(self, present: Iterable[str]) -> None:
        """The target already has these parents: the children inherit from them as they are."""
        for name in present:
            if name in self.shells:
                self.shells.remove(name)
                self.entries -= self.shell_entries.pop(name, set())
                self.sequences -= self.shell_sequences.pop(name, set())

    def rewrite(self, sql: bytes) -> bytes:
        """Point pg_dump's qualified names of the restored tables and sequences at ``into``."""
        if self.rename is None:
            return sql
        return self.rename.sub(lambda m: self.renamed[unquote(m.group(0))], sql)

    def keep_post(self, entry: Entry) -> bool:
        if entry.kind == "trailer":
            return True  # its session lines only (_session_lines)
        if entry.type == "FK CONSTRAINT":
            table = script.table_of(entry.sql)
            if table not in self.tables:
                return False
            outside = [t for t in script.references(entry.sql) if t not in self.tables]
            if outside:
                name = _ADD_CONSTRAINT.search(entry.sql)
                shown = unquote(name["c"]) if name else entry.name
                self.skipped.append(f"{table}: {shown} -> {', '.join(outside)}")
                return False
            return True
        if entry.type == "INDEX ATTACH":
            match = _INDEX_NAMES.search(script.statements(entry.sql))
            if match is None:
                return False
            return unquote(match["q"]) in self.indexes and unquote(match["p"]) in self.indexes
        if entry.type == "COMMENT" and (index := script.commented_index(entry.sql)) is not None:
            return index in self.indexes
        if entry.type in _ON_TABLE_POST and script.table_of(entry.sql) in self.tables:
            if entry.type == "INDEX":
                self.add_index(entry.qualified)
            elif entry.type == "CONSTRAINT" and (c := _ADD_CONSTRAINT.search(entry.sql)):
                self.add_index(f"{entry.schema}.{unquote(c['c'])}")
            return True
        return False

    def add_index(self, qualified: str) -> None:
        """An index created with the tables: a partition's INDEX ATTACH names it qualified."""
        self.indexes.add(qualified)
        if self.into is not None:
            self.renamed[qualified] = f"{quote(self.into)}.{quote(_split(qualified)[1])}".encode()
            self.compile()

    def compile(self) -> None:
        forms = sorted({_pattern(name) for name in self.renamed}, key=len, reverse=True)  # public.t_seq before public.t
        self.rename = re.compile(rb"(?<![\w$\".])(?:" + b"|".join(forms) + rb")(?![\w$\"])")


def plan(
    pre: Sequence[Entry],
    tables: Sequence[str],
    schemas: Sequence[str],
    into: str | None,
) -> Plan:
    """Which tables (UsageError for one the backup does not hold) and which pre-data entries."""
    in_dump = [e.qualified for e in pre if e.type in ("TABLE", "FOREIGN TABLE")]
    missing = [t for t in tables if t not in in_dump]
    if missing:
        raise UsageError(f"the backup holds no table {', '.join(missing)} (name it as schema.table)")
    wanted = list(dict.fromkeys(tables))
    for schema in schemas:
        found = [t for t in in_dump if _split(t)[0] == schema]
        if not found:
            raise UsageError(f"the backup holds no table in schema {schema}")
        wanted += [t for t in found if t not in wanted]
    # A partitioned table brings its partitions (their rows are theirs); an inheritance child
    # cannot be created without its parents: they come as definitions only ("shells": no rows,
    # no indexes), and only where the target lacks them (see Plan.reuse).
    shells: list[str] = []
    grew = True
    while grew:
        grew = False
        for e in pre:
            more: list[str] = []
            if e.type == "TABLE ATTACH" and script.table_of(e.sql) in wanted:
                more = [child] if (child := script.attached(e.sql)) else []
                for table in more:
                    if table not in wanted and table in in_dump:
                        wanted.append(table)
                        grew = True
            elif e.type == "TABLE" and (e.qualified in wanted or e.qualified in shells):
                for table in script.parents(e.sql):
                    if table not in wanted and table not in shells and table in in_dump:
                        shells.append(table)
                        grew = True
    owner: dict[str, str] = {}  # a sequence -> the table that owns it
    for e in pre:
        if e.type in ("SEQUENCE OWNED BY", "SEQUENCE") and (by := script.table_of(e.sql)) is not None:
            owner[e.qualified] = by
    sequences = {name for name, table in owner.items() if table in wanted or table in shells}
    result = Plan(wanted, sequences, into, shells=shells)
    for name, table in owner.items():
        if table in shells and name in sequences:
            result.shell_sequences.setdefault(table, set()).add(name)
    for e in pre:
        on = (
            e.qualified
            if e.type in ("TABLE", "FOREIGN TABLE")
            else owner.get(e.qualified)
            if e.type in ("SEQUENCE", "SEQUENCE OWNED BY")
            else script.table_of(e.sql)
            if e.type in _ON_TABLE_PRE or e.type == "TABLE ATTACH"
            else None
        )
        keep = (
            e.kind == "preamble"
            or (e.type in ("TABLE", "FOREIGN TABLE") and e.qualified in wanted)
            or (e.type in ("SEQUENCE", "SEQUENCE OWNED BY") and e.qualified in sequences)
            or (e.type in _ON_TABLE_PRE and script.table_of(e.sql) in wanted)
            or (e.type == "TABLE ATTACH" and script.table_of(e.sql) in wanted)
            or (on in shells and e.type != "TABLE ATTACH")
        )
        if keep:
            result.entries.add(e.seq)
            if on in shells:
                result.shell_entries.setdefault(on, set()).add(e.seq)
    if into is not None:
        names = [*wanted, *shells, *sequences]
        result.renamed = {name: f"{quote(into)}.{quote(_split(name)[1])}".encode() for name in names}
        result.compile()
    return result


def _pattern(qualified: str) -> bytes:
    """The ways pg_dump may spell ``schema.name``: bare when it may be, else quoted."""

    def one(name: str) -> bytes:
        quoted = re.escape(('"' + name.replace('"', '""') + '"').encode())
        return b"(?:" + re.escape(name.encode()) + b"|" + quoted + b")" if _SIMPLE.fullmatch(name) else quoted

    schema, name = _split(qualified)
    return one(schema) + rb"\." + one(name)


def _types_used(pre: Sequence[Entry], chosen: Plan) -> list[Entry]:
    """The EXTENSION, TYPE, DOMAIN and COLLATION entries the restored tables' definitions and defaults
    name: a type by its name, an extension by its schema (its types and functions are not in
    the backup, only the extension)."""
    used: set[str] = set()
    for e in pre:
        if e.seq in chosen.entries and e.type in ("TABLE", "FOREIGN TABLE", "DEFAULT"):
            used.update(script.qualified_names(e.sql))
    schemas = {_split(name)[0] for name in used}
    return [
        e
        for e in pre
        if (e.type in ("TYPE", "DOMAIN", "COLLATION") and e.qualified in used)
        or (e.type == "EXTENSION" and (ext := script.extension(e.sql)) is not None and ext[1] in schemas)
    ]


def _with_schema(e: Entry) -> bytes:
    """A type, extension or function of the backup, with the schema it goes in."""
    ext = script.extension(e.sql) if e.type == "EXTENSION" else None
    schema = ext[1] if ext else e.schema
    return f"CREATE SCHEMA IF NOT EXISTS {quote(schema)};\n".encode() + e.sql


def _own_preamble(sql: bytes) -> bytes:
    """pg_dump's own preamble (SET lines, ``\\restrict``): a supabase-profile file starts with
    pg_dumpall's roles and our SQL for a whole project, which restoring some tables must not run."""
    at = sql.rfind(b"--\n-- PostgreSQL database dump\n")
    return sql[at:] if at > 0 else sql


def _session_lines(sql: bytes) -> bytes:
    """Of what follows a pg_dump run's completion marker, only the session lines: its
    ``\\unrestrict``, and the next run's SET lines and ``\\restrict`` (the supabase profile's
    SQL for the managed schemas, also there, is not for a table restore)."""
    keep = (b"\\restrict ", b"\\unrestrict ", b"SET ", b"SELECT pg_catalog.set_config(")
    return b"".join(line for line in sql.splitlines(keepends=True) if line.startswith(keep))


def _settings_of(sql: bytes) -> bytes:
    """The SET lines (default_tablespace, default_table_access_method) that open an entry pg_dump
    wrote them before: an entry not restored passes them on."""
    lines = itertools.takewhile(lambda ln: ln.startswith(script.SESSION_SET) or ln == b"\n", sql.splitlines(True))
    return b"".join(line for line in lines if line != b"\n")


def _functions_for(sql: bytes, functions: dict[str, list[Entry]]) -> list[bytes]:
    """The FUNCTION entries ``sql`` calls that the target lacks, each once (taken from
    ``functions``)."""
    found: list[bytes] = []
    for match in _FUNCTION_CALL.finditer(script.statements(sql)):
        found.extend(_with_schema(e) for e in functions.pop(unquote(match["q"]), []))
    return found


def _function_name(e: Entry) -> str:
    return f"{e.schema}.{e.name.partition('(')[0]}"


def restore_tables(
    source: Source,
    target_url: str,
    *,
    tables: Sequence[str] = (),
    schemas: Sequence[str] = (),
    into_schema: str | None = None,
    identities: Identities | None = None,
    create: bool = False,
) -> TablesResult:
    check_url(target_url, "--target")
    check_dump_url(target_url, "--target")  # one transaction through a transaction pooler: not safe
    conninfo, env, secrets = libpq_target(target_url, "--target")
    for name in tables:
        if "." not in name:
            raise UsageError(f"--table {name}: name it as schema.table (e.g. public.{name})")
    index = index_for(source)
    stats = ReadStats()
    started = time.monotonic()
    if index is not None and not index.encrypted:
        pre_members = []
        for m in index.members:
            if m.section != "pre-data":
                break
            pre_members.append(m)
        pre_sql = b"".join(open_members(source, pre_members))
        pre, after = _until_rest(script.entries([pre_sql]))
        chosen = plan(pre, tables, schemas, into_schema)
        rest = _rest_members(index, chosen, len(pre_members))
        stats.gz_bytes = sum(m.length for m in [*pre_members, *rest])
        stats.sql_bytes = sum(m.raw_length for m in [*pre_members, *rest])
        stream: Iterator[Entry] = itertools.chain(after, script.entries(open_members(source, rest)))
        checker_input = [e.sql for e in pre]
    else:
        opened = open_stored(source)
        if opened.stored.encrypted and identities is None:
            raise encrypted_without_identity(source.label, "restore")
        pre, stream = _until_rest(script.entries(gunzip(opened.gzip(identities, source.label, "restore"), stats)))
        chosen = plan(pre, tables, schemas, into_schema)
        checker_input = [e.sql for e in pre]
    if (missing := missing_database(target_url, secrets)) is not None:
        if not create:
            raise UsageError(
                f'the target database "{missing}" does not exist: create it, or pass --create to create it'
            )
        create_database(target_url, missing, secrets)
    _check_target(target_url, chosen, secrets)
    return _run(
        source,
        conninfo,
        env,
        secrets,
        pre,
        chosen,
        stream,
        checker_input,
        target_url,
        stats,
        started,
        indexed=index is not None and not index.encrypted,
    )


def _until_rest(entries: Iterator[Entry]) -> tuple[list[Entry], Iterator[Entry]]:
    """The pre-data entries (held: they are small), and the stream from the first data or
    post-data entry on."""
    pre: list[Entry] = []
    for entry in entries:
        if entry.type in DATA_TYPES or entry.type in POST_TYPES or entry.kind == "trailer":
            return pre, itertools.chain([entry], entries)
        pre.append(entry)
    return pre, iter(())


def _rest_members(index: Index, chosen: Plan, skip: int) -> list[Member]:
    wanted = set(chosen.tables)
    sections = [m.section for m in index.members]
    # Large objects are passed over when the index tells them apart, in a file of one pg_dump
    # run (in a file of several, the member may also hold the end of a run and what follows).
    one_run = sections == sorted(sections, key=SECTIONS.index)
    return [
        m
        for m in index.members[skip:]
        if m.section == "post-data"
        or (m.section == "data" and wanted.intersection(m.tables))
        or (m.section == "data" and not m.tables and not (one_run and m.large_objects_only))
    ]


def _check_target(url: str, chosen: Plan, secrets: tuple[str, ...]) -> None:
    """The tables must not be there already (in ``into`` when given); an inheritance parent
    that is there already is used as it is (not in ``into``: there it is created too)."""
    if chosen.into is None and chosen.shells:
        there = present(url, "relation", [_split(t) for t in chosen.shells], secrets)
        chosen.reuse(f"{s}.{n}" for s, n in there)
    names = [(chosen.into or _split(t)[0], _split(t)[1]) for t in [*chosen.tables, *chosen.shells]]
    there = present(url, "relation", names, secrets)
    if there:
        shown = ", ".join(f"{s}.{n}" for s, n in sorted(there))
        hint = (
            "drop them first, or restore beside them with --into-schema NAME"
            if chosen.into is None
            else "pick another --into-schema"
        )
        raise UsageError(f"the target already holds {shown}: {hint}")


def _selected(
    pre: Sequence[Entry],
    chosen: Plan,
    stream: Iterator[Entry],
    checker: DumpRewriter,
    types: list[Entry],
    functions: dict[str, list[Entry]],
) -> Iterator[bytes]:
    """The SQL to run: the chosen pre-data, then data and post-data as they stream.
    ``types``: to create first; ``functions``: the backup's functions the target lacks, each
    created before the first statement that calls it."""
    for e in pre:
        if e.kind == "preamble":
            yield _own_preamble(e.sql)
            if chosen.into is not None:
                yield f"CREATE SCHEMA IF NOT EXISTS {quote(chosen.into)};\n\n".encode()
            else:
                for schema in sorted({_split(t)[0] for t in chosen.tables}):
                    yield f"CREATE SCHEMA IF NOT EXISTS {quote(schema)};\n".encode()
            for needed in types:
                yield _with_schema(needed)
            # Functions the definitions call (a default, a generated column, a check).
            kept = b"".join(x.sql for x in pre if x.seq in chosen.entries)
            yield from _functions_for(kept, functions)
        elif e.seq in chosen.entries:
            yield chosen.rewrite(e.sql)
        else:
            yield _settings_of(e.sql)  # pg_dump sets them once: a later kept entry may need them
    # Constraints, indexes, triggers and policies go last, after every row: a file of several
    # pg_dump runs (the supabase profile) has its post-data before its data.
    post: list[bytes] = []
    for entry in stream:
        checker.feed(entry.sql)
        rows = entry.copy_data
        if entry.type == "TABLE DATA" and entry.table in chosen.tables:
            yield chosen.rewrite(entry.sql)
            if rows is not None:
                for block in rows:
                    checker.feed(block)
                    yield block
                yield entry.tail()
                checker.feed(entry.tail())
            continue
        if rows is not None:
            for block in rows:
                checker.feed(block)
            checker.feed(entry.tail())
        if entry.type == "SEQUENCE SET" and entry.qualified in chosen.sequences:
            yield chosen.rewrite(entry.sql)
        elif entry.type not in DATA_TYPES and chosen.keep_post(entry):
            post.extend(_functions_for(entry.sql, functions))  # a trigger's, an index expression's
            post.append(_session_lines(entry.sql) if entry.kind == "trailer" else chosen.rewrite(entry.sql))
        elif entry.type not in DATA_TYPES:
            post.append(_settings_of(entry.sql))
    checker.finish()
    yield from post


def _run(
    source: Source,
    conninfo: str,
    env: dict[str, str],
    secrets: tuple[str, ...],
    pre: Sequence[Entry],
    chosen: Plan,
    stream: Iterator[Entry],
    checker_input: Iterable[bytes],
    target_url: str,
    stats: ReadStats,
    started: float,
    *,
    indexed: bool,
) -> TablesResult:
    checker = DumpRewriter([])
    for block in checker_input:
        checker.feed(block)
    # Types and trigger functions are created from the backup only where the target lacks them.
    types = _types_used(pre, chosen)
    have = present(target_url, "type", [(e.schema, e.name) for e in types if e.type in ("TYPE", "DOMAIN")], secrets)
    have |= present(target_url, "collation", [(e.schema, e.name) for e in types if e.type == "COLLATION"], secrets)
    have |= present(target_url, "extension", [("", e.name) for e in types if e.type == "EXTENSION"], secrets)
    types = [e for e in types if (e.schema, e.name) not in have and ("", e.name) not in have]
    functions: dict[str, list[Entry]] = {}
    for e in pre:
        if e.type == "FUNCTION":
            functions.setdefault(_function_name(e), []).append(e)
    have = present(target_url, "function", [_split(name) for name in functions], secrets)
    functions = {name: found for name, found in functions.items() if _split(name) not in have}
    # Our own BEGIN, and COMMIT only after the whole selection was written (not psql's
    # --single-transaction, which commits whenever its input ends: also when we are killed).
    argv = [str(pgbin.tool("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", "BEGIN", "-f", "-"]
    argv += ["-d", conninfo]
    lines = feed_psql(argv, env, _selected(pre, chosen, stream, checker, types, functions), secrets, commit=True)
    return TablesResult(
        source.label,
        chosen.tables,
        chosen.into,
        chosen.skipped,
        stats.gz_bytes,
        stats.sql_bytes,
        round(time.monotonic() - started, 3),
        indexed,
        lines.ours,
    )
