"""No secret is ever logged, stored, returned or e-mailed (issue 6): every failure path of the
backup (foundation), Drive, cleanup and auth runs through the real functions with known secret
values, and none of them may appear in the captured log records, stdout/stderr, backup_logs
rows, HTTP answers or the mails the SendGrid fake received."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from functions_framework import create_app
from test_alerts import OPS, alert_env, failing_pg_dump

from fakes import drive_env
from fakes.auth_people import AUDIENCE, CLERK, MANAGER, SCHEDULER_SA
from fakes.drive_fake import DriveFake
from fakes.jwks_fake import SupabaseJwksFake
from fakes.oidc_fake import GoogleCertsFake
from fakes.sendgrid_fake import FakeSendGrid
from support.cli import run_cli
from support.db import OwnerDb, with_params
from support.paths import FIXTURES, ROOT
from support.supabase_roles import ensure_api_roles

pytest_plugins = ["fakes.auth_fixtures", "fakes.fixtures"]  # fixtures.sendgrid

BACKUP = ROOT / "functions" / "database_backup" / "main.py"
CLEANUP = ROOT / "functions" / "cleanup_old_backups" / "main.py"


@pytest.fixture
def supabase_owner_db(owner_db: OwnerDb) -> OwnerDb:
    """A Supabase-like database reached with a password, owned by a non-superuser."""
    ensure_api_roles(owner_db.admin_url)
    with psycopg.connect(owner_db.admin_url, autocommit=True) as conn:
        conn.execute((FIXTURES / "supabase_auth.sql").read_text())  # type: ignore[arg-type]
        conn.execute(f"GRANT USAGE ON SCHEMA auth TO {owner_db.role}")  # as Supabase's postgres has
    with psycopg.connect(owner_db.url, autocommit=True) as conn:
        conn.execute((FIXTURES / "supabase_app.sql").read_text())  # type: ignore[arg-type]
    run_cli(["migrate"], owner_db.url, check=True)
    with psycopg.connect(owner_db.url, autocommit=True) as conn:
        conn.execute(
            "UPDATE invoice_configurations SET config_value = %s WHERE config_key = 'backup_notification_email'",
            (OPS,),
        )
    return owner_db


def test_no_secret_leaks_from_any_failure_path(
    supabase_owner_db: OwnerDb,
    sendgrid: FakeSendGrid,
    google_certs: GoogleCertsFake,
    supabase: SupabaseJwksFake,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    db = supabase_owner_db
    drive = DriveFake().start()
    try:
        user_creds = drive.authorized_user("owner@example.com")
        robot_creds = drive.service_account_key("robot@project.iam.gserviceaccount.com")
        manager = supabase.mint(MANAGER)
        manager_hs = supabase.mint(MANAGER, kid=None)
        scheduler = google_certs.mint(AUDIENCE, SCHEDULER_SA)
        clerk = supabase.mint(CLERK)
        pem_body = robot_creds["private_key"].splitlines()[5]  # a line of the key itself
        secrets = {
            "database password": db.password,
            "SendGrid key": sendgrid.api_key,
            "JWT secret": supabase.jwt_secret,
            "Drive refresh token": user_creds["refresh_token"],
            "Drive client secret": user_creds["client_secret"],
            "service account key": pem_body,
            "manager token": manager,
            "manager HS256 token": manager_hs,
            "scheduler token": scheduler,
            "clerk token": clerk,
        }
        base = {
            "DATABASE_URL": db.url,
            "BACKUP_LOCAL_ROOT": str(tmp_path / "store"),
            "SCHEDULER_SERVICE_ACCOUNT": SCHEDULER_SA,
            "SCHEDULER_AUDIENCE": AUDIENCE,
            "GOOGLE_CERTS_URL": google_certs.certs_url,
            "SUPABASE_JWT_SECRET": supabase.jwt_secret,
            "SUPABASE_JWKS_URL": supabase.jwks_url,
            "MANUAL_BACKUP_INTERVAL_SECONDS": "0",
            **alert_env(sendgrid),
        }
        for key in ("AUTH_MODE", "K_SERVICE"):
            monkeypatch.delenv(key, raising=False)
        answers: list[str] = []

        def call(function: str, body: Any, token: str | None, **env: str) -> int:
            with monkeypatch.context() as m:
                for key, value in (base | env).items():
                    m.setenv(key, value)
                source, target = (
                    (BACKUP, "database_backup") if function == "backup" else (CLEANUP, "cleanup_old_backups")
                )
                client = create_app(target, str(source)).test_client()
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                resp = client.post("/", data=data, headers=headers, content_type="application/json")
                answers.append(f"{resp.status_code} {dict(resp.headers)} {resp.get_data(as_text=True)}")
                return resp.status_code

        caplog.set_level("DEBUG")
        # Foundation: pg_dump fails echoing its connection string and password; the database is unreachable.
        assert call("backup", {"trigger": "manual"}, manager, PG_DUMP_PATH=str(failing_pg_dump(tmp_path))) == 500
        closed = with_params(db.url, port="9")
        assert call("backup", {"trigger": "scheduled"}, scheduler, DATABASE_URL=closed) == 500
        # Alerts that cannot be sent (SendGrid down) are logged in full: still redacted.
        sendgrid.fail_next(500, 500, 500, 401)
        assert call("backup", {"trigger": "manual"}, manager_hs, PG_DUMP_PATH=str(failing_pg_dump(tmp_path))) == 500
        # Drive: a service account without quota; every upload chunk failing; the token endpoint refusing.
        assert call("backup", {"trigger": "scheduled"}, scheduler, **drive_env(drive, robot_creds)) == 500
        drive.fail(503, nth=1, method="PUT", path="/upload/", times=99)
        assert call("backup", {"trigger": "scheduled"}, scheduler, **drive_env(drive, user_creds)) == 500
        revoked = user_creds | {"refresh_token": user_creds["refresh_token"][:-4] + "XXXX"}
        secrets["revoked refresh token"] = revoked["refresh_token"]
        assert call("backup", {"trigger": "scheduled"}, scheduler, **drive_env(drive, revoked)) == 500
        # Cleanup: Drive failing under it, and the database unreachable.
        drive.fail(500, nth=1, method="GET", path="/", times=99)
        assert call("cleanup", {}, scheduler, **drive_env(drive, user_creds)) == 500
        assert call("cleanup", {}, scheduler, DATABASE_URL=closed) == 500
        # Auth: refused tokens, and bodies that quote secrets back at us.
        assert call("backup", {"trigger": "manual"}, clerk) == 403
        assert call("backup", {"trigger": "manual"}, manager[:-3] + "AAA") == 401
        assert call("backup", {"trigger": "manual"}, manager, SUPABASE_JWKS_URL="http://127.0.0.1:9/jwks") == 401
        assert call("cleanup", {}, manager) == 403
        assert call("backup", {supabase.jwt_secret: 1, db.password: 2}, manager) == 400
        assert call("backup", {"trigger": manager}, manager) == 400
        assert call("backup", b"\x00" + scheduler.encode(), scheduler) == 400
        # Supabase Storage (BACKUP_SUPABASE_STORAGE): its endpoint out of reach after the dump.
        secrets["Supabase Storage S3 secret key"] = storage_key = "supabase-s3-secret-0f9e8d7c6b5a"
        storage = {
            "BACKUP_SUPABASE_STORAGE": "true",
            "SUPABASE_S3_ENDPOINT": "http://127.0.0.1:9/storage/v1/s3",
            "SUPABASE_S3_REGION": "eu-central-1",
            "SUPABASE_S3_ACCESS_KEY_ID": "supabase-s3-key-id",
            "SUPABASE_S3_SECRET_ACCESS_KEY": storage_key,
        }
        assert call("backup", {"trigger": "manual"}, manager, **storage) == 500
        assert call("cleanup", {}, scheduler, **storage, DATABASE_URL=closed) == 500
        # Configuration errors quoting a key.
        assert (
            call("backup", {"trigger": "manual"}, manager, ALERT_FROM_EMAIL="", SENDGRID_API_KEY=sendgrid.api_key)
            == 500
        )
    finally:
        drive.stop()

    out, err = capfd.readouterr()
    with psycopg.connect(db.url) as conn:
        rows = [json.dumps(r[0]) for r in conn.execute("SELECT row_to_json(b) FROM backup_logs b").fetchall()]
    mails = [json.dumps(r.body) for r in sendgrid.requests if r.body]
    assert len(rows) >= 4 and mails, "the failure paths must have written rows and sent mails"
    places = {"log records": caplog.text, "stdout/stderr": out + err, "answers": "\n".join(answers),
              "backup_logs": "\n".join(rows), "mails": "\n".join(mails)}  # fmt: skip
    leaks = [f"{name} in {where}" for name, value in secrets.items() for where, text in places.items() if value in text]
    assert not leaks, leaks
