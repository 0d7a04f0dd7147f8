"""Backup health: `dbbackup status` and `GET /status` on the backup function, from backup_logs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from functions_framework import create_app

from support.cli import run_cli
from support.paths import ROOT

SOURCE = ROOT / "functions" / "database_backup" / "main.py"


def add(url: str, status: str, hours_ago: float, size: int | None = None, reason: str | None = None) -> None:
    started = datetime.now(UTC) - timedelta(hours=hours_ago)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO backup_logs (backup_type, status, file_name, file_size_bytes, failure_reason,"
            " started_at, completed_at) VALUES ('automatic', %s, 'DB_Backup_x.sql.gz', %s, %s, %s, %s)",
            (status, size, reason, started, started + timedelta(minutes=2)),
        )


@pytest.fixture
def history(migrated_url: str) -> str:
    # 40 days ago: outside both windows. Then within 30 days: 3 successes, 1 failure;
    # within 7 days: the last success (1000 -> 800 bytes) and two failures after it.
    add(migrated_url, "failed", 40 * 24, reason="old")
    add(migrated_url, "success", 20 * 24, size=900)
    add(migrated_url, "failed", 10 * 24, reason="mid")
    add(migrated_url, "success", 9 * 24, size=1000)
    add(migrated_url, "success", 30, size=800)
    add(migrated_url, "failed", 6, reason="pg_dump exited with status 1")
    add(migrated_url, "failed", 3, reason="upload failed: quota")
    add(migrated_url, "in_progress", 0.1)
    return migrated_url


def check(body: dict) -> None:
    assert body["consecutive_failures"] == 2
    assert body["last_failure_reason"] == "upload failed: quota"
    assert 29.8 < body["last_success_age_hours"] < 30.1 and body["healthy"] is False
    assert (body["success_rate_7d"], body["attempts_7d"]) == (33.3, 3)
    assert (body["success_rate_30d"], body["attempts_30d"]) == (50.0, 6)
    assert (body["last_backup_bytes"], body["previous_backup_bytes"]) == (800, 1000)
    assert (body["size_change_bytes"], body["size_change_percent"]) == (-200, -20.0)


def test_status_json_reports_health_from_the_log(history: str) -> None:
    proc = run_cli(["status", "--json"], history)
    check(json.loads(proc.stdout))


def test_status_exits_1_when_the_health_is_not_ok(history: str) -> None:
    for args in (["status"], ["status", "--json"]):
        proc = run_cli(args, history)
        assert proc.returncode == 1 and proc.stderr == "", proc.stderr


def test_status_text_is_readable(history: str) -> None:
    out = run_cli(["status"], history).stdout
    assert "health:               ATTENTION" in out and "consecutive failures: 2" in out
    assert "success rate 7 days:  33.3 % of 3" in out
    assert "800 bytes (-200 bytes, -20.0 % vs the previous)" in out


def test_get_status_on_the_backup_function(history: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", history)
    monkeypatch.setenv("BACKUP_LOCAL_ROOT", str(tmp_path))
    monkeypatch.setenv("AUTH_MODE", "disabled")  # who may read it: test_auth.py
    monkeypatch.delenv("K_SERVICE", raising=False)
    client = create_app("database_backup", str(SOURCE)).test_client()
    resp = client.get("/status")
    assert resp.status_code == 200
    check(resp.get_json())
    assert client.get("/").status_code == 405  # GET elsewhere is still not a backup


def test_a_fresh_database_is_unhealthy_with_no_rates(migrated_url: str) -> None:
    proc = run_cli(["status", "--json"], migrated_url)
    body = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert body["healthy"] is False and body["last_success_at"] is None
    assert body["success_rate_7d"] is None and body["consecutive_failures"] == 0


def test_a_success_resets_the_failure_streak(migrated_url: str) -> None:
    add(migrated_url, "failed", 5)
    add(migrated_url, "success", 1, size=10)
    body = json.loads(run_cli(["status", "--json"], migrated_url, check=True).stdout)  # healthy: exit 0
    assert body["consecutive_failures"] == 0 and body["healthy"] is True
    assert run_cli(["status"], migrated_url).returncode == 0
