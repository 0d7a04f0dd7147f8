"""Every way a backup can fail ends as a `failed` row with a readable, secret-free reason,
and leaves no file (partial or complete) behind."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from dbbackup.core.backup import BackupJob
from dbbackup.http.endpoints import run_backup
from dbbackup.pg import binaries as pgbin
from dbbackup.pg.embedded import EmbeddedPostgres
from dbbackup.settings import Settings
from dbbackup.wiring import backup_job
from support.cli import cli_env, run_cli
from support.db import OwnerDb, with_params

ROWS = 400_000  # ~40 MB of SQL: enough that the dump is still streaming when we strike


@pytest.fixture(scope="module")
def big_db(pg_admin_url: str) -> Iterator[str]:
    name = f"t_big_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_params(pg_admin_url, dbname=name)
    run_cli(["migrate"], url, check=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE noise AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS a"
            f" FROM generate_series(1, {ROWS}) g"
        )
    yield url
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def failed_row(url: str, log_id: str) -> dict:
    with psycopg.connect(url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        r = cur.execute("SELECT * FROM backup_logs WHERE id = %s", (log_id,)).fetchone()
    assert r["status"] == "failed" and r["completed_at"] is not None
    assert r["failure_reason"] and "\n" not in r["failure_reason"] and "Traceback" not in r["failure_reason"]
    return r


def wrapper(tmp_path: Path, body: str) -> Path:
    """A PG_DUMP_PATH script around the real pg_dump; --version is passed straight through."""
    real = pgbin.tool("pg_dump")
    script = tmp_path / "pg_dump_wrapper"
    script.write_text(f'#!/bin/sh\nREAL="{real}"\nif [ "$1" = "--version" ]; then exec "$REAL" --version; fi\n{body}\n')
    script.chmod(0o755)
    return script


def job(url: str, root: Path, progress: Callable[[int, int], None] | None = None, **env: str) -> BackupJob:
    settings = Settings.from_env({"DATABASE_URL": url, "BACKUP_LOCAL_ROOT": str(root), **env})
    return backup_job(settings, progress=progress)


def once(action: Callable[[], None]) -> Callable[[int, int], None]:
    fired = []

    def progress(sql_bytes: int, gz_bytes: int) -> None:
        if not fired:
            fired.append(sql_bytes)
            action()

    return progress


def test_pg_dump_killed_mid_stream(big_db: str, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script = wrapper(tmp_path, f'echo $$ > "{pidfile}"\nexec "$REAL" "$@"')
    root = tmp_path / "store"
    outcome = job(
        big_db,
        root,
        once(lambda: os.kill(int(pidfile.read_text()), signal.SIGKILL)),
        PG_DUMP_PATH=str(script),
    ).run("scheduled")
    assert outcome.status == "failed"
    assert "pg_dump was killed by signal 9" in failed_row(big_db, outcome.backup_log_id)["failure_reason"]
    assert leftovers(root) == []


def terminate(url: str, application_name: str) -> Callable[[], None]:
    def action() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = %s AND datname = current_database()",
                (application_name,),
            ).fetchone()[0]
        assert killed == 1

    return action


def test_server_connection_of_pg_dump_cut_mid_stream(big_db: str, tmp_path: Path) -> None:
    root = tmp_path / "store"
    outcome = job(big_db, root, once(terminate(big_db, "dbbackup-pg_dump"))).run("scheduled")
    assert outcome.status == "failed"
    reason = failed_row(big_db, outcome.backup_log_id)["failure_reason"]
    assert reason.startswith("pg_dump exited with status 1")
    assert leftovers(root) == []


def test_log_connection_lost_mid_stream(big_db: str, tmp_path: Path) -> None:
    root = tmp_path / "store"
    outcome = job(big_db, root, once(terminate(big_db, "dbbackup"))).run("manual")
    assert outcome.status == "failed"
    assert failed_row(big_db, outcome.backup_log_id)["failure_reason"].startswith("database error:")
    assert leftovers(root) == []


def test_truncated_pg_dump_output(big_db: str, tmp_path: Path) -> None:
    script = wrapper(tmp_path, '"$REAL" "$@" | head -c 300000')
    root = tmp_path / "store"
    outcome = job(big_db, root, PG_DUMP_PATH=str(script)).run("scheduled")
    assert outcome.status == "failed" and "truncated" in outcome.reason
    assert "truncated" in failed_row(big_db, outcome.backup_log_id)["failure_reason"]
    assert leftovers(root) == []


def test_pg_dump_exiting_nonzero_after_complete_output(big_db: str, tmp_path: Path) -> None:
    script = wrapper(tmp_path, '"$REAL" "$@"\necho "pg_dump: error: simulated late failure" >&2\nexit 1')
    root = tmp_path / "store"
    outcome = job(big_db, root, PG_DUMP_PATH=str(script)).run("scheduled")
    assert outcome.status == "failed"
    assert failed_row(big_db, outcome.backup_log_id)["failure_reason"] == (
        "pg_dump exited with status 1: simulated late failure"
    )
    assert leftovers(root) == []


def test_a_table_the_role_cannot_read_is_named(owner_db: OwnerDb, tmp_path: Path) -> None:
    run_cli(["migrate"], owner_db.url, check=True)
    with psycopg.connect(owner_db.admin_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.payroll_secret (x int)")  # owned by the superuser
    proc = run_cli(["backup", "--json"], owner_db.url, BACKUP_LOCAL_ROOT=str(tmp_path))
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    reason = failed_row(owner_db.url, result["backup_log_id"])["failure_reason"]
    assert "permission denied for table payroll_secret" in reason
    assert owner_db.password not in proc.stdout + proc.stderr + reason
    assert leftovers(tmp_path) == []


def test_a_storage_write_error(big_db: str, tmp_path: Path) -> None:
    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    proc = subprocess.run(
        [sys.executable, "-m", "dbbackup.cli", "backup", "--json"],
        env=cli_env(big_db, BACKUP_LOCAL_ROOT=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit_file_size,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert "File too large" in failed_row(big_db, result["backup_log_id"])["failure_reason"]
    assert leftovers(tmp_path) == []


def test_sigterm_during_the_dump_is_recorded_as_interrupted(big_db: str, tmp_path: Path) -> None:
    script = wrapper(tmp_path, 'sleep 60\nexec "$REAL" "$@"')
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbbackup.cli", "backup"],
        env=cli_env(big_db, BACKUP_LOCAL_ROOT=str(tmp_path / "store"), PG_DUMP_PATH=str(script)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with psycopg.connect(big_db, autocommit=True) as conn:
        for _ in range(200):
            running = conn.execute("SELECT id FROM backup_logs WHERE status = 'in_progress'").fetchone()
            if running:
                break
            time.sleep(0.05)
        assert running, "the backup never started"
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        r = failed_row(big_db, str(running[0]))
    assert r["failure_reason"].startswith("interrupted")
    assert leftovers(tmp_path / "store") == []


def test_a_database_that_does_not_exist(pg_admin_url: str, tmp_path: Path) -> None:
    url = with_params(pg_admin_url, dbname="no_such_database_xyz")
    proc = run_cli(["backup"], url, BACKUP_LOCAL_ROOT=str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert 'database "no_such_database_xyz" does not exist' in proc.stderr
    assert leftovers(tmp_path) == []


def test_a_wrong_password_is_reported_without_the_password(password_server: EmbeddedPostgres, tmp_path: Path) -> None:
    role, good, bad = f"u_{uuid.uuid4().hex[:8]}", "correct-horse-1", "hunter2-wrong-secret"
    with psycopg.connect(password_server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{good}'")
    url = f"postgresql://{role}:{bad}@127.0.0.1:{password_server.port}/postgres"
    proc = run_cli(["backup"], url, BACKUP_LOCAL_ROOT=str(tmp_path))
    assert proc.returncode == 1
    assert "password authentication failed" in proc.stderr and bad not in proc.stderr
    body, status = run_backup(Settings.from_env({"DATABASE_URL": url}), "scheduled")
    assert status == 500 and "password authentication failed" in body["error"]
    assert bad not in json.dumps(body)
    assert leftovers(tmp_path) == []
