"""The backup job: one honest row per attempt, the lock, stale rows, skips, version checks."""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from dbbackup.errors import ConfigError, LockBusy
from dbbackup.http.endpoints import run_backup
from dbbackup.pg import binaries as pgbin
from dbbackup.pg.backup_log import BACKUP_LOCK_KEY, INTERRUPTED
from dbbackup.settings import Settings
from dbbackup.wiring import backup_job
from support.cli import run_cli
from support.db import OwnerDb, with_params

FOLDER = "MyDrive/DatabaseBackups"


def settings_for(url: str, root: Path, **env: str) -> Settings:
    return Settings.from_env({"DATABASE_URL": url, "BACKUP_LOCAL_ROOT": str(root), **env})


def row(url: str, log_id: str) -> dict:
    with psycopg.connect(url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("SELECT * FROM backup_logs WHERE id = %s", (log_id,)).fetchone()


def rows(url: str) -> list[dict]:
    with psycopg.connect(url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("SELECT * FROM backup_logs ORDER BY started_at").fetchall()


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def populated(migrated_url: str) -> str:
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (id int PRIMARY KEY, name text, note text)")
        conn.execute(
            "INSERT INTO customers SELECT g, 'customer ' || g, repeat('x', g % 50) FROM generate_series(1, 5000) g"
        )
    return migrated_url


def test_a_successful_backup_has_one_complete_row_and_one_file(populated: str, tmp_path: Path) -> None:
    outcome = backup_job(settings_for(populated, tmp_path)).run("manual", triggered_by="cli-test")
    assert outcome.status == "success", outcome.reason
    r = row(populated, outcome.backup_log_id)
    path = tmp_path / r["google_drive_file_id"]
    data = path.read_bytes()
    assert r["status"] == "success" and r["backup_type"] == "manual"
    assert r["file_name"] == path.name == outcome.file_name
    assert r["file_size_bytes"] == len(data) == outcome.file_size_bytes
    assert r["md5_checksum"] == hashlib.md5(data).hexdigest()
    assert r["google_drive_path"] == f"{FOLDER}/{path.name}"
    assert r["completed_at"] >= r["started_at"] and r["failure_reason"] is None
    assert r["triggered_by"] == "cli-test"
    sql = gzip.decompress(data)
    assert r["sql_bytes"] == len(sql)
    assert b"COPY public.customers (id, name, note) FROM stdin;" in sql
    assert files(tmp_path) == [f"{FOLDER}/{path.name}"]


def test_the_restored_database_shows_the_backups_own_row_as_success(populated: str, tmp_path: Path, make_db) -> None:
    outcome = backup_job(settings_for(populated, tmp_path)).run("scheduled")
    target = make_db()
    restore(tmp_path / outcome.file_id, target)
    restored = row(target, outcome.backup_log_id)
    assert restored["status"] == "success" and restored["backup_type"] == "automatic"
    # The next backup of the restored database must not relabel it as interrupted.
    again = backup_job(settings_for(target, tmp_path / "second")).run("scheduled")
    assert again.status == "success", again.reason
    assert row(target, outcome.backup_log_id)["status"] == "success"


def restore(file: Path, url: str) -> None:
    """The user's promise: zcat FILE | psql -v ON_ERROR_STOP=1 into an empty database."""
    proc = subprocess.run(
        [str(pgbin.tool("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url],
        input=gzip.decompress(file.read_bytes()),
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()


def test_same_minute_backups_never_overwrite(populated: str, tmp_path: Path) -> None:
    moment = datetime(2026, 11, 25, 1, 0, 30, tzinfo=UTC)
    job = backup_job(settings_for(populated, tmp_path), clock=lambda: moment)
    names = [job.run("scheduled").file_name for _ in range(3)]
    assert names == [
        "DB_Backup_2026-11-25_01-00.sql.gz",
        "DB_Backup_2026-11-25_01-00_2.sql.gz",
        "DB_Backup_2026-11-25_01-00_3.sql.gz",
    ]
    assert len(files(tmp_path)) == 3


def test_the_file_name_uses_backup_timezone(populated: str, tmp_path: Path) -> None:
    moment = datetime(2026, 7, 1, 23, 30, tzinfo=UTC)
    job = backup_job(settings_for(populated, tmp_path, BACKUP_TIMEZONE="Asia/Tokyo"), clock=lambda: moment)
    assert job.run("scheduled").file_name == "DB_Backup_2026-07-02_08-30.sql.gz"


def test_a_second_concurrent_backup_is_refused_without_a_dump(populated: str, tmp_path: Path) -> None:
    with psycopg.connect(populated, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (BACKUP_LOCK_KEY,))
        with pytest.raises(LockBusy):
            backup_job(settings_for(populated, tmp_path)).run("manual")
        body, status = run_backup(settings_for(populated, tmp_path), "manual")
        assert status == 409 and "running" in body["error"]
    assert rows(populated) == [] and files(tmp_path) == []


def test_rows_left_in_progress_by_a_dead_run_are_marked_interrupted(populated: str, tmp_path: Path) -> None:
    with psycopg.connect(populated, autocommit=True) as conn:
        stale = conn.execute(
            "INSERT INTO backup_logs (backup_type, status, file_name) VALUES"
            " ('automatic', 'in_progress', 'DB_Backup_2026-01-01_01-00.sql.gz') RETURNING id"
        ).fetchone()[0]
    outcome = backup_job(settings_for(populated, tmp_path)).run("scheduled")
    assert outcome.status == "success"
    r = row(populated, str(stale))
    assert (r["status"], r["failure_reason"]) == ("failed", INTERRUPTED)
    assert r["completed_at"] is not None


def set_enabled(url: str, value: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE invoice_configurations SET config_value = %s WHERE config_key = 'backup_enabled'",
            (value,),
        )


def test_disabled_backups_skip_scheduled_runs_but_not_manual_ones(populated: str, tmp_path: Path) -> None:
    set_enabled(populated, "false")
    body, status = run_backup(settings_for(populated, tmp_path), "scheduled")
    assert (status, body["status"]) == (200, "skipped")
    assert rows(populated) == [] and files(tmp_path) == []
    body, status = run_backup(settings_for(populated, tmp_path), "manual")
    assert (status, body["status"]) == (200, "success")


def fake_pg_dump(tmp_path: Path, version: str) -> Path:
    script = tmp_path / "old_pg_dump"
    script.write_text(f"#!/bin/sh\necho 'pg_dump (PostgreSQL) {version}'\n")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize(
    ("kind", "message"),
    [("missing", "does not exist"), ("not-executable", "not an executable"), ("too-old", "cannot dump")],
)
def test_an_unusable_pg_dump_is_a_configuration_error_before_any_row(
    populated: str, tmp_path: Path, kind: str, message: str
) -> None:
    path = tmp_path / "bin" / "pg_dump"
    path.parent.mkdir()
    if kind == "not-executable":
        path.write_text("")
        path.chmod(stat.S_IRUSR)
    elif kind == "too-old":
        path = fake_pg_dump(path.parent, "9.6.24")
    root = tmp_path / "store"
    with pytest.raises(ConfigError, match=message):
        backup_job(settings_for(populated, root, PG_DUMP_PATH=str(path))).run("manual")
    with psycopg.connect(populated) as conn:
        assert conn.execute("SELECT count(*) FROM backup_logs").fetchone()[0] == 0
    assert files(root) == []
    proc = run_cli(["backup"], populated, BACKUP_LOCAL_ROOT=str(root), PG_DUMP_PATH=str(path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def test_a_pg_dump_path_that_is_not_pg_dump_is_one_line_never_its_output(populated: str, tmp_path: Path) -> None:
    script = tmp_path / "pg_dump"
    script.write_text("#!/bin/sh\necho 'usage: not-pg-dump [options]'\necho '  --version   print nothing useful'\n")
    script.chmod(0o755)
    proc = run_cli(["backup"], populated, BACKUP_LOCAL_ROOT=str(tmp_path / "store"), PG_DUMP_PATH=str(script))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "not a working PostgreSQL program" in proc.stderr and "usage" not in proc.stderr
    with psycopg.connect(populated) as conn:
        assert conn.execute("SELECT count(*) FROM backup_logs").fetchone()[0] == 0


def test_the_cli_backup_and_logs(populated: str, tmp_path: Path) -> None:
    proc = run_cli(["backup"], populated, BACKUP_LOCAL_ROOT=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "succeeded" in proc.stdout
    logs = run_cli(["logs", "--status", "success"], populated)
    assert logs.returncode == 0 and "success" in logs.stdout and "automatic" in logs.stdout


def test_a_non_superuser_with_a_password_backs_up_over_the_wire(owner_db: OwnerDb, tmp_path: Path) -> None:
    run_cli(["migrate"], owner_db.url, check=True)
    proc = run_cli(["backup", "--manual"], owner_db.url, BACKUP_LOCAL_ROOT=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert owner_db.password not in proc.stdout + proc.stderr
    assert os.listdir(tmp_path / FOLDER)
    _ = with_params


def test_an_unreachable_database_is_retried_three_times_with_backoff() -> None:
    from dbbackup.errors import DatabaseUnavailable
    from dbbackup.pg import connect as db
    from dbbackup.pg.embedded import free_port

    slept: list[float] = []
    with pytest.raises(DatabaseUnavailable, match="cannot connect to the database"):
        db.connect(f"postgresql://postgres:s3cret-pw@127.0.0.1:{free_port()}/x", sleep=slept.append)
    assert slept == [1.0, 2.0]


def test_a_storage_folder_that_cannot_be_created_fails_the_backup(populated: str, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the backup root should be")
    outcome = backup_job(settings_for(populated, blocker)).run("scheduled")
    assert outcome.status == "failed" and "cannot create folder" in outcome.reason
    assert row(populated, outcome.backup_log_id)["status"] == "failed"


def test_an_invalid_folder_path_setting_fails_the_backup_before_any_dump(populated: str, tmp_path: Path) -> None:
    with psycopg.connect(populated, autocommit=True) as conn:
        conn.execute(
            "UPDATE invoice_configurations SET config_value = 'MyDrive/../etc' WHERE config_key = 'backup_folder_path'"
        )
    outcome = backup_job(settings_for(populated, tmp_path)).run("scheduled")
    assert outcome.status == "failed" and "may not contain '.' or '..'" in outcome.reason
    assert files(tmp_path) == []


def test_a_database_error_before_the_row_exists_is_one_readable_line(db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:  # settings present, backup_logs missing
        conn.execute("CREATE TABLE invoice_configurations (config_key text UNIQUE, config_value text)")
        conn.execute("INSERT INTO invoice_configurations VALUES ('backup_folder_path', 'MyDrive/B')")
    proc = run_cli(["backup"], db_url, BACKUP_LOCAL_ROOT=str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "unexpected error" not in proc.stderr
    assert "database error before the backup started" in proc.stderr and "backup_logs" in proc.stderr


def test_a_pg_dump_still_running_without_its_lock_blocks_a_second_backup(populated: str, tmp_path: Path) -> None:
    """A run whose lock connection dropped may still be dumping: its row stays in_progress and no
    second dump starts beside it (the pg_dump's own session is the evidence)."""
    with psycopg.connect(populated, autocommit=True) as conn:
        stale = conn.execute(
            "INSERT INTO backup_logs (backup_type, status, file_name) VALUES"
            " ('automatic', 'in_progress', 'DB_Backup_2026-01-01_01-00.sql.gz') RETURNING id"
        ).fetchone()[0]
    with psycopg.connect(populated, application_name="dbbackup-pg_dump"), pytest.raises(LockBusy):
        backup_job(settings_for(populated, tmp_path)).run("scheduled")
    assert row(populated, str(stale))["status"] == "in_progress"
    assert files(tmp_path) == []
    # Once that session is gone, the next run proceeds and the orphan is labelled.
    assert backup_job(settings_for(populated, tmp_path)).run("scheduled").status == "success"
    assert row(populated, str(stale))["status"] == "failed"


def test_a_database_migrated_before_008_still_backs_up_and_restores_latest(populated: str, tmp_path: Path) -> None:
    with psycopg.connect(populated, autocommit=True) as conn:
        conn.execute("ALTER TABLE backup_logs DROP COLUMN storage_backend")
    outcome = backup_job(settings_for(populated, tmp_path)).run("manual")
    assert outcome.status == "success", outcome.reason
    proc = run_cli(["verify", "latest"], populated, BACKUP_LOCAL_ROOT=str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
