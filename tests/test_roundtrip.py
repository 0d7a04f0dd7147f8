"""The promise: a backup of a PostgreSQL N server restores with nothing but
`zcat FILE | psql -v ON_ERROR_STOP=1` into an empty database on a PostgreSQL N server, and the
result is the same database: schema dump and every table's rows, sequences, large objects."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dbbackup.pg import binaries as pgbin
from dbbackup.pg.embedded import EmbeddedPostgres
from dbbackup.pg.migrate import migrate
from dbbackup.restore.restorer import restore
from dbbackup.restore.verify import verify
from dbbackup.settings import Settings
from dbbackup.wiring import backup_job, resolve_source
from support.db import DbFactory
from support.paths import FIXTURES
from support.pgcompare import assert_databases_equal

# Our own tables: their rows change after the dump's snapshot (the attempt's row, its copies).
OURS = frozenset(
    {"public.backup_logs", "public.backup_copies", "public.dbbackup_migrations", "public.invoice_configurations"}
)


def load_variety(url: str) -> None:
    """variety.sql is a psql script (it holds COPY data), so psql loads it."""
    proc = subprocess.run(
        [str(pgbin.tool("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(FIXTURES / "variety.sql"), "-d", url],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)


def backup(url: str, root: Path) -> tuple[Path, str]:
    outcome = backup_job(Settings.from_env({"DATABASE_URL": url, "BACKUP_LOCAL_ROOT": str(root)})).run("manual")
    assert outcome.status == "success", outcome.reason
    return root / str(outcome.file_id), str(outcome.backup_log_id)


def zcat_into_psql(file: Path, url: str, psql: Path) -> None:
    proc = subprocess.run(
        [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url],
        input=gzip.decompress(file.read_bytes()),
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()


def check_roundtrip(source: str, target: str, root: Path, psql: Path) -> None:
    file, log_id = backup(source, root)
    zcat_into_psql(file, target, psql)
    assert_databases_equal(source, target, pgbin.tool("pg_dump"), ignore_data=OURS)
    with psycopg.connect(target) as conn:
        status = conn.execute("SELECT status FROM backup_logs WHERE id = %s", (log_id,)).fetchone()[0]
    assert status == "success"


def psql_for(url: str) -> Path:
    """The server's own major of psql when one is on PATH (as a user restoring would have),
    else the bundled psql."""
    with psycopg.connect(url) as conn:
        server_major = conn.info.server_version // 10000
    system = shutil.which("psql")
    if system and pgbin.program_major_version(Path(system)) == server_major:
        return Path(system)
    return pgbin.tool("psql")


def test_a_varied_database_round_trips_exactly(make_db: DbFactory, tmp_path: Path) -> None:
    source, target = make_db(), make_db()
    load_variety(source)
    check_roundtrip(source, target, tmp_path, psql_for(source))


def test_the_varied_database_restores_and_verifies_with_our_own_commands(make_db: DbFactory, tmp_path: Path) -> None:
    source, target = make_db(), make_db()
    load_variety(source)
    _, log_id = backup(source, tmp_path)
    settings = Settings.from_env({"DATABASE_URL": source, "BACKUP_LOCAL_ROOT": str(tmp_path)})
    report = verify(resolve_source(log_id, lambda: settings), restore_test=True)
    assert report.ok, [c for c in report.checks if not c.ok]
    assert report.table_count and report.table_count > 20 and report.rows
    restore(resolve_source(log_id, lambda: settings), target)
    assert_databases_equal(source, target, pgbin.tool("pg_dump"), ignore_data=OURS)


def matrix_versions() -> list[str]:
    root = os.environ.get("DBBACKUP_PG_MATRIX")
    if not root or not Path(root).is_dir():
        return []
    return sorted(p.name for p in Path(root).iterdir() if (p / "bin" / "postgres").exists())


@pytest.fixture(
    scope="module",
    params=matrix_versions()
    or [
        pytest.param(
            None,
            marks=pytest.mark.skip(
                reason="older PostgreSQL binaries not fetched: run `make pg-matrix` (make test does)"
            ),
        )
    ],
)
def old_server(request: pytest.FixtureRequest) -> Iterator[EmbeddedPostgres]:
    bin_dir = Path(os.environ["DBBACKUP_PG_MATRIX"]) / request.param / "bin"
    with EmbeddedPostgres(bin_dir=bin_dir) as pg:
        yield pg


@pytest.mark.matrix
def test_each_supported_major_round_trips_with_its_own_psql(old_server: EmbeddedPostgres, tmp_path: Path) -> None:
    """pg_dump 18 dumping 15, 16 and 17; restored by that version's own psql, ON_ERROR_STOP=1."""
    with psycopg.connect(old_server.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE source")
        conn.execute("CREATE DATABASE target")
    source, target = old_server.url("source"), old_server.url("target")
    load_variety(source)
    assert old_server.bin_dir is not None
    check_roundtrip(source, target, tmp_path, old_server.bin_dir / "psql")
