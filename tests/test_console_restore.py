"""Restore and "Verify now" from the console (``console.restores``), through functions-framework's
own Flask app, against a real PostgreSQL: a real backup restored by psql into throwaway target
databases named in RESTORE_TARGETS, the SendGrid fake for a failed restore's alert."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import pytest
from flask.testing import FlaskClient
from functions_framework import create_app

from fakes.auth_people import MANAGER, Secured
from fakes.jwks_fake import SupabaseJwksFake
from fakes.sendgrid_fake import FakeSendGrid
from support.db import DbFactory
from support.paths import ROOT

pytest_plugins = ["fakes.auth_fixtures", "fakes.fixtures"]

SOURCE = ROOT / "functions" / "backup_console" / "main.py"
OPS = "ops@example.com"


@dataclass
class Setup:
    client: FlaskClient
    headers: dict[str, str]
    secured: Secured
    staging: str  # empty
    scratch: str  # replace: true, holds a leftover table
    busy: str  # not empty, no replace
    backup_id: str

    def restores(self) -> list[tuple]:
        with psycopg.connect(self.secured.url) as conn:
            return conn.execute(
                "SELECT target, status, requested_by, tables_restored, rows_restored, failure_reason,"
                " backup_log_id::text FROM restore_logs ORDER BY started_at"
            ).fetchall()

    def restore(self, target: str, confirm: str | None = None, backup_id: str | None = None) -> tuple[int, dict]:
        resp = self.client.post(
            f"/api/backups/{backup_id or self.backup_id}/restore",
            json={"target": target, "confirm": target if confirm is None else confirm},
            headers=self.headers,
        )
        return resp.status_code, resp.get_json()


def tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT schemaname || '.' || tablename FROM pg_tables"
                " WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
            )
        ]


@pytest.fixture
def setup(
    secured: Secured,
    supabase: SupabaseJwksFake,
    make_db: DbFactory,
    sendgrid: FakeSendGrid,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Setup]:
    staging = make_db()
    scratch = make_db(sql="CREATE TABLE leftover (id int); CREATE SCHEMA old; CREATE TABLE old.t (x int)")
    busy = make_db(sql="CREATE TABLE precious (id int); INSERT INTO precious VALUES (1)")
    targets = (
        f'{{"staging": "{staging}", "scratch": {{"url": "{scratch}", "replace": true}},'
        f' "busy": "{busy}", "itself": "{secured.url}"}}'
    )
    env = {
        "RESTORE_TARGETS": targets,
        "SENDGRID_API_KEY": sendgrid.api_key,
        "SENDGRID_API_HOST": sendgrid.url,
        "ALERT_FROM_EMAIL": "backups@example.com",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with psycopg.connect(secured.url, autocommit=True) as conn:
        conn.execute(
            "UPDATE invoice_configurations SET config_value = %s WHERE config_key = 'backup_notification_email'", (OPS,)
        )
    client = create_app("backup_console", str(SOURCE)).test_client()
    headers = {"Authorization": f"Bearer {supabase.mint(MANAGER)}"}
    backup = client.post("/api/backups", headers=headers)
    assert backup.status_code == 200, backup.get_json()
    yield Setup(client, headers, secured, staging, scratch, busy, backup.get_json()["backup_log_id"])


def test_the_targets_are_listed_by_name_with_the_source_marked_never_a_url(setup: Setup) -> None:
    resp = setup.client.get("/api/restore-targets", headers=setup.headers)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["targets"] == [
        {"name": "staging", "replace": False, "is_source": False, "reachable": True},
        {"name": "scratch", "replace": True, "is_source": False, "reachable": True},
        {"name": "busy", "replace": False, "is_source": False, "reachable": True},
        {"name": "itself", "replace": False, "is_source": True, "reachable": True},
    ]
    assert body["can_decrypt"] is False and "BACKUP_AGE_IDENTITY_SECRET" in body["decrypt_problem"]
    text = resp.get_data(as_text=True)
    for url in (setup.staging, setup.scratch, setup.busy, setup.secured.url):
        assert url not in text and url.split("/")[-1].split("?")[0] not in text


def test_a_restore_into_an_empty_target_after_typing_its_name_is_logged(setup: Setup) -> None:
    status, body = setup.restore("staging")
    assert status == 200, body
    assert body["status"] == "success" and body["target"] == "staging" and body["tables"] >= 1
    assert "public.user_profiles" in tables(setup.staging)
    with psycopg.connect(setup.secured.url) as a, psycopg.connect(setup.staging) as b:
        query = "SELECT count(*) FROM public.user_profiles"
        assert a.execute(query).fetchone() == b.execute(query).fetchone()
    [row] = setup.restores()
    assert row == ("staging", "success", MANAGER, body["tables"], body["rows"], None, setup.backup_id)
    shown = setup.client.get(f"/api/restores/{body['restore_id']}", headers=setup.headers).get_json()
    assert shown["status"] == "success" and shown["target"] == "staging" and shown["reason"] is None
    assert shown["progress"]["bytes_read"] == shown["progress"]["total_bytes"] > 0
    assert setup.client.get("/api/restores", headers=setup.headers).get_json()["items"][0] == shown
    assert setup.client.get(f"/api/restores/{uuid.uuid4()}", headers=setup.headers).status_code == 404
    assert setup.client.get("/api/restores/nope", headers=setup.headers).status_code == 400


def test_a_replace_target_is_cleared_and_restored_in_one_go(setup: Setup) -> None:
    status, body = setup.restore("scratch")
    assert status == 200, body
    found = tables(setup.scratch)
    assert "public.leftover" not in found and "old.t" not in found and "public.user_profiles" in found


def test_refusals_write_nothing(setup: Setup) -> None:
    cases = [
        (setup.restore("staging", confirm="Staging"), 400, "confirm"),
        (setup.restore("staging", confirm=""), 400, "confirm"),
        (setup.restore("production"), 404, "target"),
        (setup.restore("staging", backup_id=str(uuid.uuid4())), 404, None),
        (setup.restore("staging", backup_id="1 OR 1=1"), 400, "id"),
    ]
    for (status, body), expected, field in cases:
        assert status == expected, body
        assert body.get("field") == field and "restore_id" not in body
    for bad in ({"target": "staging"}, {"target": "staging", "confirm": "staging", "url": "x"}, [1], "staging"):
        resp = setup.client.post(f"/api/backups/{setup.backup_id}/restore", json=bad, headers=setup.headers)
        assert resp.status_code == 400 and resp.get_json()["field"] == "body", bad
    assert setup.restores() == [] and tables(setup.staging) == []


def test_a_non_empty_target_fails_logged_alerted_and_untouched(
    setup: Setup, sendgrid: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MANUAL_BACKUP_INTERVAL_SECONDS", "300")
    status, body = setup.restore("busy")
    assert status == 409 and body["status"] == "failed" and "already holds 1 table" in body["reason"]
    assert tables(setup.busy) == ["public.precious"]
    [row] = setup.restores()
    assert row[:3] == ("busy", "failed", MANAGER) and "already holds" in row[5]
    [mail] = [m for m in sendgrid.sent if "Restore Failed" in m.subject]
    assert mail.to == [OPS] and "busy" in mail.text and setup.backup_id in mail.text
    assert setup.busy not in mail.text and "already holds" in mail.text
    again = setup.client.post(
        f"/api/backups/{setup.backup_id}/restore", json={"target": "busy", "confirm": "busy"}, headers=setup.headers
    )
    assert again.status_code == 429 and int(again.headers["Retry-After"]) > 0
    assert len(setup.restores()) == 1


def test_one_restore_into_a_target_at_a_time(setup: Setup) -> None:
    from dbbackup.pg.restore_log import LOCK_PREFIX

    with psycopg.connect(setup.secured.url, autocommit=True) as other:  # another instance's restore
        other.execute("SELECT pg_advisory_lock(hashtext(%s))", (LOCK_PREFIX + "staging",))
        status, body = setup.restore("staging")
        assert status == 409 and "a restore into staging is running" in body["error"]
    assert setup.restores() == [] and tables(setup.staging) == []
    assert setup.restore("staging")[0] == 200  # released: the next one runs


def test_an_encrypted_backup_needs_the_consoles_identity(setup: Setup) -> None:
    with psycopg.connect(setup.secured.url, autocommit=True) as conn:
        sealed = conn.execute(
            "INSERT INTO backup_logs (backup_type, status, file_name, google_drive_file_id, started_at)"
            " VALUES ('manual', 'success', 'x.sql.gz.age', 'x.sql.gz.age', %s) RETURNING id::text",
            (datetime.now(UTC),),
        ).fetchone()[0]
    status, body = setup.restore("staging", backup_id=sealed)
    assert status == 409 and "BACKUP_AGE_IDENTITY_SECRET" in body["error"]
    assert setup.restores() == []


def test_verify_now_runs_the_drill_on_that_backup_and_the_log_shows_the_badge(
    setup: Setup, make_db: DbFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERIFY_DATABASE_URL", make_db())
    resp = setup.client.post(f"/api/backups/{setup.backup_id}/verify", headers=setup.headers)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["verify_status"] == "passed", body["detail"]
    assert body["backup_log_id"] == setup.backup_id and body["restored_into"].startswith("scratch database")
    assert body["tables"]["public.user_profiles"]["expected"] == body["tables"]["public.user_profiles"]["restored"]
    [row] = [
        r
        for r in setup.client.get("/api/logs", headers=setup.headers).get_json()["items"]
        if r["id"] == setup.backup_id
    ]
    assert row["verify_status"] == "passed" and row["verified_at"]
    missing = setup.client.post(f"/api/backups/{uuid.uuid4()}/verify", headers=setup.headers)
    assert missing.status_code == 404


def test_a_failed_replace_restore_leaves_the_target_as_it_was(setup: Setup) -> None:
    with psycopg.connect(setup.secured.url) as conn:
        stored = conn.execute(
            "SELECT google_drive_file_id FROM backup_logs WHERE id = %s", (setup.backup_id,)
        ).fetchone()
    path = setup.secured.root / stored[0]
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) * 2 // 3])  # cut short: the gzip trailer and pg_dump's marker are gone
    status, body = setup.restore("scratch")
    assert status == 500 and body["status"] == "failed", body
    assert tables(setup.scratch) == ["old.t", "public.leftover"]  # the drops were rolled back with the restore
    assert setup.restores()[0][1] == "failed"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[1]", "must be a JSON object"),
        ("{", "not valid JSON"),
        ('{"bad name!": "postgresql://x/y"}', "target name 'bad name!'"),
        ('{"a": {"url": "postgresql://x/y", "replace": "yes"}}', '"replace" must be true or false'),
        ('{"a": 5}', "must be a URL string"),
        ('{"a": "postgresql://u:secret-pw@h/d?sslmode=bogus x"}', "target 'a' is not a valid PostgreSQL URL"),
    ],
)
def test_restore_targets_are_checked_naming_the_target_never_its_url(value: str, message: str) -> None:
    from dbbackup.errors import ConfigError
    from dbbackup.restore.targets import parse_restore_targets

    with pytest.raises(ConfigError) as caught:
        parse_restore_targets(value)
    assert message in str(caught.value) and "secret-pw" not in str(caught.value)
    assert [
        (t.name, t.replace)
        for t in parse_restore_targets('{"a": "dbname=x", "b": {"url": "dbname=y", "replace": true}}')
    ] == [
        ("a", False),
        ("b", True),
    ]


def test_restore_logs_are_read_by_managers_only_and_written_by_nobody_signed_in(secured: Secured) -> None:
    """Row level security as backup_logs' (migrations 003, 011): through the Supabase API roles."""
    import json

    from fakes.auth_people import CLERK

    with psycopg.connect(secured.url, autocommit=True) as conn:
        conn.execute("INSERT INTO restore_logs (target, status, requested_by) VALUES ('staging', 'failed', 'x')")

        def as_user(role: str, sub: str | None) -> None:
            conn.execute("RESET ROLE")
            conn.execute(f"SET ROLE {role}")
            claims = json.dumps({"sub": sub, "role": role}) if sub else ""
            conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (claims,))

        as_user("authenticated", MANAGER)
        assert conn.execute("SELECT count(*) FROM restore_logs").fetchone() == (1,)
        for stmt in ("UPDATE restore_logs SET status = 'success'", "DELETE FROM restore_logs", "TRUNCATE restore_logs"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(stmt)
        as_user("authenticated", CLERK)
        assert conn.execute("SELECT count(*) FROM restore_logs").fetchone() == (0,)
        as_user("anon", None)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM restore_logs")
        conn.execute("RESET ROLE")


def test_verify_now_of_a_damaged_backup_fails_recorded_and_alerted(
    setup: Setup, sendgrid: FakeSendGrid, make_db: DbFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERIFY_DATABASE_URL", make_db())
    with psycopg.connect(setup.secured.url) as conn:
        stored = conn.execute(
            "SELECT google_drive_file_id FROM backup_logs WHERE id = %s", (setup.backup_id,)
        ).fetchone()
    path = setup.secured.root / stored[0]
    path.write_bytes(path.read_bytes()[:-20])  # the gzip trailer is gone
    body = setup.client.post(f"/api/backups/{setup.backup_id}/verify", headers=setup.headers).get_json()
    assert body["verify_status"] == "failed", body
    with psycopg.connect(setup.secured.url) as conn:
        row = conn.execute("SELECT verify_status FROM backup_logs WHERE id = %s", (setup.backup_id,)).fetchone()
    assert row == ("failed",)
    [mail] = [m for m in sendgrid.sent if "Restore Drill Failed" in m.subject]
    assert mail.to == [OPS] and f"Verify now from the backup console, by {MANAGER}" in mail.text


def test_verify_now_without_a_place_to_restore_answers_409_and_keeps_the_verdict(
    setup: Setup, make_db: DbFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERIFY_DATABASE_URL", make_db())
    url = f"/api/backups/{setup.backup_id}/verify"
    assert setup.client.post(url, headers=setup.headers).get_json()["verify_status"] == "passed"
    monkeypatch.delenv("VERIFY_DATABASE_URL")
    monkeypatch.setattr("dbbackup.pg.binaries.has_server", lambda: False)  # as deployed: psql only
    resp = setup.client.post(url, headers=setup.headers)
    assert resp.status_code == 409 and "VERIFY_DATABASE_URL" in resp.get_json()["error"]
    with psycopg.connect(setup.secured.url) as conn:
        row = conn.execute("SELECT verify_status FROM backup_logs WHERE id = %s", (setup.backup_id,)).fetchone()
    assert row == ("passed",)


def test_a_restore_row_left_in_progress_is_failed_by_the_next_and_the_end_survives_a_lost_connection(
    setup: Setup, sendgrid: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(setup.secured.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO restore_logs (backup_log_id, file_name, target, replace_target, requested_by)"
            " VALUES (%s, 'old.sql.gz', 'staging', false, 'someone')",
            (setup.backup_id,),
        )
    from dbbackup.console import restores

    real = restores.restore

    def cut_request_connection(*args: object, **kwargs: object) -> object:
        # The request's connection dies while the restore runs (an idle timeout, a pooler).
        with psycopg.connect(setup.secured.url, autocommit=True) as conn:
            conn.execute(
                # This database's lock holders only: pg_locks is the whole server's, where another
                # test worker's backup holds its own advisory lock.
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid()"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        return real(*args, **kwargs)

    monkeypatch.setattr(restores, "restore", cut_request_connection)
    status, body = setup.restore("staging")
    assert status == 200, body
    rows = setup.restores()
    assert [(r[0], r[1], r[2], r[5]) for r in rows] == [
        ("staging", "failed", "someone", restores.INTERRUPTED),
        ("staging", "success", MANAGER, None),
    ]
    [mail] = [m for m in sendgrid.sent if "Restore Failed" in m.subject]
    assert "interrupted" in mail.text


def test_a_bad_restore_targets_stops_only_the_restore_routes(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    from dbbackup.settings import Settings

    monkeypatch.setenv("RESTORE_TARGETS", '{"staging": "postgresql://u:hunter2@h/db", "bad name!": "x"}')
    Settings.from_env()  # what the backup, the cleanup and the drill read: not refused
    listed = setup.client.get("/api/restore-targets", headers=setup.headers)
    assert listed.status_code == 500 and "RESTORE_TARGETS is invalid" in listed.get_json()["error"]
    assert "hunter2" not in listed.get_data(as_text=True)
    status, body = setup.restore("staging")
    assert status == 500 and "RESTORE_TARGETS" in body["error"] and setup.restores() == []
    assert setup.client.get("/api/logs", headers=setup.headers).status_code == 200  # the rest works
