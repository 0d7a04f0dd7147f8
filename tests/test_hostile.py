"""Hostile input: whatever the body and headers, the functions answer a 4xx JSON object with a
one-line reason (or do their job), never a 5xx or a traceback, and a refused request starts
nothing. A hypothesis property test covers bodies and headers at large."""

from __future__ import annotations

import json
import re
from typing import Any

import psycopg
import pytest
from functions_framework import create_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_alerts import alert_env

from fakes.auth_people import AUDIENCE, MANAGER, SCHEDULER_SA, Secured
from fakes.jwks_fake import SupabaseJwksFake
from fakes.oidc_fake import GoogleCertsFake
from fakes.sendgrid_fake import FakeSendGrid
from support.paths import ROOT

pytest_plugins = ["fakes.auth_fixtures"]

BACKUP = ROOT / "functions" / "database_backup" / "main.py"
CLEANUP = ROOT / "functions" / "cleanup_old_backups" / "main.py"


def logs(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM backup_logs").fetchone()[0]  # type: ignore[index]


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        (b'{"trigger": "manual"}' + b" " * 70_000, "application/json", 413),
        (b'{"trigger": "manual"}', "text/plain", 415),
        (b"trigger=manual", "application/x-www-form-urlencoded", 415),
        (b'{"trigger": 1}', "application/json", 400),
        (b'{"trigger": null}', "application/json", 400),
        (b'{"trigger": ["manual"]}', "application/json", 400),
        (b'{"trigger": "manual", "dry_run": true}', "application/json", 400),
        (b'{"trigger": "MANUAL"}', "application/json", 400),
        (b'"manual"', "application/json", 400),
        (b'{"trigger": "manual"', "application/json; charset=utf-8", 400),
        (b"[" * 20_000 + b"]" * 20_000, "application/json", 400),  # 40 KB nested past the recursion limit
        (b'{"trigger": ' + b'{"a": ' * 6_500 + b"1" + b"}" * 6_501, "application/json", 400),
    ],
)
def test_a_hostile_body_is_refused_in_one_line_and_starts_nothing(
    secured: Secured, supabase: SupabaseJwksFake, data: bytes, content_type: str, status: int
) -> None:
    client = create_app("database_backup", str(BACKUP)).test_client()
    token = supabase.mint(MANAGER)
    resp = client.post("/", data=data, content_type=content_type, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == status, resp.get_json()
    body = resp.get_json()
    assert set(body) == {"error"} and "\n" not in body["error"]
    assert logs(secured.url) == 0


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "token",
    [
        _b64(b"[" * 50_000) + "." + _b64(b"{}") + ".x",  # a header nested past the JSON parser's recursion limit
        _b64(b'{"alg":"HS256"}') + "." + _b64(b"[" * 5_000) + ".x",
        _b64(b'{"alg":"ES256","kid":{"a":1}}') + "." + _b64(b'{"sub":"x"}') + ".x",
        _b64(b'{"alg":"HS256"}') + "." + _b64(b'{"iss":"https://accounts.google.com"}') + ".x",
        _b64(b'{"alg":["HS256"]}') + "." + _b64(b'{"sub":1,"exp":"soon","aud":7}') + ".x",
        "\u00e9" * 3,
    ],
)
def test_a_token_built_to_trip_the_parsers_is_a_401(secured: Secured, token: str) -> None:
    client = create_app("database_backup", str(BACKUP)).test_client()
    resp = client.post("/", json={"trigger": "manual"}, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401, resp.get_json()
    assert set(resp.get_json()) == {"error"}


def test_the_body_limit_is_configurable(secured: Secured, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_BODY_BYTES", "16")
    client = create_app("cleanup_old_backups", str(CLEANUP)).test_client()
    assert client.post("/", json={"dry_run": True, "trigger": "scheduled"}).status_code == 413


TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
BODIES = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(
        st.sampled_from(["trigger", "dry_run", "triggered_by", "x"]),
        st.sampled_from(["manual", "scheduled", True, False, None, 0, "", [], {}]) | JSON_VALUES,
        max_size=3,
    ).map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    function=st.sampled_from(["backup", "cleanup"]),
    method=st.sampled_from(["POST", "GET", "PUT", "DELETE", "OPTIONS", "PATCH"]),
    path=st.sampled_from(["/", "/status", "/../status", "/%00", "/x" * 30]),
    body=BODIES,
    content_type=st.sampled_from(["application/json", "text/plain", "", "application/json; charset=latin-1"]) | TEXT,
    auth=st.sampled_from(["manager", "none", "garbage"]) | TEXT,
    origin=st.sampled_from(["https://app.example.com", "https://evil.example.net", "null"]) | TEXT,
)
def test_no_input_makes_a_5xx_or_a_traceback(
    secured: Secured,
    supabase: SupabaseJwksFake,
    function: str,
    method: str,
    path: str,
    body: bytes,
    content_type: str,
    auth: str,
    origin: str,
) -> None:
    source, target = (BACKUP, "database_backup") if function == "backup" else (CLEANUP, "cleanup_old_backups")
    client = create_app(target, str(source)).test_client()
    headers = {"Origin": origin}
    if auth == "manager":
        headers["Authorization"] = f"Bearer {supabase.mint(MANAGER)}"
    elif auth != "none":
        headers["Authorization"] = auth if auth != "garbage" else "Bearer eyJ.eyJ.x"
    resp = client.open(path, method=method, data=body, headers=headers, content_type=content_type)
    text = resp.get_data(as_text=True)
    assert resp.status_code < 500, (resp.status_code, text)
    assert "Traceback" not in text
    if resp.status_code >= 400:
        answer: Any = json.loads(text)
        assert isinstance(answer, dict) and "\n" not in answer.get("error", "")


@pytest.mark.parametrize(
    ("folder", "email"),
    [
        ("MyDrive/../../../etc", "ops@example.com\r\nBcc: thief@example.net"),
        ("MyDrive/Backups\x1b/x", "ops@example.com, thief@example.net"),
        ("../outside", "ops@example.com\nSubject: pwned"),
    ],
)
def test_settings_read_from_the_database_are_validated_before_use(
    secured: Secured, google_certs: GoogleCertsFake, monkeypatch: pytest.MonkeyPatch, folder: str, email: str
) -> None:
    """A folder path that climbs out of the backup root or an address smuggling a header fail the
    run (or divert the alert to ALERT_FALLBACK_EMAIL) before anything is written or sent there."""
    sendgrid = FakeSendGrid().start()
    try:
        for key, value in alert_env(sendgrid, ALERT_FALLBACK_EMAIL="oncall@example.com").items():
            monkeypatch.setenv(key, value)
        with psycopg.connect(secured.url, autocommit=True) as conn:
            for key, value in (("backup_folder_path", folder), ("backup_notification_email", email)):
                conn.execute("UPDATE invoice_configurations SET config_value = %s WHERE config_key = %s", (value, key))
        client = create_app("database_backup", str(BACKUP)).test_client()
        token = google_certs.mint(AUDIENCE, SCHEDULER_SA)
        resp = client.post("/", json={"trigger": "scheduled"}, headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 500 and "backup_folder_path" in json.dumps(resp.get_json())
        assert not secured.root.exists() or not any(p.is_file() for p in secured.root.rglob("*"))
        assert [m.to for m in sendgrid.sent] == [["oncall@example.com"]]
        assert all("thief" not in json.dumps(r.body) for r in sendgrid.requests)
    finally:
        sendgrid.stop()


def test_a_configuration_error_before_authentication_tells_an_anonymous_caller_nothing(
    secured: Secured, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Credentials pasted wrongly (a BOM-less non-JSON value that is no file): the old message quoted it.
    pasted = "client_secret=GOCSPX-not-json-secret refresh_token=1//0g-refresh-secret"
    monkeypatch.setenv("BACKUP_STORAGE", "google_drive")
    monkeypatch.setenv("GOOGLE_DRIVE_CREDENTIALS", pasted)
    client = create_app("database_backup", str(BACKUP)).test_client()
    resp = client.post("/", json={"trigger": "manual"})
    assert resp.status_code == 500
    assert resp.get_json() == {"error": "the function cannot start: see its logs", "status": "failed"}
    assert "GOOGLE_DRIVE_CREDENTIALS is neither JSON text nor the path" in caplog.text
    assert "GOCSPX-not-json-secret" not in caplog.text and "refresh-secret" not in caplog.text


def test_the_www_authenticate_header_is_printable_ascii_whatever_the_token_says(secured: Secured) -> None:
    header = _b64(json.dumps({"alg": "ES256", "kid": '中"\\x', "typ": "JWT"}).encode())
    token = f"{header}.{_b64(b'{}')}.{_b64(b'sig')}"
    resp = (
        create_app("database_backup", str(BACKUP))
        .test_client()
        .post("/", json={"trigger": "manual"}, headers={"Authorization": f"Bearer {token}"})
    )
    assert resp.status_code == 401
    value = resp.headers["WWW-Authenticate"]
    assert value.isascii() and value.isprintable() and value.count('"') % 2 == 0


def test_deployed_the_scheduler_audience_must_be_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    from dbbackup.auth.config import auth_config_from_env
    from dbbackup.errors import ConfigError

    env = {"K_SERVICE": "database-backup", "SCHEDULER_SERVICE_ACCOUNT": SCHEDULER_SA}
    with pytest.raises(ConfigError, match="SCHEDULER_AUDIENCE must be set"):
        auth_config_from_env(env)
    assert auth_config_from_env(env | {"SCHEDULER_AUDIENCE": AUDIENCE}).scheduler_audience == AUDIENCE


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("path", ["/x%0D%1B[2K%0AINFO%20dbbackup:%20backup%20succeeded%C2%85%00", "/x%0D%1B[2K"])
def test_control_characters_from_a_request_never_reach_a_log_line_raw(
    secured: Secured, caplog: pytest.LogCaptureFixture, method: str, path: str
) -> None:
    caplog.set_level("DEBUG")
    client = create_app("database_backup", str(BACKUP)).test_client()
    resp = client.open(path, method=method, json={"trigger": "manual"})
    assert resp.status_code in (401, 405) and resp.is_json, resp.get_data(as_text=True)[:100]
    lines = [r.getMessage() for r in caplog.records]
    assert any("\\x1b[2K" in line for line in lines), lines  # the path is logged, escaped
    assert [line for line in lines if re.search(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]", line)] == []
    assert logs(secured.url) == 0


@pytest.mark.parametrize("source", [BACKUP, CLEANUP])
def test_a_40_kb_body_nested_past_the_recursion_limit_is_a_400(
    secured: Secured, supabase: SupabaseJwksFake, source
) -> None:  # type: ignore[no-untyped-def]
    client = create_app(source.parent.name, str(source)).test_client()
    token = supabase.mint(MANAGER)
    for data in (b"[" * 20_000 + b"]" * 20_000, b'{"dry_run": ' + b'{"a": ' * 6_500 + b"1" + b"}" * 6_501):
        resp = client.post(
            "/", data=data, content_type="application/json", headers={"Authorization": f"Bearer {token}"}
        )
        assert resp.status_code == 400 and resp.is_json and "\n" not in resp.get_json()["error"]
    assert logs(secured.url) == 0
