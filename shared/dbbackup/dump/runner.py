"""The ``Dumper`` the backup job uses: pg_dump (and, for the supabase profile, pg_dumpall and a
second pg_dump on one exported snapshot) -> rewrite -> gzip (-> age, when recipients are
configured), with the checks that must pass before a byte is written."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import psycopg.conninfo

from dbbackup.core import naming, ports, seek_index
from dbbackup.dump.age import EncryptedDump
from dbbackup.dump.profiles import (
    DumpProfile,
    Section,
    check_readable,
    dump_sections,
    managed_schema,
    roles_rules,
    supabase_rules,
)
from dbbackup.dump.rewrite import DumpRewriter, OwnRowPatch, rules_for
from dbbackup.dump.stream import DumpStream, Progress
from dbbackup.errors import ConfigError
from dbbackup.pg import binaries as pgbin
from dbbackup.pg import catalog, managed
from dbbackup.pg import connect as db
from dbbackup.pg.backup_log import PG_DUMP_APPLICATION_NAME
from dbbackup.pg.conninfo import check_dump_url, libpq_target


def pg_dump_command(
    url: str, profile: DumpProfile, pg_dump: str, snapshot: str | None = None, managed_sql: bytes = b""
) -> tuple[list[Section], dict[str, str]]:
    """What the backup stream runs (profiles.dump_sections) and its environment. The password
    travels in PGPASSWORD, never in argv (argv is visible to every process on the host)."""
    conninfo, env, _ = libpq_target(url)
    env["PGAPPNAME"] = PG_DUMP_APPLICATION_NAME
    pg_dumpall = None
    if profile.supabase:
        # The roles section: the pg_dumpall next to the chosen pg_dump, else the bundled one.
        sibling = Path(pg_dump).with_name("pg_dumpall")
        pg_dumpall = str(sibling if sibling.is_file() else pgbin.tool("pg_dumpall"))
    dbname = str(psycopg.conninfo.conninfo_to_dict(conninfo).get("dbname") or "postgres")
    return dump_sections(profile, pg_dump, conninfo, snapshot, pg_dumpall, dbname, managed_sql), env


@dataclass
class _Target:
    """What ``prepare`` learnt about the server, for the rewriter."""

    server_major: int
    dumping_role: str
    pg_dump: str


class PgDumper:
    def __init__(
        self,
        url: str,
        profile: DumpProfile,
        *,
        pg_dump_path: str | None = None,
        gzip_level: int = 1,
        seekable: bool = True,
        part_size: int = seek_index.PART_SIZE,
        secrets: tuple[str, ...] = (),
        progress: Progress | None = None,
        connect_attempts: int = 3,
        age_recipients: tuple[str, ...] = (),
    ) -> None:
        self.url, self.profile, self.pg_dump_path = url, profile, pg_dump_path
        # Public keys only: this side can encrypt, never decrypt (docs/configuration.md: BACKUP_AGE_RECIPIENTS).
        self.age_recipients = age_recipients
        self.gzip_level, self.secrets, self.progress = gzip_level, secrets, progress
        self.seekable, self.part_size = seekable, part_size
        self.connect_attempts = connect_attempts
        self._target: _Target | None = None

    @property
    def suffix(self) -> str:
        return naming.ENCRYPTED_SUFFIX if self.age_recipients else naming.SUFFIX

    def check_target(self) -> None:
        check_dump_url(self.url)  # pg_dump cannot work through a transaction pooler

    def _connect(self) -> psycopg.Connection:
        return db.connect(self.url, attempts=self.connect_attempts, secrets=self.secrets)

    def prepare(self) -> None:
        with db.sql_errors(self.secrets), self._connect() as conn:
            # The role pg_dump runs as (Supabase's postgres, even as postgres.<ref> on the pooler).
            row = conn.execute("SELECT current_setting('server_version_num')::int / 10000, current_user").fetchone()
        assert row is not None
        server_major, role = int(row[0]), str(row[1])
        dump_path = pgbin.pg_dump_path(self.pg_dump_path)
        dump_major = pgbin.program_major_version(dump_path)
        if dump_major < server_major:
            raise ConfigError(
                f"pg_dump {dump_major} cannot dump a PostgreSQL {server_major} server;"
                f" use pg_dump {server_major} or newer (PG_DUMP_PATH)"
            )
        self._target = _Target(server_major, role, str(dump_path))

    @contextlib.contextmanager
    def dump(self, log_id: str) -> Iterator[ports.Dump]:
        target = self._target
        if target is None:
            raise RuntimeError("PgDumper.dump before prepare")  # a programming error, not a backup failure
        with db.sql_errors(self.secrets), self._connect() as conn:
            # Name every unreadable table now, not the first one pg_dump trips over later.
            check_readable(catalog.unreadable_relations(conn), self.profile)
            # Which tables will be large: each starts its own gzip member (core.seek_index).
            sizes = catalog.table_sizes(conn) if self.seekable else {}
        supabase = self.profile.supabase
        rewriter = DumpRewriter(
            rules_for(target.server_major) + (supabase_rules() + roles_rules(target.dumping_role) if supabase else []),
            OwnRowPatch(b"public.backup_logs", log_id, {"status": "success", "failure_reason": "\\N"}),
            target.server_major,
        )
        with self._snapshot(supabase) as (snapshot, conn):
            managed_sql = b""
            if conn is not None:
                # The app's triggers, policies and grants on the managed tables, from the same snapshot.
                with db.sql_errors(self.secrets):
                    managed_sql = managed.section(managed.app_objects(conn, managed_schema))
            sections, env = pg_dump_command(self.url, self.profile, target.pg_dump, snapshot, managed_sql)
            stream = DumpStream(
                sections,
                env,
                rewriter,
                self.gzip_level,
                self.secrets,
                self.progress,
                self.seekable,
                sizes,
                self.part_size,
            )
            yield EncryptedDump(stream, self.age_recipients) if self.age_recipients else stream

    @contextlib.contextmanager
    def _snapshot(self, needed: bool) -> Iterator[tuple[str | None, psycopg.Connection | None]]:
        """A snapshot the profile's several pg_dump runs share, so structure and data come from
        one moment; the exporting transaction (also yielded, for catalog questions in that
        snapshot) stays open until they are done."""
        if not needed:
            yield None, None
            return
        conn = db.connect(self.url, attempts=1, secrets=self.secrets)
        try:
            with db.sql_errors(self.secrets):
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                row = conn.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()
            assert row is not None
            yield str(row[0]), conn
        finally:
            conn.close()
