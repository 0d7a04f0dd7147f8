"""Backup, restore and verify on Google Drive (the fake), end to end, against real PostgreSQL:
BackupJob streams pg_dump into a multi-chunk resumable upload; the CLI restores and verifies by
backup_logs id, reading the file back from Drive."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from dbbackup.settings import Settings
from dbbackup.wiring import backup_job
from fakes import ROBOT, TEST_CHUNK, USER, drive_env
from fakes.drive_fake import DriveFake
from support.cli import run_cli
from support.db import DbFactory

pytest_plugins = ["fakes.fixtures"]  # the fake servers' fixtures (drive_fake, drive_storage, ...)

FOLDER = "MyDrive/DatabaseBackups"


@pytest.fixture
def big_db(migrated_url: str) -> str:
    """About 1.5 MB of gzip output: at least 5 chunks of 256 KiB."""
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE readings (id int PRIMARY KEY, a text, b text)")
        conn.execute(
            "INSERT INTO readings SELECT g, md5(g::text), md5((g * 7919)::text) FROM generate_series(1, 40000) g"
        )
    return migrated_url


def row(url: str, log_id: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("SELECT * FROM backup_logs WHERE id = %s", (log_id,)).fetchone()  # type: ignore[return-value]


def backup(url: str, env: dict[str, str]) -> Any:
    return backup_job(Settings.from_env({"DATABASE_URL": url, **env})).run("manual", triggered_by="drive-test")


def test_backup_restore_and_verify_run_on_drive_end_to_end(
    big_db: str, drive_fake: DriveFake, drive_user: dict[str, Any], make_db: DbFactory
) -> None:
    env = drive_env(drive_fake, drive_user)
    outcome = backup(big_db, env)
    assert outcome.status == "success", outcome.reason
    chunks = [s for s in drive_fake.log if s.method == "PUT"]
    assert len(chunks) >= 5 and outcome.file_size_bytes > 4 * TEST_CHUNK  # 5+ chunks
    stored = drive_fake.files[outcome.file_id]
    r = row(big_db, outcome.backup_log_id)
    assert r["status"] == "success" and r["google_drive_file_id"] == stored.id
    assert r["google_drive_path"] == f"{FOLDER}/{stored.name}" and r["file_size_bytes"] == stored.size
    assert r["md5_checksum"] == stored.md5
    assert drive_fake.files[stored.parents[0]].name == "DatabaseBackups"

    target = make_db()
    restored = run_cli(["restore", outcome.backup_log_id, "--target", target], big_db, **env)
    assert restored.returncode == 0, restored.stderr
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*), max(b) FROM readings").fetchone() == (40000, _max_b(big_db))
    verified = run_cli(["verify", outcome.backup_log_id], big_db, **env)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _max_b(url: str) -> str:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT max(b) FROM readings").fetchone()[0]  # type: ignore[index]


def test_verify_catches_bytes_corrupted_on_drive(
    big_db: str, drive_fake: DriveFake, drive_user: dict[str, Any]
) -> None:
    env = drive_env(drive_fake, drive_user)
    outcome = backup(big_db, env)
    drive_fake.corrupt_file(outcome.file_id)
    verified = run_cli(["verify", outcome.backup_log_id], big_db, **env)
    assert verified.returncode == 1


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("lose_session", "upload session of MyDrive/DatabaseBackups/DB_Backup_"),
        ("fail_every_chunk", "gave up after 3 attempts"),
        ("corrupt", "the bad file was deleted"),
    ],
)
def test_a_drive_fault_fails_the_backup_cleanly(
    big_db: str, drive_fake: DriveFake, drive_user: dict[str, Any], fault: str, reason: str
) -> None:
    if fault == "lose_session":
        drive_fake.lose_session(nth=3)
    elif fault == "fail_every_chunk":
        drive_fake.fail(503, nth=2, method="PUT", path="/upload/", times=99)
    else:
        drive_fake.corrupt_next_upload()
    env = drive_env(drive_fake, drive_user)
    outcome = backup(big_db, env)
    assert outcome.status == "failed" and reason in (outcome.reason or "")
    r = row(big_db, outcome.backup_log_id)
    assert r["status"] == "failed" and reason in r["failure_reason"] and r["google_drive_file_id"] is None
    folder = drive_fake.find("DatabaseBackups")[0]
    assert drive_fake.children(folder.id) == []
    for secret in (drive_user["refresh_token"], drive_user["client_secret"]):
        assert secret not in r["failure_reason"]


def test_a_service_account_without_a_shared_drive_fails_in_plain_words(big_db: str, drive_fake: DriveFake) -> None:
    creds = drive_fake.service_account_key(ROBOT)
    outcome = backup(big_db, drive_env(drive_fake, creds))
    r = row(big_db, outcome.backup_log_id)
    assert r["status"] == "failed" and "has no storage quota of its own" in r["failure_reason"]
    assert "Shared drive" in r["failure_reason"] and "BEGIN PRIVATE KEY" not in r["failure_reason"]


def test_a_service_account_backs_up_into_a_shared_drive(big_db: str, drive_fake: DriveFake) -> None:
    creds = drive_fake.service_account_key(ROBOT)
    drive_id = drive_fake.add_shared_drive("Backups", [ROBOT, USER])
    with psycopg.connect(big_db, autocommit=True) as conn:
        conn.execute(
            "UPDATE invoice_configurations SET config_value = 'SharedDrives/Backups/prod'"
            " WHERE config_key = 'backup_folder_path'"
        )
    outcome = backup(big_db, drive_env(drive_fake, creds))
    assert outcome.status == "success", outcome.reason
    assert drive_fake.files[outcome.file_id].drive_id == drive_id
    assert row(big_db, outcome.backup_log_id)["google_drive_path"].startswith("SharedDrives/Backups/prod/DB_Backup_")
