"""Restoring a backup: storage -> gunzip -> the bundled psql, streamed, all or nothing.

All or nothing (the default): psql's first command is our own ``BEGIN``, and ``COMMIT;`` is
written to its input only after the whole stream was read and checked (the gzip trailer and
pg_dump's completion marker seen). psql's ``--single-transaction`` is not used: it COMMITs when
its input ends, so a feeding process that died mid-stream (input cut, our process killed) would
commit what had arrived. Here an input that ends early leaves the transaction open, and psql's
exit rolls it back; a corrupt or truncated file kills psql as well.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from dbbackup.dump import profiles
from dbbackup.dump.age import Identities
from dbbackup.dump.gunzip import ReadStats, gunzip
from dbbackup.dump.rewrite import DumpRewriter
from dbbackup.errors import RestoreFailed, UsageError
from dbbackup.pg import binaries as pgbin
from dbbackup.pg.catalog import create_database, is_supabase_project, missing_database, user_tables
from dbbackup.pg.conninfo import check_dump_url, check_url, libpq_target
from dbbackup.pg.managed import SKIP_SETTING
from dbbackup.pg.process import drain_lines, stop_group
from dbbackup.pg.scratch import clearing_script
from dbbackup.redact import one_line
from dbbackup.restore.reading import open_stored
from dbbackup.restore.sources import Source

_PSQL_ERROR = re.compile(r"^psql:[^:]*:(?P<line>\d+): (?:ERROR|FATAL):\s+(?P<msg>.*)$")
# What the backup's own guarded statements say (a role privilege missing, an app object skipped).
_OUR_MESSAGE = re.compile(r"(?:NOTICE|WARNING):\s+(?P<msg>dbbackup: .*)$")
MAX_MESSAGES = 500
FULL_INTO_SUPABASE = (
    "this is a full-profile backup; the target is a Supabase project:"
    " restore a backup taken with BACKUP_PROFILE=supabase (README: Supabase)"
)
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")
COMMIT = b"\nCOMMIT;\n"  # the restore's only commit: written once the stream was read and checked


@dataclass
class RestoreResult:
    source: str
    gz_bytes: int
    sql_bytes: int
    md5: str  # of the file as stored (the age file when encrypted)
    seconds: float
    single_transaction: bool
    encrypted: bool = False
    # The backup's NOTICEs/WARNINGs: a role privilege the target lacks, an app object on a
    # managed schema the target already had or (with --skip-managed-errors) that was skipped.
    messages: list[str] = field(default_factory=list)
    jobs: int = 1  # sessions (restore --jobs)
    read: str = "streamed"  # how the file was read: streamed, or by range (a seekable index)


class PsqlLines:
    """psql's stderr: the last lines (for an error's description) and every message of ours."""

    def __init__(self) -> None:
        self.tail: deque[str] = deque(maxlen=50)
        self.ours: list[str] = []

    def append(self, line: str, /) -> None:
        self.tail.append(line)
        match = _OUR_MESSAGE.search(line)
        if match and len(self.ours) < MAX_MESSAGES:
            self.ours.append(match["msg"])


def restore(
    source: Source,
    target_url: str,
    *,
    single_transaction: bool = True,
    force: bool = False,
    create: bool = False,
    identities: Identities | None = None,
    skip_managed_errors: bool = False,
    replace: bool = False,
) -> RestoreResult:
    """An age-encrypted backup needs ``identities`` (UsageError before anything is touched);
    its pieces are authenticated as they stream, and a damaged one stops psql uncommitted.
    ``skip_managed_errors``: an app object on a managed schema the restoring role may not
    re-create is reported and skipped instead of stopping the restore (pg.managed).
    ``create``: when the target database does not exist, create it (else that is a UsageError
    that says so), once the backup could be opened.
    ``replace``: the target's user schemas (those its role owns) are dropped first, inside the
    restore's one transaction, so a failed restore leaves the target as it was (the console's
    RESTORE_TARGETS ``"replace": true``; implies ``force``)."""
    check_url(target_url, "--target")
    check_dump_url(target_url, "--target")  # one transaction through a transaction pooler: not safe
    conninfo, env, secrets = libpq_target(target_url, "--target")
    stats = ReadStats()
    opened = open_stored(source)
    blocks = gunzip(opened.gzip(identities, source.label, "restore"), stats)
    first = next(blocks, b"")
    check_target(
        target_url, secrets, supabase_dump=profiles.is_supabase_dump(first), force=force or replace, create=create
    )
    argv = [str(pgbin.tool("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    if single_transaction:
        argv += ["-c", "BEGIN"]  # committed only by the COMMIT written after the checked stream
    if skip_managed_errors:
        argv += ["-c", f"SET {SKIP_SETTING} = on"]
    if replace:
        if not single_transaction:
            raise UsageError("replacing a target's schemas needs the restore's single transaction")
        argv += ["-c", clearing_script(target_url, secrets)]
    argv += ["-f", "-", "-d", conninfo]
    started = time.monotonic()
    checker = DumpRewriter([])

    def checked() -> Iterator[bytes]:
        for block in itertools.chain([first], blocks):
            checker.feed(block)
            yield block

    # checker.finish raises when pg_dump's completion marker is missing: nothing is committed.
    lines = feed_psql(argv, env, checked(), secrets, commit=single_transaction, finish=checker.finish)
    return RestoreResult(
        source.label,
        stats.gz_bytes,
        stats.sql_bytes,
        opened.stored.md5,
        round(time.monotonic() - started, 3),
        single_transaction,
        opened.stored.encrypted,
        lines.ours,
    )


def feed_psql(
    argv: list[str],
    env: dict[str, str],
    blocks: Iterable[bytes],
    secrets: tuple[str, ...],
    *,
    commit: bool,
    finish: Callable[[], object] = lambda: None,
) -> PsqlLines:
    """Run psql (``argv`` reads ``-f -``) on ``blocks``, all or nothing. With ``commit`` (``argv``
    opened the transaction with ``-c BEGIN``), ``COMMIT`` is written only once every block was
    written and ``finish`` (the stream's own end check) passed; an input that ends early, an
    exception or our own death leaves the transaction open and psql's exit rolls it back.
    RestoreFailed, with psql's reason, when psql fails; else psql's lines."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    assert proc.stdin is not None and proc.stderr is not None
    lines = PsqlLines()
    drain = threading.Thread(target=drain_lines, args=(proc.stderr, lines, secrets), daemon=True)
    drain.start()
    input_ok = psql_gone = False
    try:
        for block in blocks:
            try:
                proc.stdin.write(block)
            except BrokenPipeError:
                psql_gone = True  # psql stopped at an SQL error; its message says why
                break
        else:
            finish()
            if commit:
                try:
                    proc.stdin.write(COMMIT)
                except BrokenPipeError:
                    psql_gone = True
            input_ok = not psql_gone
    except BaseException:
        stop_group(proc, grace=0)
        raise
    finally:
        if not input_ok and not psql_gone and proc.poll() is None:
            stop_group(proc, grace=0)  # never let psql commit a partial input
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        proc.wait()
        drain.join(timeout=10)
    if proc.returncode != 0:
        raise RestoreFailed(describe_failure(lines.tail, proc.returncode, commit))
    return lines


def check_target(
    target_url: str,
    secrets: tuple[str, ...],
    *,
    supabase_dump: bool,
    force: bool,
    create: bool,
    force_hint: bool = True,
) -> None:
    """The target exists (or is created with ``create``), fits the backup's profile, and is empty
    unless ``force``: UsageError otherwise, before anything is written."""
    if (missing := missing_database(target_url, secrets)) is not None:
        if not create:
            raise UsageError(
                f'the target database "{missing}" does not exist: create it, or pass --create to create it'
            )
        create_database(target_url, missing, secrets)
    if not supabase_dump and is_supabase_project(target_url, secrets):
        raise UsageError(FULL_INTO_SUPABASE)  # its CREATE SCHEMA auth would fail anyway, after a long wait
    existing = user_tables(target_url, secrets)
    if supabase_dump:
        # A fresh Supabase project already holds its managed schemas; this backup leaves them out.
        existing = [t for t in existing if not profiles.in_managed_schema(t)]
    if existing and not force:
        shown = ", ".join(existing[:5]) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
        raise UsageError(
            f"the target already holds {len(existing)} table(s)/view(s)/sequence(s) ({shown}); "
            "restore into an empty database"
            + (", or pass --force" if force_hint else " (--jobs > 1 restores only into an empty one)")
        )


def describe_failure(errors: deque[str], rc: int, single_transaction: bool) -> str:
    after = "nothing was committed" if single_transaction else "statements before it were committed"
    for line in errors:
        match = _PSQL_ERROR.match(line)
        if match:
            hint = _hint(match["msg"])
            return one_line(f"SQL error at line {match['line']} of the backup: {match['msg']} ({after}){hint}")
    detail = next((ln for ln in errors if "error" in ln.lower() or "fatal" in ln.lower()), errors[0] if errors else "")
    return one_line(f"psql exited with status {rc}" + (f": {detail}" if detail else "") + f" ({after})")


SUPABASE_ROLES = ("anon", "authenticated", "service_role", "supabase_admin", "authenticator", "dashboard_user")


def _hint(message: str) -> str:
    """What to do about the failures a Supabase backup meets on a plain PostgreSQL."""
    role = re.match(r'role "(?P<role>[^"]+)" does not exist', message)
    if role and role["role"] in SUPABASE_ROLES:
        return (
            "; the backup is of a Supabase database: create its roles on the target first"
            " (docs/cli.md: Restoring a Supabase backup)"
        )
    if "session_replication_role" in message and "permission denied" in message:
        return (
            "; the target role may not set session_replication_role (a supabase-profile backup loads its data"
            " with it): restore as Supabase's postgres role, a superuser, or a role granted"
            " SET ON PARAMETER session_replication_role"
        )
    if message.startswith("dbbackup: the restoring role cannot run"):
        return (
            "; an app object on Supabase's managed schemas the restoring role may not re-create:"
            " restore with --skip-managed-errors to go on without it (each skipped statement is printed)"
        )
    if re.match(r'schema "[^"]+" already exists', message):
        return (
            "; restoring into a Supabase project? its managed schemas already exist: restore a backup taken"
            " with BACKUP_PROFILE=supabase (docs/supabase.md)"
        )
    if "extension" in message and ("is not available" in message or "could not open extension" in message):
        return "; the target lacks an extension the source had: install it, or restore into a server that has it"
    return ""
