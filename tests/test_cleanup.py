"""The `cleanup_old_backups` function and `dbbackup cleanup`: the contract around the retention
step (statuses, exit codes, JSON), with a real undeletable file where the OS allows one."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from functions_framework import create_app

from dbbackup.core import naming
from dbbackup.pg.backup_log import CLEANUP_LOCK_KEY
from dbbackup.settings import Settings
from fakes.sendgrid_fake import FakeSendGrid
from support.cli import run_cli
from support.paths import ROOT

pytest_plugins = ["fakes.fixtures"]  # sendgrid


def mail_env(fake: FakeSendGrid) -> dict[str, str]:
    return {"SENDGRID_API_KEY": fake.api_key, "SENDGRID_API_HOST": fake.url, "ALERT_FROM_EMAIL": "backups@example.com"}


SOURCE = ROOT / "functions" / "cleanup_old_backups" / "main.py"
FOLDER = "MyDrive/DatabaseBackups"
UTC_ZONE = Settings.from_env({"DATABASE_URL": "postgresql://x@localhost/x"}).timezone


def backup_file(root: Path, days_ago: float, url: str, size: int = 64) -> str:
    """A backup file (named for its age from now, in UTC) and its successful row."""
    moment = datetime.now(UTC) - timedelta(days=days_ago)
    name = naming.base_name(moment, UTC_ZONE)
    folder = root / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"z" * size)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO backup_logs (backup_type, status, file_name, file_size_bytes, google_drive_file_id,"
            " started_at, completed_at) VALUES ('automatic', 'success', %s, %s, %s, %s, %s)",
            (name, size, f"{FOLDER}/{name}", moment, moment),
        )
    return name


@pytest.fixture
def seeded(migrated_url: str, tmp_path: Path) -> tuple[str, Path, list[str], list[str]]:
    root = tmp_path / "store"
    recent = [backup_file(root, d, migrated_url) for d in (0.01, 1, 2)]
    expired = [backup_file(root, d, migrated_url, size=100) for d in (16, 17)]
    return migrated_url, root, recent, expired


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, seeded):  # type: ignore[no-untyped-def]
    url, root, _, _ = seeded
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("BACKUP_LOCAL_ROOT", str(root))
    monkeypatch.setenv("AUTH_MODE", "disabled")  # the contract here; who may call: test_auth.py
    monkeypatch.delenv("K_SERVICE", raising=False)
    return create_app("cleanup_old_backups", str(SOURCE)).test_client()


def test_the_function_deletes_expired_backups_and_answers_the_counts(client, seeded) -> None:  # type: ignore[no-untyped-def]
    _, root, recent, expired = seeded
    resp = client.post("/", json={})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["status"] == "success" and sorted(body["deleted"]) == sorted(expired)
    assert (body["examined"], body["matched"], body["ignored"], body["bytes_freed"]) == (5, 5, 0, 200)
    assert body["kept_by_safety_floor"] == [] and body["failed"] == [] and body["dry_run"] is False
    assert sorted(p.name for p in (root / FOLDER).iterdir()) == sorted(recent)


def test_the_function_dry_run_deletes_nothing(client, seeded) -> None:  # type: ignore[no-untyped-def]
    _, root, recent, expired = seeded
    body = client.post("/", json={"dry_run": True}).get_json()
    assert body["dry_run"] is True and sorted(body["deleted"]) == sorted(expired)
    assert sorted(p.name for p in (root / FOLDER).iterdir()) == sorted(recent + expired)


@pytest.mark.parametrize("data", [b"[]", b"nope", b'{"dry_run": "yes"}', b'{"force": true}'])
def test_a_malformed_cleanup_body_is_400(client, seeded, data: bytes) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/", data=data, content_type="application/json")
    assert resp.status_code == 400 and "error" in resp.get_json()
    assert len(list((seeded[1] / FOLDER).iterdir())) == 5


def test_the_function_refuses_a_second_concurrent_cleanup_with_409(client, seeded) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(seeded[0], autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (CLEANUP_LOCK_KEY,))
        resp = client.post("/", json={})
    assert resp.status_code == 409 and resp.get_json()["status"] == "busy"
    assert client.get("/").status_code == 405


def test_cli_cleanup_json_and_dry_run(seeded) -> None:  # type: ignore[no-untyped-def]
    url, root, _recent, expired = seeded
    dry = run_cli(["cleanup", "--dry-run"], url, BACKUP_LOCAL_ROOT=str(root))
    assert dry.returncode == 0, dry.stderr
    assert all(f"would delete {name}" in dry.stdout for name in expired)
    assert "cleanup success (dry run): examined 5, matched 5, would delete 2" in dry.stdout
    assert "would free " in dry.stdout and "freed" not in dry.stdout
    assert len(list((root / FOLDER).iterdir())) == 5
    real = run_cli(["cleanup", "--json"], url, BACKUP_LOCAL_ROOT=str(root))
    assert real.returncode == 0, real.stderr
    assert sorted(json.loads(real.stdout)["deleted"]) == sorted(expired)


@pytest.fixture
def immutable(seeded) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """One expired file the OS itself refuses to delete (chattr +i), where that is possible."""
    path = seeded[1] / FOLDER / seeded[3][0]
    chattr = shutil.which("chattr")
    if not chattr or subprocess.run([chattr, "+i", str(path)], capture_output=True, check=False).returncode:
        pytest.skip("chattr +i is not available here (needs root and ext4/xfs)")
    yield path
    subprocess.run([chattr, "-i", str(path)], check=False)


def test_cli_cleanup_that_cannot_delete_a_file_exits_1_naming_it_and_alerts(  # type: ignore[no-untyped-def]
    seeded, immutable: Path, sendgrid: FakeSendGrid
) -> None:
    url, root, _recent, expired = seeded
    proc = run_cli(["cleanup"], url, BACKUP_LOCAL_ROOT=str(root), **mail_env(sendgrid))
    assert proc.returncode == 1
    assert f"FAILED {expired[0]}: cannot delete" in proc.stderr and "Operation not permitted" in proc.stderr
    assert f"deleted {expired[1]}" in proc.stdout and "failed 1" in proc.stdout
    assert immutable.exists() and not (root / FOLDER / expired[1]).exists()
    [mail] = sendgrid.sent
    assert mail.subject.startswith("[Database Backup] Cleanup Failed - ") and expired[0] in mail.text
    assert mail.to == ["pega2023test@gmail.com"]  # the migration's default backup_notification_email


def test_a_missed_run_emails_no_successful_backup_since(
    migrated_url: str, tmp_path: Path, sendgrid: FakeSendGrid
) -> None:
    root = tmp_path / "store"
    name = backup_file(root, 2, migrated_url)
    proc = run_cli(["cleanup", "--json"], migrated_url, BACKUP_LOCAL_ROOT=str(root), **mail_env(sendgrid))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["missed_run"] is True
    [mail] = sendgrid.sent
    since = naming.parse(name, UTC_ZONE)
    assert since is not None
    assert mail.subject.startswith(f"[Database Backup] No Successful Backup Since {since:%Y-%m-%d %H:%M}")
    assert "- Allowed Age: 26 hours (BACKUP_MAX_AGE_HOURS)" in mail.text
