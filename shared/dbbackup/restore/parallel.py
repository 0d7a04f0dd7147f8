"""``restore --jobs N``: a full-profile backup restored over N sessions.

The phases follow pg_restore's: the pre-data section in one session and one transaction; then
the table data over N sessions; then the post-data section over N sessions in dependency order
(indexes, primary keys and other constraints, triggers and policies first; partition index
attachments; foreign keys, which need the unique indexes they reference; the rest, comments
and materialized view refreshes, one after another in the file's order). Two entries that name
the same table never run at once (as pg_restore), so sessions neither wait on each other's
locks nor deadlock. Every session is a bundled psql fed pg_dump's own preamble (its SET lines)
first, then entries, each followed by a marker query whose answer says the entry is done.

With the seekable index of the backup (``core.seek_index``) each data session reads its own
members by byte range and decompresses them itself; without one (a bare file, an older or an
encrypted backup) the file is streamed once: pre-data and data go through one session and one
transaction, as the sequential restore does, and only the post-data section is spread over
the sessions (it is held in memory meanwhile: DDL, not data).

The sessions commit as they go, so "all or nothing" is kept by the target having been empty:
on any failure, or on Ctrl-C / SIGTERM, every session is stopped and what the restore created
is dropped (``pg.created``); what could not be is named in the error.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import queue
import re
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import psycopg

from dbbackup.core.seek_index import DATA_TYPES, Index, Member
from dbbackup.dump import profiles
from dbbackup.dump.age import Identities
from dbbackup.dump.gunzip import ReadStats, gunzip
from dbbackup.errors import BackupError, RestoreFailed, UsageError
from dbbackup.pg import binaries as pgbin
from dbbackup.pg import connect as db
from dbbackup.pg.conninfo import check_dump_url, check_url, libpq_target
from dbbackup.pg.created import Objects, drop_created, snapshot, stop_sessions
from dbbackup.pg.process import drain_lines, stop_group
from dbbackup.redact import one_line
from dbbackup.restore.reading import open_stored
from dbbackup.restore.restorer import COMMIT, RestoreResult, check_target
from dbbackup.restore.script import COMPLETE, Entry, Splitter, split
from dbbackup.restore.seekable import index_for, open_members
from dbbackup.restore.sources import Source

SUPABASE_REFUSED = (
    "--jobs > 1 restores full-profile backups only; this is a supabase-profile backup"
    " (several programs' output in one file): restore it with --jobs 1"
)
# The entry types that begin the post-data section of pg_dump's output (what comes between the
# data and them, large objects' metadata and comments, is restored with the data).
POST_DATA_TYPES = frozenset(
    {
        "INDEX",
        "CONSTRAINT",
        "CHECK CONSTRAINT",
        "FK CONSTRAINT",
        "INDEX ATTACH",
        "TRIGGER",
        "RULE",
        "POLICY",
        "ROW SECURITY",
        "STATISTICS",
        "EVENT TRIGGER",
        "PUBLICATION",
        "PUBLICATION TABLE",
        "PUBLICATION TABLES IN SCHEMA",
        "SUBSCRIPTION",
        "SUBSCRIPTION TABLE",
        "MATERIALIZED VIEW DATA",
    }
)
# The waves of the post-data section: (types, whether its entries run side by side). An entry of
# no wave's type runs in the last wave, one at a time in the file's order.
FIRST_WAVE = frozenset(
    {"INDEX", "CONSTRAINT", "CHECK CONSTRAINT", "TRIGGER", "RULE", "POLICY", "ROW SECURITY", "STATISTICS"}
)
# First-wave entries that change what a later INSERT or COPY does (a BEFORE trigger, a NOT VALID
# check, a rule, row security): they wait until every table's rows are in, not only their own
# table's, since one on a partitioned or inheritance parent reaches its partitions and children,
# whose rows other tasks load (the parent itself has none to wait for).
AFTER_ALL_DATA = frozenset({"TRIGGER", "CHECK CONSTRAINT", "RULE", "POLICY", "ROW SECURITY"})
WAVES: tuple[tuple[frozenset[str], bool], ...] = (
    (FIRST_WAVE, True),
    (frozenset({"INDEX ATTACH"}), False),  # needs the parent's and the partition's index
    (frozenset({"FK CONSTRAINT"}), True),  # needs the referenced table's unique index
)
# Session settings pg_dump writes between entries, when they change (they hold until changed).
_SETTING = re.compile(rb"^SET (default_tablespace|default_table_access_method) = [^\n]*;$", re.M)
_QUALIFIED = re.compile(rb'(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)\.(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)')
_NAME = re.compile(r'"(?:[^"]|"")+"|[^."]+')
_PSQL_ERROR = re.compile(r"^psql:[^:]*:\d+: (?:ERROR|FATAL):\s+(?P<msg>.*)$")
_MARKER = "dbbackup:done:"
_POLL = 0.2


@dataclass
class Task:
    label: str  # what to call it in an error
    locks: frozenset[str]  # the tables it names: two tasks sharing one never run at once
    chunks: Callable[[], Iterable[bytes]]  # its SQL, produced when it runs
    size: int = 0
    loads: frozenset[str] = frozenset()  # the tables whose rows it loads
    after: frozenset[str] = frozenset()  # tables whose rows must be loaded before it starts
    after_all: bool = False  # it starts only once every table's rows are loaded (AFTER_ALL_DATA)


class _Lines:
    """psql's stderr: the markers (psql buffers its stdout, a warning reaches stderr at once)
    and the last other lines, for an error's description."""

    def __init__(self) -> None:
        self.tail: deque[str] = deque(maxlen=30)
        self.done: queue.Queue[int] = queue.Queue()

    def append(self, line: str, /) -> None:
        at = line.find(_MARKER)
        if at >= 0 and line[at + len(_MARKER) :].isdigit():
            self.done.put(int(line[at + len(_MARKER) :]))
        else:
            self.tail.append(line)


class Session:
    """One psql process, one server session: the preamble, then tasks, each confirmed done by a
    marker (a warning the server sends once psql got there: psql runs its input in order)."""

    def __init__(
        self,
        conninfo: str,
        env: dict[str, str],
        secrets: tuple[str, ...],
        preamble: bytes,
        *,
        single_transaction: bool = False,
    ) -> None:
        argv = [str(pgbin.tool("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
        self.single_transaction = single_transaction
        if single_transaction:
            # Our own BEGIN, and COMMIT written by close() only: not psql's --single-transaction,
            # which commits whenever its input ends (also when this process is killed mid-stream).
            argv += ["-c", "BEGIN"]
        self.proc = subprocess.Popen(
            [*argv, "-f", "-", "-d", conninfo],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        assert self.proc.stdin is not None and self.proc.stderr is not None
        self.stdin = self.proc.stdin
        self.lines = _Lines()
        self.errors = self.lines.tail
        self.count = 0
        self.label = "the session's start"
        self.threads = [threading.Thread(target=self._drain, args=(secrets,), daemon=True)]
        for thread in self.threads:
            thread.start()
        self.write(preamble)

    def _drain(self, secrets: tuple[str, ...]) -> None:
        assert self.proc.stderr is not None
        drain_lines(self.proc.stderr, self.lines, secrets)
        self.lines.done.put(-1)  # psql is gone

    def write(self, data: bytes) -> None:
        try:
            self.stdin.write(data)
        except (BrokenPipeError, ValueError):
            raise self.failure() from None

    def run(self, task: Task) -> None:
        self.label = task.label
        for chunk in task.chunks():
            self.write(chunk)
        self.count += 1
        self.write(f"\nDO $m$BEGIN RAISE WARNING '{_MARKER}{self.count}'; END$m$;\n".encode())
        try:
            self.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise self.failure() from None
        if self.lines.done.get() != self.count:
            raise self.failure()

    def close(self) -> None:
        """End the input (a single transaction's COMMIT written first) and check psql's status."""
        if self.single_transaction:
            self.write(COMMIT)
        with contextlib.suppress(BrokenPipeError):
            self.stdin.close()
        self.proc.wait()
        for thread in self.threads:
            thread.join(timeout=10)
        if self.proc.returncode != 0:
            raise self.failure()

    def kill(self) -> None:
        stop_group(self.proc, grace=0)
        with contextlib.suppress(BrokenPipeError, ValueError):
            self.stdin.close()
        for thread in self.threads:
            thread.join(timeout=10)

    def failure(self) -> RestoreFailed:
        self.proc.wait()
        for thread in self.threads:
            thread.join(timeout=10)
        for line in self.errors:
            match = _PSQL_ERROR.match(line)
            if match:
                return RestoreFailed(one_line(f"{self.label}: {match['msg']}"))
        detail = next((ln for ln in self.errors if "error" in ln.lower() or "fatal" in ln.lower()), "")
        return RestoreFailed(
            one_line(
                f"{self.label}: psql exited with status {self.proc.returncode}" + (f": {detail}" if detail else "")
            )
        )


def run_tasks(sessions: Sequence[Session], tasks: Sequence[Task]) -> None:
    """``tasks`` over ``sessions``, each session taking the first waiting task none of whose
    tables a running task holds and whose ``after`` tables are loaded (a table split into parts
    is loaded once every part is). The first failure stops the handing out; it is raised."""
    cond = threading.Condition()
    waiting = list(tasks)
    held: set[str] = set()
    loading = Counter(table for t in tasks for table in t.loads)
    failures: list[BaseException] = []

    def work(session: Session) -> None:
        while True:
            with cond:
                while True:
                    if failures or not waiting:
                        return
                    task = next((t for t in waiting if not t.locks & held and not t.after & loading.keys()), None)
                    if task is not None:
                        waiting.remove(task)
                        held.update(task.locks)
                        break
                    cond.wait()
            try:
                session.run(task)
            except BaseException as exc:
                with cond:
                    failures.append(exc)
                    cond.notify_all()
                return
            with cond:
                held.difference_update(task.locks)
                loading.subtract(task.loads)
                for table in task.loads:
                    if loading[table] <= 0:
                        del loading[table]
                cond.notify_all()

    threads = [threading.Thread(target=work, args=(s,), daemon=True) for s in sessions[: max(1, len(tasks))]]
    for thread in threads:
        thread.start()
    try:
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(timeout=_POLL)  # short waits: Ctrl-C and SIGTERM are seen at once
            if failures:
                break
    except BaseException:
        with cond:
            failures.append(RestoreFailed("interrupted"))
            cond.notify_all()
        raise
    if failures:
        raise failures[0]


def locks_of(sql: bytes) -> frozenset[str]:
    """The schema-qualified names an entry's statements mention (pg_dump qualifies every one):
    its table, a foreign key's referenced table, and some function names, harmlessly."""
    text = b"\n".join(ln for ln in sql.split(b"\n") if not ln.startswith(b"--"))
    return frozenset(
        _unquoted(m.decode(errors="replace")) for m in _QUALIFIED.findall(text) if not m.startswith(b"pg_catalog.")
    )


def _unquoted(qualified: str) -> str:
    """``"App Data"."Orders"`` -> ``App Data.Orders``: the index's and the manifest's spelling
    (pg_dump quotes every name that folding would change, so the unquoted form is exact)."""
    parts = _NAME.findall(qualified)
    return ".".join(p[1:-1].replace('""', '"') if p.startswith('"') else p for p in parts)


class Settings:
    """The SET lines pg_dump writes between entries, as they stand at each point of the script."""

    def __init__(self) -> None:
        self.lines: dict[bytes, bytes] = {}

    def see(self, sql: bytes) -> None:
        for match in _SETTING.finditer(sql):
            self.lines[match.group(1)] = match.group(0)

    def prefix(self) -> bytes:
        return b"".join(line + b"\n" for line in self.lines.values())


def post_data_tasks(entries: Iterable[tuple[Entry, bytes]], settings: Settings) -> list[list[Task]]:
    """The post-data entries as waves of tasks (see ``WAVES``); the trailer is left out."""
    waves: list[list[Task]] = [[] for _ in range(len(WAVES) + 1)]
    for entry, sql in entries:
        if entry.kind != "entry":
            settings.see(sql)  # SET lines no header followed still hold for what comes next
            continue
        prefix = settings.prefix()
        settings.see(sql)
        wave = next((n for n, (types, _) in enumerate(WAVES) if entry.type in types), len(WAVES))
        label = f"{entry.type} {entry.qualified}"
        waves[wave].append(
            Task(
                label,
                locks_of(sql),
                functools.partial(list, [prefix + sql]),
                len(sql),
                after_all=entry.type in AFTER_ALL_DATA,
            )
        )
    return waves


def run_post_data(sessions: Sequence[Session], waves: list[list[Task]]) -> None:
    for n, tasks in enumerate(waves):
        side_by_side = n < len(WAVES) and WAVES[n][1]
        run_tasks(sessions if side_by_side else sessions[:1], tasks)


@dataclass
class _Run:
    """What one parallel restore has started, for the way out."""

    sessions: list[Session] = field(default_factory=list)
    stats: ReadStats = field(default_factory=ReadStats)

    def kill(self) -> None:
        for session in self.sessions:
            session.kill()


def restore_parallel(
    source: Source,
    target_url: str,
    jobs: int,
    *,
    create: bool = False,
    identities: Identities | None = None,
) -> RestoreResult:
    check_url(target_url, "--target")
    check_dump_url(target_url, "--target")  # session settings through a transaction pooler: not safe
    conninfo, env, secrets = libpq_target(target_url, "--target")
    # The sessions' name, by which a failure finds and ends them (pg.created.stop_sessions): in
    # the conninfo, not PGAPPNAME, which an application_name in the target URL would override.
    application_name = f"dbbackup-restore-{uuid.uuid4().hex[:12]}"
    conninfo = psycopg.conninfo.make_conninfo(conninfo, application_name=application_name)
    opened = open_stored(source)
    index = index_for(source)
    if index is not None and not _by_range(index, source):
        index = None
    stats = ReadStats()
    blocks = gunzip(opened.gzip(identities, source.label, "restore"), stats)
    first = next(blocks, b"")
    if profiles.is_supabase_dump(first):
        raise UsageError(SUPABASE_REFUSED)
    check_target(target_url, secrets, supabase_dump=False, force=False, create=create, force_hint=False)
    with db.connect(target_url, attempts=1, secrets=secrets) as conn, db.sql_errors(secrets):
        before = snapshot(conn)
    started = time.monotonic()
    run = _Run()

    def session(preamble: bytes, single_transaction: bool = False) -> Session:
        run.sessions.append(Session(conninfo, env, secrets, preamble, single_transaction=single_transaction))
        return run.sessions[-1]

    try:
        if index is not None:
            del blocks  # only its first block was needed: the sessions read by range
            read = _with_index(source, index, jobs, session, run.stats)
        else:
            read = _streamed(itertools.chain([first], blocks), jobs, session)
            run.stats = stats
    except BaseException as exc:
        _undo(exc, run, target_url, before, secrets, application_name)
        raise  # _undo raises; this line is for the type checker
    return RestoreResult(
        source.label,
        run.stats.gz_bytes,
        run.stats.sql_bytes,
        opened.stored.md5 if index is None else "",
        round(time.monotonic() - started, 3),
        single_transaction=False,
        encrypted=opened.stored.encrypted,
        jobs=jobs,
        read=read,
    )


def _undo(
    exc: BaseException, run: _Run, target_url: str, before: Objects, secrets: tuple[str, ...], application_name: str
) -> None:
    """Stop every session, drop what the restore created, and raise the failure saying so."""
    in_main = threading.current_thread() is threading.main_thread()
    saved = [signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)] if in_main else []
    try:
        run.kill()
        why = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc) or type(exc).__name__
        try:
            stop_sessions(target_url, application_name, secrets)
            left = drop_created(target_url, before, secrets)
        except BackupError as cleanup:  # the target is out of reach now, or refuses a DROP
            raise RestoreFailed(
                one_line(
                    f"{why}; removing what the restore created failed too ({cleanup}): the target is partly restored"
                )
            ) from None
        if left:
            shown = ", ".join(left[:10]) + (f" and {len(left) - 10} more" if len(left) > 10 else "")
            raise RestoreFailed(one_line(f"{why}; the restore's objects were dropped except: {shown}")) from None
        raise RestoreFailed(one_line(f"{why}; everything the restore had created was dropped")) from None
    finally:
        for s, handler in zip((signal.SIGINT, signal.SIGTERM), saved, strict=False):
            signal.signal(s, handler)


def _by_range(index: Index, source: Source) -> bool:
    """Whether the sessions can read their members by range: not an age file's (its members are
    inside the encryption), and the index has the sections apart (a file of an older writer may
    not: it is then streamed, as a file without an index)."""
    members = index.members
    return (
        not index.encrypted
        and source.open_range is not None
        and members[0].section == "pre-data"
        and members[-1].section == "post-data"
        and not members[-1].tables
    )


def _with_index(source: Source, index: Index, jobs: int, session: Callable[..., Session], stats: ReadStats) -> str:
    members = list(index.members)
    lead = list(itertools.takewhile(lambda m: m.section == "pre-data", members))
    tail = list(itertools.takewhile(lambda m: m.section == "post-data", reversed(members)))[::-1]
    middle = members[len(lead) : len(members) - len(tail)]

    def read(chosen: Sequence[Member]) -> Iterator[bytes]:
        for chunk in open_members(source, chosen, index):
            stats.sql_bytes += len(chunk)
            yield chunk
        stats.gz_bytes += sum(m.length for m in chosen)

    # Pre-data: one session, one transaction; its preamble is every other session's first input.
    settings = Settings()
    splitter = Splitter()
    preamble = bytearray()
    pre = session(b"", single_transaction=True)
    pre.label = "the pre-data section (one transaction)"
    for chunk in itertools.chain(read(lead), [None]):
        for piece in splitter.feed(chunk) if chunk is not None else splitter.finish():
            if piece.entry.kind == "preamble":
                preamble += piece.data
            if piece.entry.type not in DATA_TYPES:
                settings.see(piece.data)
            pre.write(piece.data)
    pre.close()

    post = b"".join(read(tail))  # DDL: read before the data, so that an index can follow its table's rows
    if COMPLETE not in post:
        raise RestoreFailed("the backup's post-data section lacks pg_dump's completion marker (truncated file)")
    waves = post_data_tasks(split(post), settings)
    resumed = index.resumed()
    tasks = [_data_task(m, read, m.offset in resumed) for m in middle if m.tables]
    others = [m for m in middle if not m.tables]
    if others:  # sequence values, large objects: in the file's order, in one session
        tasks.append(Task("sequence values and large objects", frozenset(), functools.partial(read, others), 1 << 62))
    tasks.sort(key=lambda t: -t.size)  # the largest first: the last one to finish is a small one
    # As pg_restore does, a table's indexes and constraints start as soon as its rows are in
    # (while other sessions still load theirs), never before; what changes inserts (a trigger, a
    # NOT VALID check, a rule, a policy) waits for all the rows: on a partitioned or inheritance
    # parent it reaches the partitions and children too.
    loaded = frozenset().union(*(t.loads for t in tasks))
    for task in waves[0]:
        task.after = loaded if task.after_all else task.locks
    sessions = [session(bytes(preamble)) for _ in range(jobs)]
    run_tasks(sessions, tasks + waves[0])
    run_post_data(sessions, [[], *waves[1:]])
    for s in sessions:
        s.close()
    return "by range (seekable index)"


def _data_task(member: Member, read: Callable[[Sequence[Member]], Iterator[bytes]], ends_open: bool) -> Task:
    """A data member's task. A part of a table (core.seek_index) runs as a COPY of its own: the
    COPY line it resumes first, and ``\\.`` after its rows when a later part goes on with them
    (``ends_open``); the parts of one table lock nothing against each other, so they load side by
    side. The COPY line is SQL run on the target: seek_index.from_json read the index only if each
    one is pg_dump's line for its member's own table."""
    label = f"TABLE DATA {', '.join(member.tables)}"
    loads = frozenset(member.tables)
    if not member.resume and not ends_open:
        return Task(label, loads, functools.partial(read, [member]), member.raw_length, loads=loads)

    def chunks() -> Iterator[bytes]:
        if member.resume:
            yield member.resume.encode() + b"\n"
        yield from read([member])
        if ends_open:
            yield b"\\.\n"

    return Task(f"{label} (part at byte {member.offset:,})", frozenset(), chunks, member.raw_length, loads=loads)


def _streamed(blocks: Iterable[bytes], jobs: int, session: Callable[..., Session]) -> str:
    settings = Settings()
    splitter = Splitter()
    complete = False
    preamble = bytearray()
    post: list[tuple[Entry, list[bytes]]] = []
    first = session(b"", single_transaction=True)
    first.label = "the pre-data and data sections (one transaction)"
    for chunk in itertools.chain(blocks, [None]):
        for piece in splitter.feed(chunk) if chunk is not None else splitter.finish():
            entry = piece.entry
            complete = complete or entry.kind == "trailer"
            if not post and piece.first and entry.type in POST_DATA_TYPES:
                post.append((entry, []))  # the post-data section starts here
            if post:
                if piece.first and post[-1][0] is not entry:
                    post.append((entry, []))
                post[-1][1].append(piece.data)
                continue
            if entry.kind == "preamble":
                preamble += piece.data
            if entry.type not in DATA_TYPES:
                settings.see(piece.data)
            first.write(piece.data)
    if not complete:  # a truncated file: psql is stopped before it can commit
        raise RestoreFailed("the dump ended without pg_dump's completion marker (truncated output)")
    first.close()  # commits the pre-data and the data
    sessions = [session(bytes(preamble)) for _ in range(jobs)]
    run_post_data(sessions, post_data_tasks(((e, b"".join(p)) for e, p in post), settings))
    for s in sessions:
        s.close()
    return "streamed (no seekable index: data in one session)"
