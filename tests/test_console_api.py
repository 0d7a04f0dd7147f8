"""The managers' console API (function ``backup_console``), through functions-framework's own
Flask app, against a real PostgreSQL, with real signed tokens (the Supabase JWKS and Google certs
fakes), real storage (a local folder, and the Drive fake) and a real backup for Run Backup Now."""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import random
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient
from functions_framework import create_app

from dbbackup.console.api import STATIC
from dbbackup.pg.backup_log import BACKUP_LOCK_KEY
from dbbackup.storage.local import LocalStorage
from fakes import drive_env, make_drive_storage
from fakes.auth_people import ADMIN, AUDIENCE, CLERK, MANAGER, SCHEDULER_SA, STRANGER, Secured
from fakes.drive_fake import DriveFake
from fakes.jwks_fake import SupabaseJwksFake
from fakes.oidc_fake import GoogleCertsFake
from support.paths import ROOT

pytest_plugins = ["fakes.auth_fixtures", "fakes.fixtures"]

SOURCE = ROOT / "functions" / "backup_console" / "main.py"
FOLDER = "MyDrive/DatabaseBackups"
CSP_START = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'"
MANAGER_ROUTES = [
    ("GET", "/api/me"),
    ("GET", "/api/logs"),
    ("GET", "/api/logs.csv"),
    ("GET", f"/api/backups/{uuid.uuid4()}/download"),
    ("GET", f"/api/backups/{uuid.uuid4()}"),
    ("GET", "/api/config"),
    ("PUT", "/api/config/backup_enabled"),
    ("POST", "/api/backups"),
    ("GET", "/api/status"),
]


@pytest.fixture
def client(secured: Secured, supabase: SupabaseJwksFake, monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    monkeypatch.setenv("BACKUP_TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("SUPABASE_URL", supabase.base)
    monkeypatch.setenv("SUPABASE_ANON_KEY", "anon-key-public-by-design")
    return create_app("backup_console", str(SOURCE)).test_client()


def auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@pytest.fixture
def manager(supabase: SupabaseJwksFake) -> dict[str, str]:
    return auth(supabase.mint(MANAGER))


def seed(url: str, started_at: datetime, **values: Any) -> str:
    row = {
        "backup_type": "automatic",
        "status": "success",
        "file_name": f"backup_{uuid.uuid4().hex[:8]}.sql.gz",
        "file_size_bytes": 1000,
        "started_at": started_at,
        "completed_at": started_at + timedelta(seconds=5),
    } | values
    if row["status"] != "success":
        row["completed_at"] = values.get("completed_at")
        row["file_size_bytes"] = values.get("file_size_bytes")
    columns = ", ".join(row)
    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute(
            f"INSERT INTO backup_logs ({columns}) VALUES ({', '.join(['%s'] * len(row))}) RETURNING id",
            tuple(row.values()),
        ).fetchone()
    assert found is not None
    return str(found[0])


NOW = datetime.now(UTC)
BERLIN_EVENING = datetime(2024, 3, 9, 22, 30, tzinfo=UTC)  # 23:30 in Berlin, 9 March
BERLIN_AFTER_MIDNIGHT = datetime(2024, 3, 9, 23, 10, tzinfo=UTC)  # 00:10 in Berlin, 10 March


@pytest.fixture
def logs(secured: Secured) -> dict[str, str]:
    """Seven rows covering every status, both types, both ranges, a soft delete and a day
    boundary that only BACKUP_TIMEZONE puts on different days."""
    url = secured.url
    return {
        "recent": seed(url, NOW - timedelta(hours=1), file_size_bytes=3_000),
        "failed": seed(
            url,
            NOW - timedelta(days=2),
            backup_type="manual",
            status="failed",
            failure_reason='=HYPERLINK("http://evil.example")',
            file_name="+cmd|' /C calc'!A0",
            triggered_by=MANAGER,
        ),
        "week_old": seed(url, NOW - timedelta(days=10), backup_type="manual", file_size_bytes=1_500_000),
        "deleted": seed(url, NOW - timedelta(days=40), file_size_bytes=500, deleted_at=NOW - timedelta(days=5)),
        "running": seed(url, NOW - timedelta(minutes=5), status="in_progress"),
        "evening": seed(url, BERLIN_EVENING, file_size_bytes=20_000, file_name="@SUM(A1:A2).sql.gz"),
        "night": seed(url, BERLIN_AFTER_MIDNIGHT, file_size_bytes=10_000),
    }


def ids(resp: Any) -> list[str]:
    assert resp.status_code == 200, resp.get_json()
    return [row["id"] for row in resp.get_json()["items"]]


def assert_security_headers(resp: Any) -> None:
    assert resp.headers["Content-Security-Policy"].startswith(CSP_START)
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["X-Frame-Options"] == "DENY"


# --- public routes, headers -----------------------------------------------------------------


def test_client_config_is_public_and_the_csp_allows_supabase(client: FlaskClient, supabase: SupabaseJwksFake) -> None:
    resp = client.get("/api/client-config")
    assert resp.status_code == 200
    assert resp.get_json() == {
        "supabase_url": supabase.base,
        "supabase_anon_key": "anon-key-public-by-design",
        "auth_mode": "enforced",
        "timezone": "Europe/Berlin",
    }
    assert_security_headers(resp)
    assert f"connect-src 'self' {supabase.base};" in resp.headers["Content-Security-Policy"]


def test_the_page_and_its_files_are_public_with_security_headers(client: FlaskClient) -> None:
    page = client.get("/")
    assert_security_headers(page)
    if (STATIC / "index.html").is_file():
        assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
        assert page.data == (STATIC / "index.html").read_bytes()
    else:
        assert page.status_code == 404 and "error" in page.get_json()
    for name, kind in (("console.js", "text/javascript"), ("console.css", "text/css")):
        resp = client.get(f"/static/{name}")
        assert_security_headers(resp)
        if (STATIC / name).is_file():
            assert resp.status_code == 200 and resp.headers["Content-Type"].startswith(kind)
            assert resp.data == (STATIC / name).read_bytes()
            assert resp.headers["Content-Length"] == str(len(resp.data))
    missing = client.get("/static/no-such-file.js")
    assert missing.status_code == 404 and missing.is_json
    assert_security_headers(missing)


@pytest.mark.parametrize(
    "path",
    [
        "/static/../api.py",
        "/static/..%2Fapi.py",
        "/static/%2e%2e/api.py",
        "/static/..%2F..%2Fconsole%2Fstatic%2Findex.html",
        "/static/sub/index.html",
        "/static/..",
        "/static/.%2e",
        "/static//etc/passwd",
        "/static/%2Fetc%2Fpasswd",
        "/static/index.html%00.js",
        "/static/api.py",
    ],
)
def test_static_files_never_leave_their_folder(client: FlaskClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 404, path
    assert b"def " not in resp.data and b"root:" not in resp.data
    assert_security_headers(resp)


def test_unknown_routes_and_methods_answer_json(client: FlaskClient, manager: dict[str, str]) -> None:
    resp = client.get("/api/nope", headers=manager)
    assert resp.status_code == 404 and resp.is_json
    assert_security_headers(resp)
    resp = client.post("/api/client-config")
    assert resp.status_code == 405 and resp.headers["Allow"] == "GET"
    resp = client.delete("/api/logs", headers=manager)
    assert resp.status_code == 405 and resp.is_json


def test_a_misconfigured_supabase_url_is_named(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPABASE_URL", "http://supabase.example.com")  # plain http off loopback
    resp = client.get("/api/client-config")
    assert resp.status_code == 500 and "SUPABASE_URL" in resp.get_json()["error"]
    assert_security_headers(resp)


# --- who may call ---------------------------------------------------------------------------


def test_only_managers_and_admins_reach_the_api(
    client: FlaskClient, secured: Secured, supabase: SupabaseJwksFake, google_certs: GoogleCertsFake
) -> None:
    callers = {
        "no token": (None, 401),
        "expired": (supabase.mint(MANAGER, expires_in=-60), 401),
        "clerk": (supabase.mint(CLERK), 403),
        "stranger": (supabase.mint(STRANGER), 403),
        "scheduler": (google_certs.mint(AUDIENCE, SCHEDULER_SA), 403),
    }
    for method, path in MANAGER_ROUTES:
        for name, (token, status) in callers.items():
            resp = client.open(
                path, method=method, json={"value": False} if method == "PUT" else None, headers=auth(token)
            )
            assert resp.status_code == status, (method, path, name, resp.get_json())
            assert set(resp.get_json()) == {"error"}
            assert_security_headers(resp)
            if status == 401:
                assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="dbbackup"')
            assert token is None or token not in resp.get_data(as_text=True)
    with psycopg.connect(secured.url) as conn:  # nothing was started or changed
        assert conn.execute("SELECT count(*) FROM backup_logs").fetchone() == (0,)
        enabled = conn.execute("SELECT config_value FROM invoice_configurations WHERE config_key = 'backup_enabled'")
        assert enabled.fetchone() == ("true",)


def test_me_names_the_caller_and_role(client: FlaskClient, supabase: SupabaseJwksFake) -> None:
    assert client.get("/api/me", headers=auth(supabase.mint(MANAGER))).get_json() == {
        "subject": MANAGER,
        "role": "manager",
    }
    assert client.get("/api/me", headers=auth(supabase.mint(ADMIN, kid="rs-key-1"))).get_json() == {
        "subject": ADMIN,
        "role": "admin",
    }


def test_cors_preflight_and_answers_follow_allowed_origins(client: FlaskClient, manager: dict[str, str]) -> None:
    pre = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT"}
    ok = client.options("/api/config/backup_enabled", headers=pre)
    assert ok.status_code == 204 and ok.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "PUT" in ok.headers["Access-Control-Allow-Methods"]
    evil = client.options("/api/logs", headers=pre | {"Origin": "https://evil.example.net"})
    assert evil.status_code == 403 and "Access-Control-Allow-Origin" not in evil.headers
    resp = client.get("/api/me", headers=manager | {"Origin": "https://app.example.com"})
    assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert resp.headers["Cache-Control"] == "no-store"


# --- the log --------------------------------------------------------------------------------


def test_logs_default_to_newest_first_twenty_a_page(
    client: FlaskClient, manager: dict[str, str], logs: dict[str, str]
) -> None:
    resp = client.get("/api/logs", headers=manager)
    body = resp.get_json()
    assert {k: body[k] for k in ("total", "page", "per_page", "pages", "sort", "order")} == {
        "total": 7,
        "page": 1,
        "per_page": 20,
        "pages": 1,
        "sort": "started_at",
        "order": "desc",
    }
    order = ["running", "recent", "failed", "week_old", "deleted", "night", "evening"]
    assert ids(resp) == [logs[k] for k in order]
    rows = {row["id"]: row for row in body["items"]}
    evening = rows[logs["evening"]]
    assert evening["started_at"] == "2024-03-09T23:30:00+01:00"  # BACKUP_TIMEZONE, with its offset
    assert evening["file_size_human"] == "19.5 KB" and evening["downloadable"] is True
    assert evening["drive_url"] is None  # local storage has no Drive link
    assert rows[logs["week_old"]]["file_size_human"] == "1.4 MB"
    deleted = rows[logs["deleted"]]
    assert deleted["deleted"] is True and deleted["deleted_at"] and deleted["downloadable"] is False
    failed = rows[logs["failed"]]
    assert failed["failure_reason"].startswith("=HYPERLINK") and failed["triggered_by"] == MANAGER
    assert failed["file_size_bytes"] is None and failed["file_size_human"] is None and not failed["downloadable"]
    assert rows[logs["running"]]["completed_at"] is None and not rows[logs["running"]]["downloadable"]
    assert set(evening) == {
        "id",
        "verify_status",
        "verified_at",
        "started_at",
        "completed_at",
        "backup_type",
        "status",
        "file_name",
        "file_size_bytes",
        "file_size_human",
        "google_drive_file_id",
        "google_drive_path",
        "drive_url",
        "failure_reason",
        "triggered_by",
        "deleted_at",
        "deleted",
        "downloadable",
        "encrypted",
        "decrypt_command",
        "copies",
    }
    assert evening["encrypted"] is False and evening["decrypt_command"] is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=success", ["recent", "week_old", "deleted", "night", "evening"]),
        ("status=failed", ["failed"]),
        ("status=in_progress", ["running"]),
        ("status=all", ["running", "recent", "failed", "week_old", "deleted", "night", "evening"]),
        ("type=manual", ["failed", "week_old"]),
        ("type=automatic&status=success", ["recent", "deleted", "night", "evening"]),
        ("range=last_7_days", ["running", "recent", "failed"]),
        ("range=last_30_days", ["running", "recent", "failed", "week_old"]),
        # Berlin days: 23:30 on 9 March is in; 00:10 on 10 March (still 9 March in UTC) is not.
        ("from=2024-03-01&to=2024-03-09", ["evening"]),
        ("from=2024-03-10&to=2024-03-10", ["night"]),
        ("to=2024-03-09", ["evening"]),
        ("from=2024-03-10&status=success", ["recent", "week_old", "deleted", "night"]),
        ("from=&to=&range=all", ["running", "recent", "failed", "week_old", "deleted", "night", "evening"]),
        ("sort=file_size_bytes", ["week_old", "evening", "night", "recent", "deleted", "running", "failed"]),
        ("sort=file_size_bytes&order=asc", ["deleted", "recent", "night", "evening", "week_old", "running", "failed"]),
        ("sort=status&order=asc&type=manual", ["failed", "week_old"]),
        ("sort=started_at&order=asc", ["evening", "night", "deleted", "week_old", "failed", "recent", "running"]),
    ],
)
def test_logs_filter_and_sort(
    client: FlaskClient, manager: dict[str, str], logs: dict[str, str], query: str, expected: list[str]
) -> None:
    resp = client.get(f"/api/logs?{query}", headers=manager)
    assert ids(resp) == [logs[k] for k in expected], query
    assert resp.get_json()["total"] == len(expected)


def test_logs_paginate(client: FlaskClient, manager: dict[str, str], logs: dict[str, str]) -> None:
    order = ["running", "recent", "failed", "week_old", "deleted", "night", "evening"]
    first = client.get("/api/logs?per_page=3", headers=manager)
    assert ids(first) == [logs[k] for k in order[:3]] and first.get_json()["pages"] == 3
    second = client.get("/api/logs?per_page=3&page=2", headers=manager)
    assert ids(second) == [logs[k] for k in order[3:6]] and second.get_json()["page"] == 2
    third = client.get("/api/logs?per_page=3&page=3", headers=manager)
    assert ids(third) == [logs["evening"]]
    past = client.get("/api/logs?per_page=3&page=9", headers=manager)
    assert ids(past) == [] and past.get_json()["total"] == 7
    none = client.get("/api/logs?status=failed&type=automatic", headers=manager).get_json()
    assert none["items"] == [] and none["total"] == 0 and none["pages"] == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("colour=red", "colour"),
        ("status=failed&status=success", "status"),
        ("status=bogus", "status"),
        ("type=scheduled", "type"),
        ("range=yesterday", "range"),
        ("sort=file_name", "sort"),
        ("order=up", "order"),
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("page=1.5", "page"),
        ("per_page=101", "per_page"),
        ("per_page=0", "per_page"),
        ("from=2024-13-01", "from"),
        ("from=20240301", "from"),
        ("to=yesterday", "to"),
        ("from=2024-03-10&to=2024-03-01", "from"),
        ("range=last_7_days&from=2024-03-01", "range"),
        ("status=success'%20OR%20'1'='1", "status"),
        ("sort=started_at;DROP%20TABLE%20backup_logs", "sort"),
        ("order=desc,(SELECT%20pg_sleep(5))", "order"),
        ("status=%ff", "query"),
        ("status", "query"),
    ],
)
def test_logs_refuse_unknown_or_malformed_parameters(
    client: FlaskClient, manager: dict[str, str], secured: Secured, query: str, field: str
) -> None:
    resp = client.get(f"/api/logs?{query}", headers=manager)
    assert resp.status_code == 400, query
    body = resp.get_json()
    assert body["field"] == field and "\n" not in body["error"]
    with psycopg.connect(secured.url) as conn:
        assert conn.execute("SELECT to_regclass('public.backup_logs') IS NOT NULL").fetchone() == (True,)


def test_csv_refuses_paging_parameters(client: FlaskClient, manager: dict[str, str]) -> None:
    resp = client.get("/api/logs.csv?page=2", headers=manager)
    assert resp.status_code == 400 and resp.get_json()["field"] == "page"


def test_csv_export_holds_every_matching_row_with_safe_cells(
    client: FlaskClient, manager: dict[str, str], logs: dict[str, str]
) -> None:
    resp = client.get("/api/logs.csv?sort=started_at&order=asc", headers=manager)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    today = datetime.now(UTC).astimezone().date()
    disposition = resp.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="backup_logs_') and disposition.endswith('.csv"')
    assert abs((datetime.fromisoformat(disposition[-15:-5]).date() - today).days) <= 1
    assert_security_headers(resp)
    table = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert [r["id"] for r in table] == [
        logs[k] for k in ["evening", "night", "deleted", "week_old", "failed", "recent", "running"]
    ]
    by_id = {r["id"]: r for r in table}
    failed = by_id[logs["failed"]]
    assert failed["failure_reason"] == '\'=HYPERLINK("http://evil.example")'
    assert failed["file_name"] == "'+cmd|' /C calc'!A0"
    assert by_id[logs["evening"]]["file_name"] == "'@SUM(A1:A2).sql.gz"
    assert by_id[logs["evening"]]["started_at"] == "2024-03-09T23:30:00+01:00"
    assert by_id[logs["deleted"]]["deleted"] == "true" and by_id[logs["recent"]]["deleted"] == "false"
    for row in table:
        assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row.values())
    failed_only = client.get("/api/logs.csv?status=failed", headers=manager).get_data(as_text=True)
    assert len(failed_only.splitlines()) == 2  # header + one row


def test_csv_is_streamed_from_its_own_connection_that_closes_when_the_client_leaves(
    client: FlaskClient, manager: dict[str, str], secured: Secured
) -> None:
    with psycopg.connect(secured.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO backup_logs (backup_type, status, file_name, file_size_bytes, started_at)"
            " SELECT 'automatic', 'success', 'b_' || g || '.sql.gz', g, now() - g * interval '1 minute'"
            " FROM generate_series(1, 1600) g"
        )

    def exports() -> int:
        with psycopg.connect(secured.url) as conn:
            found = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = 'dbbackup'"
            ).fetchone()
        return int(found[0]) if found else -1

    def exports_settle_at(expected: int) -> int:
        # A closed connection's backend stays in pg_stat_activity a moment after the client left
        # (the request's own one, just before): wait for the count, as a leak never gets there.
        deadline = time.monotonic() + 10
        while (found := exports()) != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        return found

    whole = client.get("/api/logs.csv", headers=manager, buffered=False)
    assert whole.is_streamed
    chunks = list(whole.response)
    whole.close()
    assert len(chunks) >= 4  # the header, then batches: never the whole table at once
    assert sum(c.count(b"\n") for c in chunks) == 1601
    assert exports_settle_at(0) == 0  # read to the end: its connection is gone

    partial = client.get("/api/logs.csv", headers=manager, buffered=False)
    first = next(iter(partial.response))
    assert first.startswith(b"id,started_at,")
    assert exports_settle_at(1) == 1  # the export's cursor is still open
    partial.close()  # the client goes away after one chunk
    assert exports_settle_at(0) == 0

    untouched = client.get("/api/logs.csv", headers=manager, buffered=False)
    untouched.close()  # gone before the first byte
    assert exports_settle_at(0) == 0


# --- downloads ------------------------------------------------------------------------------

PAYLOAD = gzip.compress(random.Random(8).randbytes(300_000))  # incompressible: about 300 KB


def stored_locally(secured: Secured, name: str, data: bytes = PAYLOAD) -> str:
    storage = LocalStorage(secured.root)
    return storage.put(storage.ensure_folder(FOLDER), name, [data]).id


def test_download_streams_the_file_with_its_length_and_name(
    client: FlaskClient, manager: dict[str, str], secured: Secured
) -> None:
    name = "db_2024-03-09_23-30-00.sql.gz"
    log_id = seed(secured.url, NOW, file_name=name, google_drive_file_id=stored_locally(secured, name))
    resp = client.get(f"/api/backups/{log_id}/download", headers=manager, buffered=False)
    assert resp.status_code == 200 and resp.is_streamed
    assert resp.headers["Content-Type"] == "application/gzip"
    assert resp.headers["Content-Length"] == str(len(PAYLOAD))
    assert resp.headers["Content-Disposition"] == f'attachment; filename="{name}"'
    assert_security_headers(resp)
    assert b"".join(resp.response) == PAYLOAD
    resp.close()


def test_an_encrypted_backup_is_listed_with_its_decrypt_command_and_downloads_as_the_age_file(
    client: FlaskClient, manager: dict[str, str], secured: Secured
) -> None:
    name = "DB_Backup_2026-11-24_01-00.sql.gz.age"
    sealed = b"age-encryption.org/v1\n" + PAYLOAD  # the bytes as stored; the console never decrypts
    log_id = seed(secured.url, NOW, file_name=name, google_drive_file_id=stored_locally(secured, name, sealed))
    [row] = [r for r in client.get("/api/logs", headers=manager).get_json()["items"] if r["id"] == log_id]
    assert row["encrypted"] is True and row["downloadable"] is True
    assert row["decrypt_command"] == f"age -d -i key.txt {name} | gunzip | psql -X -v ON_ERROR_STOP=1 -d EMPTY_DB_URL"
    resp = client.get(f"/api/backups/{log_id}/download", headers=manager)
    assert resp.status_code == 200 and resp.data == sealed
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert resp.headers["Content-Disposition"] == f'attachment; filename="{name}"'


def test_each_backup_lists_its_copies_per_target(
    client: FlaskClient, manager: dict[str, str], secured: Secured
) -> None:
    # An hour ahead: first on the newest-first page whatever other tests seeded.
    log_id = seed(secured.url, NOW + timedelta(hours=1), status="failed", failure_reason="not every target: s3: 403")
    with psycopg.connect(secured.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO backup_copies (backup_log_id, target, file_id, status) VALUES (%s, 'local', 'x', 'success'),"
            " (%s, 's3', NULL, 'failed')",
            (log_id, log_id),
        )
    items = client.get("/api/logs?status=failed", headers=manager).get_json()["items"]
    [row] = [r for r in items if r["id"] == log_id]
    assert row["copies"] == [
        {"target": "local", "status": "success", "deleted": False},
        {"target": "s3", "status": "failed", "deleted": False},
    ]


def test_a_download_over_cloud_runs_http1_limit_goes_without_content_length(
    client: FlaskClient, manager: dict[str, str], secured: Secured, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dbbackup.console import api as console_api

    monkeypatch.setattr(console_api, "CONTENT_LENGTH_LIMIT", len(PAYLOAD) - 1)  # as a file over 32 MiB
    log_id = seed(secured.url, NOW, google_drive_file_id=stored_locally(secured, "big.sql.gz"))
    resp = client.get(f"/api/backups/{log_id}/download", headers=manager)
    assert resp.status_code == 200 and "Content-Length" not in resp.headers and resp.data == PAYLOAD


def test_download_refuses_what_has_no_file(client: FlaskClient, manager: dict[str, str], secured: Secured) -> None:
    url = secured.url
    gone = seed(url, NOW, google_drive_file_id=f"{FOLDER}/never-written.sql.gz")
    cases = {
        "failed": seed(url, NOW, status="failed", failure_reason="boom"),
        "running": seed(url, NOW, status="in_progress"),
        "deleted": seed(url, NOW, google_drive_file_id=stored_locally(secured, "x.sql.gz"), deleted_at=NOW),
        "missing row": str(uuid.uuid4()),
        "missing in storage": gone,
    }
    for name, log_id in cases.items():
        resp = client.get(f"/api/backups/{log_id}/download", headers=manager)
        assert resp.status_code == 404, name
        assert resp.is_json and "error" in resp.get_json()
    for bad in ("not-a-uuid", "1", "00000000-0000-0000-0000-00000000000g", "'%20OR%201=1"):
        resp = client.get(f"/api/backups/{bad}/download", headers=manager)
        assert resp.status_code == 400 and resp.get_json()["field"] == "id", bad


def test_download_and_drive_links_from_google_drive(
    client: FlaskClient,
    manager: dict[str, str],
    secured: Secured,
    drive_fake: DriveFake,
    drive_user: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in drive_env(drive_fake, drive_user).items():
        monkeypatch.setenv(key, value)
    storage = make_drive_storage(drive_fake, drive_user)
    data = PAYLOAD * 2  # several 256 KiB download ranges
    stored = storage.put(storage.ensure_folder(FOLDER), "db_drive.sql.gz", [data])
    log_id = seed(
        secured.url,
        NOW,
        file_name=stored.name,
        google_drive_file_id=stored.id,
        google_drive_path=f"{FOLDER}/{stored.name}",
        file_size_bytes=stored.size,
    )
    resp = client.get(f"/api/backups/{log_id}/download", headers=manager)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    assert resp.data == data and resp.headers["Content-Length"] == str(len(data))
    row = client.get("/api/logs", headers=manager).get_json()["items"][0]
    assert row["drive_url"] == f"https://drive.google.com/file/d/{stored.id}/view"
    assert row["google_drive_path"] == f"{FOLDER}/db_drive.sql.gz"
    storage.delete(stored.id)
    assert client.get(f"/api/backups/{log_id}/download", headers=manager).status_code == 404
    with psycopg.connect(secured.url) as conn:
        conn.execute("UPDATE backup_logs SET deleted_at = now() WHERE id = %s", (log_id,))
    row = client.get("/api/logs", headers=manager).get_json()["items"][0]
    assert row["deleted"] is True and row["drive_url"] is None  # no link to a file that is gone


# --- settings -------------------------------------------------------------------------------


def config_value(url: str, key: str) -> str | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT config_value FROM invoice_configurations WHERE config_key = %s", (key,)).fetchone()
    return row[0] if row else None


def test_config_reads_the_three_settings(client: FlaskClient, manager: dict[str, str]) -> None:
    resp = client.get("/api/config", headers=manager)
    assert resp.status_code == 200
    assert resp.get_json() == {
        "backup_folder_path": "MyDrive/DatabaseBackups",
        "backup_notification_email": "pega2023test@gmail.com",
        "backup_enabled": True,
    }


@pytest.mark.parametrize(
    ("key", "value", "stored", "previous"),
    [
        ("backup_folder_path", "MyDrive/Backups/Nightly", "MyDrive/Backups/Nightly", "MyDrive/DatabaseBackups"),
        ("backup_folder_path", "id:1AbC-d_e", "id:1AbC-d_e", "MyDrive/DatabaseBackups"),
        ("backup_notification_email", "ops@example.com", "ops@example.com", "pega2023test@gmail.com"),
        ("backup_enabled", False, "false", True),
    ],
)
def test_config_change_is_written_and_logged(
    client: FlaskClient,
    secured: Secured,
    supabase: SupabaseJwksFake,
    caplog: pytest.LogCaptureFixture,
    key: str,
    value: Any,
    stored: str,
    previous: Any,
) -> None:
    token = supabase.mint(MANAGER)
    with caplog.at_level(logging.INFO, logger="dbbackup.console"):
        resp = client.put(f"/api/config/{key}", json={"value": value}, headers=auth(token))
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json() == {"key": key, "value": value, "previous": previous}
    assert config_value(secured.url, key) == stored
    assert client.get("/api/config", headers=auth(token)).get_json()[key] == value
    lines = [r.getMessage() for r in caplog.records if r.name == "dbbackup.console" and key in r.getMessage()]
    assert len(lines) == 1
    assert f"by user {MANAGER} (manager)" in lines[0] and " at 20" in lines[0]
    assert f"{json.dumps(previous)} -> {json.dumps(value)}" in lines[0]
    assert token not in caplog.text and secured.env["SUPABASE_JWT_SECRET"] not in caplog.text


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("backup_folder_path", ""),
        ("backup_folder_path", "MyDrive//Backups"),
        ("backup_folder_path", "MyDrive/../etc"),
        ("backup_folder_path", "MyDrive/bad\u0000name"),
        ("backup_folder_path", 42),
        ("backup_folder_path", None),
        ("backup_notification_email", "not-an-address"),
        ("backup_notification_email", "a@b"),
        ("backup_notification_email", "ops@example.com\nBcc: x@evil.example"),
        ("backup_notification_email", ["ops@example.com"]),
        ("backup_notification_email", "x" * 250 + "@example.com"),
        ("backup_enabled", "false"),
        ("backup_enabled", 0),
        ("backup_enabled", None),
    ],
)
def test_config_refuses_invalid_values(
    client: FlaskClient, manager: dict[str, str], secured: Secured, key: str, value: Any
) -> None:
    before = config_value(secured.url, key)
    resp = client.put(f"/api/config/{key}", json={"value": value}, headers=manager)
    assert resp.status_code == 400, (key, value)
    assert resp.get_json()["field"] == "value" and "\n" not in resp.get_json()["error"]
    assert config_value(secured.url, key) == before


def test_config_refuses_bad_bodies_and_unknown_keys(
    client: FlaskClient, manager: dict[str, str], secured: Secured
) -> None:
    put = "/api/config/backup_enabled"
    assert client.put(put, data=b"{not json", headers=manager | {"Content-Type": "application/json"}).status_code == 400
    assert client.put(put, json={"value": True, "extra": 1}, headers=manager).get_json()["field"] == "extra"
    assert client.put(put, json=["value", True], headers=manager).status_code == 400
    assert client.put(put, data=b'{"value": true}', headers=manager | {"Content-Type": "text/plain"}).status_code == 415
    resp = client.put("/api/config/backup_secret_key", json={"value": "x"}, headers=manager)
    assert resp.status_code == 404 and resp.is_json
    assert config_value(secured.url, "backup_secret_key") is None


# --- Run Backup Now, status -----------------------------------------------------------------


def test_run_backup_now_takes_the_manual_path(client: FlaskClient, manager: dict[str, str], secured: Secured) -> None:
    resp = client.post("/api/backups", headers=manager)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["status"] == "success" and set(body) >= {"backup_log_id", "file_name", "file_size_bytes", "md5"}
    assert (secured.root / body["path"]).stat().st_size == body["file_size_bytes"]
    with psycopg.connect(secured.url) as conn:
        row = conn.execute(
            "SELECT backup_type, status, triggered_by FROM backup_logs WHERE id = %s", (body["backup_log_id"],)
        ).fetchone()
    assert row == ("manual", "success", MANAGER)
    listed = client.get("/api/logs", headers=manager).get_json()["items"][0]
    assert listed["id"] == body["backup_log_id"] and listed["downloadable"]
    download = client.get(f"/api/backups/{body['backup_log_id']}/download", headers=manager)
    assert download.status_code == 200 and gzip.decompress(download.data).startswith(b"--")


def test_run_backup_now_is_rate_limited(
    client: FlaskClient, manager: dict[str, str], secured: Secured, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MANUAL_BACKUP_INTERVAL_SECONDS", "300")
    assert client.post("/api/backups", json={}, headers=manager).status_code == 200
    again = client.post("/api/backups", headers=manager)
    assert again.status_code == 429 and 290 <= int(again.headers["Retry-After"]) <= 300
    assert "error" in again.get_json()
    with psycopg.connect(secured.url) as conn:
        assert conn.execute("SELECT count(*) FROM backup_logs").fetchone() == (1,)


def test_run_backup_now_answers_409_while_a_backup_runs(
    client: FlaskClient, manager: dict[str, str], secured: Secured
) -> None:
    with psycopg.connect(secured.url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (BACKUP_LOCK_KEY,))
        resp = client.post("/api/backups", headers=manager)
        assert resp.status_code == 409 and resp.get_json()["status"] == "busy"
    with psycopg.connect(secured.url) as conn:
        assert conn.execute("SELECT count(*) FROM backup_logs").fetchone() == (0,)


def test_run_backup_now_takes_no_options(client: FlaskClient, manager: dict[str, str], secured: Secured) -> None:
    for body in ({"trigger": "scheduled"}, {"triggered_by": ADMIN}, [1]):
        resp = client.post("/api/backups", json=body, headers=manager)
        assert resp.status_code == 400 and resp.get_json()["field"] == "body", body
    with psycopg.connect(secured.url) as conn:
        assert conn.execute("SELECT count(*) FROM backup_logs").fetchone() == (0,)


def test_status_reports_the_monitoring_figures(
    client: FlaskClient, manager: dict[str, str], logs: dict[str, str]
) -> None:
    resp = client.get("/api/status", headers=manager)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["last_success_id"] == logs["recent"] and body["consecutive_failures"] == 0
    assert body["success_rate_7d"] == 50.0 and body["attempts_7d"] == 2  # recent + failed; running not counted
    assert set(body) >= {"last_success_at", "success_rate_30d", "healthy"}
    assert_security_headers(resp)


@pytest.fixture
def auth_disabled(monkeypatch: pytest.MonkeyPatch, secured: Secured) -> Iterator[None]:
    monkeypatch.setenv("AUTH_MODE", "disabled")
    yield


def test_auth_disabled_is_announced_to_the_page(client: FlaskClient, auth_disabled: None) -> None:
    assert client.get("/api/client-config").get_json()["auth_mode"] == "disabled"
    assert client.get("/api/me").get_json() == {"subject": "auth-disabled", "role": "auth-disabled"}


def test_static_files_are_typed_by_extension_and_only_plain_files_of_the_folder(
    client: FlaskClient, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dbbackup.console import api as console_api

    folder = tmp_path / "console_static"
    (folder / "sub").mkdir(parents=True)
    files = {"logo.svg": "image/svg+xml", "icon.png": "image/png", "favicon.ico": "image/x-icon"}
    for name in files:
        (folder / name).write_bytes(b"<" + name.encode() + b">")
    (folder / "sub" / "inner.js").write_text("x")
    (folder / "notes.txt").write_text("not a page file")
    secret = tmp_path / "secret.js"
    secret.write_text("the outside")
    (folder / "link.js").symlink_to(secret)
    monkeypatch.setattr(console_api, "STATIC", folder)
    for name, kind in files.items():
        resp = client.get(f"/static/{name}")
        assert (
            resp.status_code == 200
            and resp.headers["Content-Type"] == kind
            and resp.data == b"<" + name.encode() + b">"
        )
    for name in ("notes.txt", "link.js", "sub", "sub/inner.js", "sub%2Finner.js"):
        assert client.get(f"/static/{name}").status_code == 404, name


def test_a_backups_contents_are_its_manifest_shrink_warnings_and_last_drill(
    client: FlaskClient, manager: dict[str, str], secured: Secured
) -> None:
    from psycopg.types.json import Jsonb

    manifest = {
        "tables": {"public.invoices": {"rows": 100, "bytes": 4000}, "App Data.Orders EU": {"rows": 0, "bytes": 0}}
    }
    warnings = ["public.invoices: 5,000 → 100 rows since yesterday's backup"]
    log_id = seed(
        secured.url,
        NOW,
        manifest=Jsonb(manifest),
        shrink_warnings=Jsonb(warnings),
        verify_status="passed",
        verified_at=NOW,
        verify_detail="restored",
    )
    body = client.get(f"/api/backups/{log_id}", headers=manager).get_json()
    assert body["manifest"] == manifest and body["shrink_warnings"] == warnings
    assert body["verify_status"] == "passed" and body["verified_at"][-6:] in ("+01:00", "+02:00")
    assert client.get("/api/backups/not-a-uuid", headers=manager).status_code == 400
    assert client.get(f"/api/backups/{uuid.uuid4()}", headers=manager).status_code == 404
    status = client.get("/api/status", headers=manager).get_json()
    assert status["retention"] == {"retention_days": 15, "keep_min": 3, "keep_weekly": 0, "keep_monthly": 0}


# --- hostile input: always a JSON 4xx with the security headers -----------------------------


@pytest.mark.parametrize("path", ["/api/logs", "/api/logs.csv"])
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("to=9999-12-31", "to"),
        ("from=9999-12-31", "from"),
        ("from=0000-01-01", "from"),
        ("from=0001-01-01", "from"),
        ("page=" + "9" * 20, "page"),
        ("per_page=" + "1" * 20, "per_page"),
    ],
)
def test_dates_and_numbers_past_the_calendar_are_a_json_400(
    client: FlaskClient, manager: dict[str, str], path: str, query: str, field: str
) -> None:
    if path.endswith(".csv") and field in ("page", "per_page"):
        field = field  # the export refuses paging parameters outright: still a 400 naming it
    resp = client.get(f"{path}?{query}", headers=manager)
    assert resp.status_code == 400 and resp.is_json, (path, query, resp.get_data(as_text=True)[:200])
    assert resp.get_json()["field"] == field and "\n" not in resp.get_json()["error"]
    assert_security_headers(resp)


@pytest.mark.parametrize(
    ("key", "body"),
    [
        ("backup_folder_path", b'{"value": "MyDrive/\\ud800"}'),
        ("backup_folder_path", b'{"value": "MyDrive/\\udfff\\ud800x"}'),
        ("backup_notification_email", b'{"value": "a@b.com\\u0000"}'),
        ("backup_notification_email", b'{"value": "a\\ud800@b.com"}'),
    ],
)
def test_settings_with_lone_surrogates_or_nul_are_a_json_400(
    client: FlaskClient, manager: dict[str, str], secured: Secured, key: str, body: bytes
) -> None:
    before = config_value(secured.url, key)
    resp = client.put(f"/api/config/{key}", data=body, headers=manager | {"Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.is_json, resp.get_data(as_text=True)[:200]
    assert resp.get_json()["field"] == "value" and "\n" not in resp.get_json()["error"]
    assert_security_headers(resp)
    assert config_value(secured.url, key) == before


def test_csv_neutralises_formulas_after_every_separator_a_spreadsheet_may_split_on(
    client: FlaskClient, manager: dict[str, str], secured: Secured
) -> None:
    seed(secured.url, NOW, google_drive_path="MyDrive/x;=1+2;@SUM(1+1)", file_name="a,+b; -c.sql.gz")
    seed(secured.url, NOW, status="failed", failure_reason="pg_dump failed;\t=cmd|' /C calc'!A0, @x")
    text = client.get("/api/logs.csv", headers=manager).get_data(as_text=True)
    cells = [cell for row in csv.reader(io.StringIO(text)) for cell in row]
    assert "MyDrive/x;'=1+2;'@SUM(1+1)" in cells and "a,'+b; '-c.sql.gz" in cells
    live = re.compile(r"(^|[;,]) *[=+\-@\t\r]")
    assert [c for c in cells if live.search(c)] == []


@pytest.mark.parametrize("path", ["/x%0Ay", "/api/logs%0D%0A", "/favicon.ico", "/robots.txt"])
def test_paths_flasks_router_cannot_match_get_the_consoles_json_404(client: FlaskClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 404 and resp.is_json, resp.get_data(as_text=True)[:100]
    assert_security_headers(resp)
