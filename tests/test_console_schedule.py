"""Schedule and retention settings, the history the chart is drawn from, and the storage use
(issue 20, part B): through functions-framework's Flask app, against a real PostgreSQL, the real
google-cloud-scheduler client against the Cloud Scheduler fake, and the Drive fake."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from flask.testing import FlaskClient
from functions_framework import create_app

from dbbackup.pg.app_settings import read_backup_config
from fakes import drive_env, make_drive_storage
from fakes.auth_people import MANAGER, Secured
from fakes.drive_fake import DriveFake
from fakes.jwks_fake import SupabaseJwksFake
from fakes.scheduler_fake import SchedulerFake
from support.paths import ROOT

pytest_plugins = ["fakes.auth_fixtures", "fakes.fixtures"]

SOURCE = ROOT / "functions" / "backup_console" / "main.py"
BACKUP_JOB = "projects/test-project/locations/europe-west1/jobs/dbbackup-backup"
CLEANUP_JOB = "projects/test-project/locations/europe-west1/jobs/dbbackup-cleanup"


@pytest.fixture(scope="module")
def scheduler() -> Iterator[SchedulerFake]:
    fake = SchedulerFake()
    yield fake
    fake.stop()


@pytest.fixture
def jobs(scheduler: SchedulerFake) -> SchedulerFake:
    """The two jobs as Terraform creates them, fresh for each test."""
    scheduler.jobs.clear()
    scheduler.faults.clear()
    scheduler.exchanges.clear()
    scheduler.add(BACKUP_JOB, "0 1 * * *", "Europe/Berlin")
    scheduler.add(CLEANUP_JOB, "0 2 * * *", "Europe/Berlin")
    return scheduler


@pytest.fixture
def client(secured: Secured, monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    monkeypatch.setenv("BACKUP_TIMEZONE", "Europe/Berlin")
    return create_app("backup_console", str(SOURCE)).test_client()


@pytest.fixture
def manager(supabase: SupabaseJwksFake) -> dict[str, str]:
    return {"Authorization": f"Bearer {supabase.mint(MANAGER)}"}


@pytest.fixture
def deployed(jobs: SchedulerFake, monkeypatch: pytest.MonkeyPatch) -> SchedulerFake:
    """The console as Terraform configures it: both jobs named, the endpoint on the fake."""
    monkeypatch.setenv("SCHEDULER_BACKUP_JOB", BACKUP_JOB)
    monkeypatch.setenv("SCHEDULER_CLEANUP_JOB", CLEANUP_JOB)
    monkeypatch.setenv("SCHEDULER_ENDPOINT", jobs.url)
    return jobs


def stored(url: str) -> dict[str, str | None]:
    with psycopg.connect(url) as conn:
        return dict(
            conn.execute(
                "SELECT config_key, config_value FROM invoice_configurations"
                " WHERE config_key LIKE 'backup\\_%%' AND config_key NOT IN"
                " ('backup_folder_path', 'backup_notification_email', 'backup_enabled')"
            ).fetchall()
        )


def test_without_a_scheduler_the_schedule_is_stored_not_applied_and_the_backup_names_files_in_its_zone(
    client: FlaskClient, manager: dict[str, str], secured: Secured, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = client.get("/api/config/schedule", headers=manager).get_json()
    assert body["backup"]["cron"] == "0 1 * * *" and body["backup"]["time_zone"] == "Europe/Berlin"
    assert body["cleanup"]["cron"] == "0 2 * * *"
    assert body["applied"] is False and body["scheduler"] is None and "stored only" in body["detail"]
    assert body["retention"] == {"retention_days": 15, "keep_weekly": 0, "keep_monthly": 0, "keep_min": 3}
    next_run = datetime.fromisoformat(body["backup"]["next_run"])
    assert next_run > datetime.now(UTC) and next_run.astimezone(ZoneInfo("Europe/Berlin")).hour == 1

    change = {"backup": {"cron": "30 4 * * 1-5", "time_zone": "Asia/Tokyo"}, "retention": {"keep_weekly": 4}}
    resp = client.put("/api/config/schedule", json=change, headers=manager)  # Friday to Monday: 72 h
    assert resp.status_code == 400 and "BACKUP_MAX_AGE_HOURS (26 h)" in resp.get_json()["error"]
    monkeypatch.setenv("BACKUP_MAX_AGE_HOURS", "80")  # weekdays only, monitored as such
    resp = client.put("/api/config/schedule", json=change, headers=manager)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["applied"] is False
    assert body["backup"]["cron"] == "30 4 * * 1-5" and body["backup"]["time_zone"] == "Asia/Tokyo"
    assert body["cleanup"]["cron"] == "0 2 * * *"  # a part not sent is not changed
    assert body["retention"]["keep_weekly"] == 4 and body["retention"]["retention_days"] == 15
    tokyo = datetime.fromisoformat(body["backup"]["next_run"]).astimezone(ZoneInfo("Asia/Tokyo"))
    assert (tokyo.hour, tokyo.minute) == (4, 30) and tokyo.isoweekday() <= 5
    rows = stored(secured.url)
    assert rows["backup_schedule_cron"] == "30 4 * * 1-5" and rows["backup_schedule_time_zone"] == "Asia/Tokyo"
    assert rows["backup_keep_weekly"] == "4" and rows["backup_retention_days"] is None
    with psycopg.connect(secured.url) as conn:
        config = read_backup_config(conn)
    assert config.time_zone == ZoneInfo("Asia/Tokyo") and config.keep_weekly == 4 and config.retention_days is None
    # The status strip shows the retention the next cleanup applies.
    status = client.get("/api/status", headers=manager).get_json()
    assert status["retention"] == {"retention_days": 15, "keep_min": 3, "keep_weekly": 4, "keep_monthly": 0}

    # The backup names its file in the backup job's zone, no longer BACKUP_TIMEZONE's.
    before = datetime.now(ZoneInfo("Asia/Tokyo"))
    run = client.post("/api/backups", headers=manager)
    assert run.status_code == 200, run.get_json()
    name = run.get_json()["file_name"]
    stamp = datetime.strptime(re.search(r"\d{4}-\d\d-\d\d_\d\d-\d\d", name).group(), "%Y-%m-%d_%H-%M")  # type: ignore[union-attr]
    assert abs(stamp.replace(tzinfo=ZoneInfo("Asia/Tokyo")) - before) < timedelta(minutes=2), name


BAD_VALUES: list[tuple[Any, str]] = [
    ({"backup": {"cron": "61 1 * * *"}}, "backup.cron"),
    ({"backup": {"cron": "0 0 1 * * *"}}, "backup.cron"),  # croniter's seconds field: not unix-cron
    ({"cleanup": {"cron": "@daily"}}, "cleanup.cron"),
    ({"cleanup": {"cron": "0 2 L * *"}}, "cleanup.cron"),
    ({"backup": {"cron": 5}}, "backup.cron"),
    ({"backup": {"time_zone": "Mars/Olympus_Mons"}}, "backup.time_zone"),
    ({"retention": {"retention_days": 0}}, "retention.retention_days"),
    ({"retention": {"keep_weekly": True}}, "retention.keep_weekly"),
    ({"retention": {"keep_monthly": 1201}}, "retention.keep_monthly"),
    ({"verify": {"cron": "0 3 * * 0"}}, "verify"),
    ({"backup": {"cron": "0 1 * * *", "paused": True}}, "backup"),
    ({}, "body"),
    # Cron Scheduler would take but that never fires, or breaks the backup's monitoring.
    ({"backup": {"cron": "0 0 31 2 *"}}, "backup.cron"),  # no 31 February: never runs
    ({"cleanup": {"cron": "0 0 30 2 *"}}, "cleanup.cron"),
    ({"backup": {"cron": "* * * * *"}}, "backup.cron"),  # backups under an hour apart
    ({"backup": {"cron": "0 1 * * 1"}}, "backup.cron"),  # weekly: more than BACKUP_MAX_AGE_HOURS apart
    ({"backup": {"time_zone": "localtime"}}, "backup.time_zone"),
    ({"cleanup": {"time_zone": "Factory"}}, "cleanup.time_zone"),
    ({"backup": {"time_zone": "EST5EDT"}}, "backup.time_zone"),
    # A valid part beside a bad one: nothing of the request is applied.
    ({"backup": {"cron": "0 4 * * *"}, "cleanup": {"time_zone": "Nowhere"}}, "cleanup.time_zone"),
]


def test_bad_values_are_refused_naming_the_field_and_nothing_is_applied_or_stored(
    client: FlaskClient, manager: dict[str, str], secured: Secured, deployed: SchedulerFake
) -> None:
    before = stored(secured.url)
    for body, field in BAD_VALUES:
        resp = client.put("/api/config/schedule", json=body, headers=manager)
        assert resp.status_code == 400 and resp.get_json()["field"] == field, (body, resp.get_json())
    assert deployed.patches == [] and stored(secured.url) == before


def test_with_cloud_scheduler_a_change_updates_the_job_through_the_api_and_is_recorded(
    client: FlaskClient, manager: dict[str, str], secured: Secured, deployed: SchedulerFake
) -> None:
    body = client.get("/api/config/schedule", headers=manager).get_json()
    assert body["applied"] is True and body["scheduler"] == "cloud_scheduler"
    assert body["backup"]["job"] == BACKUP_JOB and body["backup"]["time_zone"] == "Europe/Berlin"

    resp = client.put("/api/config/schedule", json={"backup": {"cron": "15 3 * * *"}}, headers=manager)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["applied"] is True and resp.get_json()["backup"]["cron"] == "15 3 * * *"
    (patch,) = deployed.patches
    assert patch.path == f"/v1/{BACKUP_JOB}" and patch.query["updateMask"] == "schedule,timeZone"
    assert patch.json() == {"schedule": "15 3 * * *", "timeZone": "Europe/Berlin"}  # nothing else of the job
    assert deployed.jobs[BACKUP_JOB]["schedule"] == "15 3 * * *"
    assert deployed.jobs[BACKUP_JOB]["httpTarget"]  # Terraform's target untouched
    assert deployed.jobs[CLEANUP_JOB]["schedule"] == "0 2 * * *"
    rows = stored(secured.url)
    assert rows["backup_schedule_cron"] == "15 3 * * *" and rows["backup_schedule_time_zone"] == "Europe/Berlin"

    # Refused by Scheduler (the runtime account lost its role): 502 naming why, nothing recorded.
    deployed.refuse(403, "PERMISSION_DENIED", method="PATCH")
    resp = client.put("/api/config/schedule", json={"cleanup": {"time_zone": "UTC"}}, headers=manager)
    assert resp.status_code == 502 and "Forbidden" in resp.get_json()["error"], resp.get_json()
    assert deployed.jobs[CLEANUP_JOB]["timeZone"] == "Europe/Berlin"
    assert stored(secured.url)["backup_cleanup_time_zone"] is None

    # A job deleted by hand: the page still gets the stored schedule, marked not applied.
    del deployed.jobs[CLEANUP_JOB]
    body = client.get("/api/config/schedule", headers=manager).get_json()
    assert body["applied"] is False and "NotFound" in body["detail"] and CLEANUP_JOB in body["detail"]
    assert body["backup"]["cron"] == "15 3 * * *"  # what was last applied and recorded
    resp = client.put("/api/config/schedule", json={"cleanup": {"cron": "0 5 * * *"}}, headers=manager)
    assert resp.status_code == 502 and "NotFound" in resp.get_json()["error"]
    # The backup's job alone can still be changed: only the jobs a change names are read.
    resp = client.put("/api/config/schedule", json={"backup": {"cron": "20 3 * * *"}}, headers=manager)
    assert resp.status_code == 200 and deployed.jobs[BACKUP_JOB]["schedule"] == "20 3 * * *"

    # A database migrated before 013 has nowhere to record a change: refused before any job is touched.
    with psycopg.connect(secured.url, autocommit=True) as conn:
        conn.execute("DELETE FROM invoice_configurations WHERE config_key = 'backup_keep_monthly'")
    patches = len(deployed.patches)
    resp = client.put("/api/config/schedule", json={"backup": {"cron": "0 4 * * *"}}, headers=manager)
    assert resp.status_code == 500 and "dbbackup migrate" in resp.get_json()["error"]
    assert len(deployed.patches) == patches and deployed.jobs[BACKUP_JOB]["schedule"] == "20 3 * * *"


def test_the_google_cloud_scheduler_client_is_imported_by_its_adapter_only() -> None:
    package = ROOT / "shared" / "dbbackup"
    users = {
        p.relative_to(package).as_posix()
        for p in package.rglob("*.py")
        if re.search(r"google\.cloud\.scheduler|google\.cloud import scheduler", p.read_text())
    }
    assert users == {"scheduler.py"}


def seed(url: str, started_at: datetime, status: str, size: int | None, seconds: float | None) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO backup_logs (backup_type, status, file_name, file_size_bytes, started_at, completed_at,"
            " failure_reason) VALUES ('automatic', %s, 'x.sql.gz', %s, %s, %s, %s)",
            (
                status,
                size,
                started_at,
                None if seconds is None else started_at + timedelta(seconds=seconds),
                "pg_dump: error: connection lost\nmore detail" if status == "failed" else None,
            ),
        )


def test_history_gives_the_attempts_of_the_last_30_or_90_days_oldest_first(
    client: FlaskClient, manager: dict[str, str], secured: Secured
) -> None:
    now = datetime.now(UTC)
    seed(secured.url, now - timedelta(days=60), "success", 900, 12.0)
    seed(secured.url, now - timedelta(days=3), "failed", None, 2.5)
    seed(secured.url, now - timedelta(days=2), "success", 1_000, 10.0)
    seed(secured.url, now - timedelta(minutes=3), "in_progress", None, None)
    body = client.get("/api/history?days=30", headers=manager).get_json()
    assert body["days"] == 30 and body["timezone"] == "Europe/Berlin" and body["failed"] == 1
    points = body["attempts"]
    assert [p["status"] for p in points] == ["failed", "success", "in_progress"]
    assert points[0]["failure_reason"] == "pg_dump: error: connection lost" and points[0]["file_size_bytes"] is None
    assert points[1]["file_size_bytes"] == 1_000 and points[1]["duration_seconds"] == 10.0
    assert points[2]["duration_seconds"] is None
    assert points[1]["started_at"].endswith(("+01:00", "+02:00"))  # in BACKUP_TIMEZONE
    assert len(client.get("/api/history?days=90", headers=manager).get_json()["attempts"]) == 4
    for bad in ("days=7", "days=abc", "since=2024-01-01"):
        resp = client.get(f"/api/history?{bad}", headers=manager)
        assert resp.status_code == 400 and resp.get_json()["field"] in ("days", "since"), bad
    assert client.get("/api/history").status_code == 401


def test_storage_use_is_drives_quota_and_not_available_elsewhere(
    client: FlaskClient,
    manager: dict[str, str],
    drive_fake: DriveFake,
    drive_user: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in drive_env(drive_fake, drive_user, BACKUP_STORAGE="google_drive,local").items():
        monkeypatch.setenv(key, value)
    storage = make_drive_storage(drive_fake, drive_user)
    storage.put(storage.ensure_folder("MyDrive/DatabaseBackups"), "DB_Backup_2026-01-01_01-00.sql.gz", [b"x" * 5000])
    resp = client.get("/api/storage", headers=manager)
    assert resp.status_code == 200, resp.get_json()
    drive, local = resp.get_json()["targets"]
    assert drive == {"target": "google_drive", "available": True, "used_bytes": 5000, "limit_bytes": 15 << 30}
    assert local["target"] == "local" and local["available"] is False and "not available" in local["detail"]
    assert any(e.path == "/drive/v3/about" and e.query.get("fields") == "storageQuota" for e in drive_fake.exchanges)


def test_a_change_applied_but_not_recorded_is_put_back_or_reported_exactly(
    client: FlaskClient,
    manager: dict[str, str],
    secured: Secured,
    deployed: SchedulerFake,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dbbackup.console import schedule
    from dbbackup.errors import DatabaseError

    def store_fails(*args: object) -> None:
        raise DatabaseError("database error: the connection was lost")

    monkeypatch.setattr(schedule, "write_backup_setting", store_fails)
    resp = client.put("/api/config/schedule", json={"backup": {"cron": "15 3 * * *"}}, headers=manager)
    assert resp.status_code == 500, resp.get_json()
    assert deployed.jobs[BACKUP_JOB]["schedule"] == "0 1 * * *"  # put back
    assert [p.json()["schedule"] for p in deployed.patches] == ["15 3 * * *", "0 1 * * *"]

    def store_and_putting_back_fail(*args: object) -> None:
        deployed.refuse(403, "PERMISSION_DENIED", method="PATCH")  # the job's restore is refused
        raise DatabaseError("database error: the connection was lost")

    monkeypatch.setattr(schedule, "write_backup_setting", store_and_putting_back_fail)
    resp = client.put("/api/config/schedule", json={"backup": {"cron": "20 3 * * *"}}, headers=manager)
    error = resp.get_json()["error"]
    assert resp.status_code == 502 and "now runs '20 3 * * *'" in error and "(applied)" in error, error
    assert "recording it failed" in error and "'0 1 * * *'" in error
    assert deployed.jobs[BACKUP_JOB]["schedule"] == "20 3 * * *"
