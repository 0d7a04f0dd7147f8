"""Cloud Scheduler retries a job with the same ``X-CloudScheduler-ScheduleTime``: a retry after
that slot's backup succeeded must not back up again, one after a failed attempt must. Through
the function (functions-framework's app), with real Google-signed-style OIDC tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from functions_framework import create_app

from fakes.auth_people import AUDIENCE, SCHEDULER_SA, Secured
from fakes.oidc_fake import GoogleCertsFake
from support.paths import ROOT

pytest_plugins = ["fakes.auth_fixtures"]

BACKUP = ROOT / "functions" / "database_backup" / "main.py"
SLOT = "2026-11-25T01:00:00Z"


def scheduled(google_certs: GoogleCertsFake, schedule_time: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {google_certs.mint(AUDIENCE, SCHEDULER_SA)}"}
    if schedule_time is not None:
        headers["X-CloudScheduler-ScheduleTime"] = schedule_time
    client = create_app("database_backup", str(BACKUP)).test_client()
    resp = client.post("/", json={"trigger": "scheduled"}, headers=headers)
    return resp.status_code, resp.get_json()


def rows(url: str) -> list[tuple[str, str, Any]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT id::text, status, schedule_time FROM backup_logs ORDER BY started_at").fetchall()  # type: ignore[return-value]


def files(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("DB_Backup_*.sql.gz"))


def set_folder(url: str, value: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE invoice_configurations SET config_value = %s WHERE config_key = 'backup_folder_path'", (value,)
        )


def test_a_retry_after_the_slots_success_is_answered_already_done(
    secured: Secured, google_certs: GoogleCertsFake
) -> None:
    status, first = scheduled(google_certs, SLOT)
    assert status == 200 and first["status"] == "success", first
    status, retry = scheduled(google_certs, SLOT)
    assert status == 200, retry
    assert retry["status"] == "skipped" and retry["reason"].startswith("already done")
    assert retry["backup_log_id"] == first["backup_log_id"] and retry["file_name"] == first["file_name"]
    assert len(rows(secured.url)) == 1 and len(files(secured.root)) == 1  # no new row, no second file


def test_the_same_slot_written_with_another_offset_is_the_same_slot(
    secured: Secured, google_certs: GoogleCertsFake
) -> None:
    assert scheduled(google_certs, SLOT)[0] == 200
    status, retry = scheduled(google_certs, "2026-11-25T02:00:00.000+01:00")
    assert status == 200 and retry["status"] == "skipped"


def test_a_retry_after_a_failed_attempt_runs_again(secured: Secured, google_certs: GoogleCertsFake) -> None:
    set_folder(secured.url, "MyDrive//broken")  # an empty segment: the attempt fails after its row exists
    status, failed = scheduled(google_certs, SLOT)
    assert status == 500 and failed["status"] == "failed", failed
    set_folder(secured.url, "MyDrive/DatabaseBackups")
    status, retry = scheduled(google_certs, SLOT)
    assert status == 200 and retry["status"] == "success", retry
    assert [r[1] for r in rows(secured.url)] == ["failed", "success"]
    assert all(r[2] is not None for r in rows(secured.url))  # both attempts carry their slot
    status, again = scheduled(google_certs, SLOT)
    assert status == 200 and again["status"] == "skipped" and again["backup_log_id"] == retry["backup_log_id"]


def test_other_slots_and_calls_without_the_header_back_up(secured: Secured, google_certs: GoogleCertsFake) -> None:
    assert scheduled(google_certs, SLOT)[1]["status"] == "success"
    assert scheduled(google_certs, "2026-11-26T01:00:00Z")[1]["status"] == "success"
    assert scheduled(google_certs, None)[1]["status"] == "success"  # no slot: nothing to deduplicate on
    assert [r[1] for r in rows(secured.url)] == ["success"] * 3


@pytest.mark.parametrize(
    "value", ["yesterday", "2026-11-25 01:00", "2026-11-25T01:00:00", "2026-13-40T01:00:00Z", "x" * 500]
)
def test_a_malformed_schedule_time_is_refused_before_anything_starts(
    value: str, secured: Secured, google_certs: GoogleCertsFake
) -> None:
    status, body = scheduled(google_certs, value)
    assert status == 400 and "X-CloudScheduler-ScheduleTime" in body["error"], body
    assert value not in body["error"] or len(value) < 40
    assert rows(secured.url) == []
