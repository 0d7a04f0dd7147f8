"""The `database_backup` Cloud Function, through functions-framework's own Flask app."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from functions_framework import create_app

from support.cli import pg_dump_that_fails
from support.paths import ROOT

SOURCE = ROOT / "functions" / "database_backup" / "main.py"


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, migrated_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", migrated_url)
    monkeypatch.setenv("BACKUP_LOCAL_ROOT", str(tmp_path))
    monkeypatch.setenv("AUTH_MODE", "disabled")  # the contract here; who may call: test_auth.py
    monkeypatch.delenv("K_SERVICE", raising=False)
    return create_app("database_backup", str(SOURCE)).test_client()


def test_scheduled_backup_answers_200_with_the_log_row(client, migrated_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/", json={"trigger": "scheduled"})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert set(body) >= {"backup_log_id", "status", "file_name", "file_size_bytes", "path"}
    assert body["status"] == "success"
    assert (tmp_path / body["path"]).stat().st_size == body["file_size_bytes"]
    with psycopg.connect(migrated_url) as conn:
        backup_type = conn.execute(
            "SELECT backup_type FROM backup_logs WHERE id = %s", (body["backup_log_id"],)
        ).fetchone()[0]
    assert backup_type == "automatic"


def test_manual_backup_is_logged_as_manual(client, migrated_url: str) -> None:  # type: ignore[no-untyped-def]
    body = client.post("/", json={"trigger": "manual"}).get_json()
    with psycopg.connect(migrated_url) as conn:
        assert (
            conn.execute("SELECT backup_type FROM backup_logs WHERE id = %s", (body["backup_log_id"],)).fetchone()[0]
            == "manual"
        )


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"[]", b'{"trigger": "hourly"}', b'{"trigger": "manual", "x": 1}', b"\xff\xfe"],
)
def test_a_malformed_body_is_400_json_and_starts_nothing(client, migrated_url: str, data: bytes) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/", data=data, content_type="application/json")
    assert resp.status_code == 400
    assert resp.is_json and "error" in resp.get_json()
    with psycopg.connect(migrated_url) as conn:
        assert conn.execute("SELECT count(*) FROM backup_logs").fetchone()[0] == 0


def test_a_wrong_method_is_405(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.get("/")
    assert resp.status_code == 405 and resp.is_json


def test_a_failed_backup_is_500_with_the_log_id(client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PG_DUMP_PATH", str(pg_dump_that_fails(tmp_path)))
    resp = client.post("/", json={"trigger": "scheduled"})
    body = resp.get_json()
    assert resp.status_code == 500
    assert body["status"] == "failed" and body["backup_log_id"] and "connection lost" in body["failure_reason"]


def test_a_missing_pg_dump_is_a_500_configuration_error_with_no_row(  # type: ignore[no-untyped-def]
    client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, migrated_url: str
) -> None:
    monkeypatch.setenv("PG_DUMP_PATH", str(tmp_path / "missing" / "pg_dump"))
    resp = client.post("/", json={"trigger": "scheduled"})
    assert resp.status_code == 500 and "does not exist" in resp.get_json()["error"]
    with psycopg.connect(migrated_url) as conn:
        assert conn.execute("SELECT count(*) FROM backup_logs").fetchone()[0] == 0


def test_missing_configuration_is_500_without_a_traceback(client, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("DATABASE_URL")
    resp = client.post("/", json={"trigger": "scheduled"})
    assert resp.status_code == 500
    assert resp.get_json()["error"].startswith("DATABASE_URL is not set")
