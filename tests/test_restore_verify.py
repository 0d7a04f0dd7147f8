"""`dbbackup restore` and `dbbackup verify`: every backup proven restorable, every bad file caught."""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path

import psycopg
import pytest

from support.cli import run_cli
from support.db import DbFactory, with_params
from support.paths import FIXTURES
from support.supabase_roles import ensure_api_roles


@pytest.fixture
def backed_up(migrated_url: str, tmp_path: Path) -> tuple[str, Path, Path]:
    """(database URL, storage root, backup file) after one successful CLI backup."""
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id int PRIMARY KEY, amount numeric, note text)")
        conn.execute("INSERT INTO invoices SELECT g, g * 1.5, 'note ' || g FROM generate_series(1, 20000) g")
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, invoice_id int REFERENCES invoices)")
        conn.execute("INSERT INTO items SELECT g, 1 + g % 20000 FROM generate_series(1, 20000) g")
    root = tmp_path / "store"
    proc = run_cli(["backup", "--json"], migrated_url, BACKUP_LOCAL_ROOT=str(root))
    assert proc.returncode == 0, proc.stderr
    return migrated_url, root, root / json.loads(proc.stdout)["file_id"]


def table_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()[0]


def cli(args: list[str], setup: tuple[str, Path, Path]) -> object:
    url, root, _ = setup
    return run_cli(args, url, BACKUP_LOCAL_ROOT=str(root))


def one_line(stderr: str) -> str:
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    return stderr


@pytest.mark.parametrize("source", ["latest", "id", "path"])
def test_restore_by_latest_id_or_path(backed_up, make_db: DbFactory, source: str) -> None:  # type: ignore[no-untyped-def]
    url, _, file = backed_up
    with psycopg.connect(url) as conn:
        log_id = str(conn.execute("SELECT id FROM backup_logs").fetchone()[0])
    arg = {"latest": "latest", "id": log_id, "path": str(file)}[source]
    target = make_db()
    proc = cli(["restore", arg, "--target", target], backed_up)
    assert proc.returncode == 0, proc.stderr
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*), sum(amount) FROM invoices").fetchone() == (20000, 300015000)


def test_latest_is_the_newest_backup_the_configured_storage_holds(backed_up, make_db: DbFactory) -> None:  # type: ignore[no-untyped-def]
    url, _, file = backed_up
    with psycopg.connect(url, autocommit=True) as conn:
        local_id, backend = conn.execute("SELECT id, storage_backend FROM backup_logs").fetchone()
        assert backend == "local"  # the row says which backend holds its file
        # Newer successes the local storage does not hold: one on Drive (another machine's
        # BACKUP_STORAGE), one from before the column existed whose file is elsewhere.
        for backend, file_id in (("google_drive", "1AbCdriveFileId"), (None, "MyDrive/x/DB_Backup_gone.sql.gz")):
            conn.execute(
                "INSERT INTO backup_logs (backup_type, status, file_name, google_drive_file_id, storage_backend,"
                " started_at, completed_at) VALUES ('manual', 'success', 'DB_Backup_other.sql.gz', %s, %s,"
                " now() + interval '1 hour', now() + interval '1 hour')",
                (file_id, backend),
            )
    proc = cli(["verify", "latest"], backed_up)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{file.name} ({local_id})" in proc.stdout
    target = make_db()
    assert cli(["restore", "latest", "--target", target], backed_up).returncode == 0
    drive = run_cli(["verify", "latest"], url, BACKUP_STORAGE="local", BACKUP_LOCAL_ROOT=str(file.parent / "empty"))
    assert drive.returncode == 2 and "configured storage" in one_line(drive.stderr)


def test_restore_refuses_a_target_with_tables(backed_up, make_db: DbFactory) -> None:  # type: ignore[no-untyped-def]
    target = make_db(sql="CREATE TABLE precious (x int); INSERT INTO precious VALUES (1)")
    proc = cli(["restore", "latest", "--target", target], backed_up)
    assert proc.returncode == 2
    assert "public.precious" in one_line(proc.stderr) and "--force" in proc.stderr
    forced = cli(["restore", "latest", "--target", target, "--force"], backed_up)
    assert forced.returncode == 0, forced.stderr
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM precious").fetchone()[0] == 1  # never dropped


def test_a_missing_target_database_offers_create_and_create_makes_it(backed_up, pg_admin_url: str) -> None:  # type: ignore[no-untyped-def]
    name = f"t_{uuid.uuid4().hex[:12]}"
    target = with_params(pg_admin_url, dbname=name)
    proc = cli(["restore", "latest", "--target", target], backed_up)
    assert proc.returncode == 2
    assert f'"{name}" does not exist' in one_line(proc.stderr) and "--create" in proc.stderr
    try:
        created = cli(["restore", "latest", "--target", target, "--create"], backed_up)
        assert created.returncode == 0, created.stderr
        with psycopg.connect(target) as conn:
            assert conn.execute("SELECT count(*) FROM invoices").fetchone()[0] == 20000
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rewrite(file: Path, change) -> Path:  # type: ignore[no-untyped-def]
    sql = gzip.decompress(file.read_bytes())
    out = file.with_name("edited.sql.gz")
    out.write_bytes(gzip.compress(change(sql)))
    return out


def test_an_sql_error_mid_restore_names_the_line_and_commits_nothing(backed_up, make_db: DbFactory) -> None:  # type: ignore[no-untyped-def]
    _, _, file = backed_up

    def inject(sql: bytes) -> bytes:
        head, sep, tail = sql.partition(b"COPY public.items")
        return head + b"SELECT 1/0;\n" + sep + tail

    bad = rewrite(file, inject)
    line = gzip.decompress(bad.read_bytes()).split(b"\n").index(b"SELECT 1/0;") + 1
    target = make_db()
    proc = cli(["restore", str(bad), "--target", target], backed_up)
    assert proc.returncode == 1
    assert f"SQL error at line {line} of the backup: division by zero" in one_line(proc.stderr)
    assert "nothing was committed" in proc.stderr
    assert table_count(target) == 0
    partial = cli(["restore", str(bad), "--target", target, "--no-single-transaction"], backed_up)
    assert partial.returncode == 1 and "statements before it were committed" in partial.stderr
    assert table_count(target) > 0


def test_a_truncated_file_is_caught_by_verify_and_restores_nothing(backed_up, make_db: DbFactory) -> None:  # type: ignore[no-untyped-def]
    _, _, file = backed_up
    cut = file.with_name("cut.sql.gz")
    cut.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    proc = cli(["verify", str(cut)], backed_up)
    assert proc.returncode == 1 and "truncated" in proc.stdout
    target = make_db()
    restored = cli(["restore", str(cut), "--target", target], backed_up)
    assert restored.returncode == 1 and "truncated" in one_line(restored.stderr)
    assert table_count(target) == 0


def test_a_dump_without_its_completion_marker_is_not_a_backup(backed_up, make_db: DbFactory) -> None:  # type: ignore[no-untyped-def]
    _, _, file = backed_up
    short = rewrite(file, lambda sql: sql[: sql.index(b"-- PostgreSQL database dump complete")])
    proc = cli(["verify", str(short)], backed_up)
    assert proc.returncode == 1 and "completion marker" in proc.stdout
    target = make_db()
    restored = cli(["restore", str(short), "--target", target], backed_up)
    assert restored.returncode == 1 and "completion marker" in restored.stderr
    assert table_count(target) == 0


def test_a_corrupted_byte_is_caught(backed_up, make_db: DbFactory) -> None:  # type: ignore[no-untyped-def]
    _, _, file = backed_up
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0x5A
    bad = file.with_name("flipped.sql.gz")
    bad.write_bytes(bytes(data))
    proc = cli(["verify", str(bad)], backed_up)
    assert proc.returncode == 1 and "FAIL gzip" in proc.stdout
    target = make_db()
    restored = cli(["restore", str(bad), "--target", target], backed_up)
    assert restored.returncode == 1
    assert table_count(target) == 0


def test_an_md5_mismatch_with_the_log_is_caught(backed_up) -> None:  # type: ignore[no-untyped-def]
    _, _, file = backed_up
    sql = gzip.decompress(file.read_bytes())
    file.write_bytes(gzip.compress(sql, compresslevel=9))  # same SQL, different bytes
    proc = cli(["verify", str(file), "--json"], backed_up)
    assert proc.returncode == 1
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert not checks["md5"]["ok"] and checks["gzip"]["ok"] and checks["complete"]["ok"]


def test_verify_with_a_restore_test_reports_tables_and_rows(backed_up) -> None:  # type: ignore[no-untyped-def]
    proc = cli(["verify", "latest", "--restore-test", "--json"], backed_up)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    # invoices, items + our seven tables (005: rate limits, 011: backup_copies, 012: restore_logs,
    # 015: storage_manifest)
    assert report["ok"] and report["table_count"] == 9
    assert report["rows"] >= 40000


def test_unknown_sources_are_usage_errors(backed_up) -> None:  # type: ignore[no-untyped-def]
    for source in ("/no/such/file.sql.gz", "00000000-0000-0000-0000-000000000000"):
        proc = cli(["verify", source], backed_up)
        assert proc.returncode == 2
        one_line(proc.stderr)


def test_a_supabase_backup_into_plain_postgresql_fails_clearly_then_works_with_the_roles(
    make_db: DbFactory,
    pg_admin_url: str,
    password_server,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    source = make_db()
    ensure_api_roles(pg_admin_url)
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute((FIXTURES / "supabase_auth.sql").read_text())
        conn.execute((FIXTURES / "supabase_app.sql").read_text())
    run_cli(["migrate"], source, check=True)  # creates a policy TO authenticated
    root = tmp_path / "store"
    file = (
        root
        / json.loads(run_cli(["backup", "--json"], source, check=True, BACKUP_LOCAL_ROOT=str(root)).stdout)["file_id"]
    )
    # A separate plain server: none of Supabase's roles exist there.
    with psycopg.connect(password_server.url(), autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS plain")
        conn.execute("CREATE DATABASE plain")
        assert not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'authenticated'").fetchone()
    target = password_server.url("plain")
    proc = run_cli(["restore", str(file), "--target", target], None)
    assert proc.returncode == 1
    assert 'role "authenticated" does not exist' in one_line(proc.stderr)
    assert "create its roles on the target first" in proc.stderr
    assert table_count(target) == 0
    with psycopg.connect(password_server.url(), autocommit=True) as conn:
        conn.execute(
            "CREATE ROLE anon NOLOGIN; CREATE ROLE authenticated NOLOGIN; CREATE ROLE service_role NOLOGIN BYPASSRLS"
        )
    proc = run_cli(["restore", str(file), "--target", target], None)
    assert proc.returncode == 0, proc.stderr
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM public.user_profiles").fetchone()[0] == 3


_KILLED_MID_STREAM = r"""
import gzip, os, signal, sys, time
from dbbackup.restore.restorer import restore
from dbbackup.restore.sources import Source
pad = b"-- " + os.urandom(60_000).hex().encode() + b"\n"  # past the reader's first 64 KiB
first = gzip.compress(b"CREATE TABLE cut (id int);\nINSERT INTO cut SELECT generate_series(1, 100);\n" + pad)
rest = gzip.compress(b"INSERT INTO cut VALUES (0);\n" * 1000)
def chunks():
    yield first  # whole statements psql runs at once
    time.sleep(1.0)
    print("fed", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # the feeding process dies: psql sees its input end
    yield rest
restore(Source("cut.sql.gz", chunks, None), sys.argv[1], force=True)
"""


def test_a_restore_whose_feeding_process_dies_mid_stream_commits_nothing(make_db: DbFactory) -> None:
    import subprocess
    import sys
    import time

    target = make_db()
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_MID_STREAM, target], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -9 and "fed" in proc.stdout, proc.stderr
    deadline = time.monotonic() + 15  # psql (its own session) ends on its own once its input is gone
    with psycopg.connect(target, autocommit=True) as conn:
        while conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "psql did not end"
            time.sleep(0.1)
    assert table_count(target) == 0
