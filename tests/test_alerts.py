"""Failure alerts, sent by the real ``sendgrid`` client to a SendGrid v3 fake on 127.0.0.1: the
spec's e-mail field for field, no secret in it, an outage that never masks the failure, the
recipient rules, log-only without a key, consecutive failures and the size warning."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from dbbackup.core.backup import BackupJob
from dbbackup.errors import DatabaseUnavailable
from dbbackup.http.endpoints import run_backup
from dbbackup.pg import binaries as pgbin
from dbbackup.pg.embedded import EmbeddedPostgres
from dbbackup.settings import Settings
from dbbackup.wiring import alerter_for, backup_job
from fakes._http import DROPPED
from fakes.sendgrid_fake import FakeSendGrid
from fakes.webhook_fake import TOKEN, FakeWebhook
from support.cli import run_cli
from support.db import OwnerDb
from support.dumps import failing_pg_dump

pytest_plugins = ["fakes.fixtures"]  # sendgrid, webhook

MOMENT = datetime(2026, 11, 25, 1, 0, 30, tzinfo=UTC)  # 02:00:30 in Berlin
FOLDER = "MyDrive/DatabaseBackups"
OPS = "ops@example.com"
SENDER = "backups@example.com"


def alert_env(fake: FakeSendGrid, **extra: str) -> dict[str, str]:
    return {
        "SENDGRID_API_KEY": fake.api_key,
        "SENDGRID_API_HOST": fake.url,
        "ALERT_FROM_EMAIL": SENDER,
        "BACKUP_ENVIRONMENT": "staging",
        "BACKUP_TIMEZONE": "Europe/Berlin",
        **extra,
    }


@pytest.fixture
def app_db(owner_db: OwnerDb) -> OwnerDb:
    """A migrated database reached with a password (the secret the alerts must never show)."""
    run_cli(["migrate"], owner_db.url, check=True)
    with psycopg.connect(owner_db.url, autocommit=True) as conn:
        conn.execute(
            "UPDATE invoice_configurations SET config_value = %s WHERE config_key = 'backup_notification_email'",
            (OPS,),
        )
    return owner_db


def insert_success(url: str, started: datetime, size: int, name: str = "DB_Backup_2026-11-24_02-00.sql.gz") -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO backup_logs (backup_type, status, file_name, file_size_bytes, started_at, completed_at)"
            " VALUES ('automatic', 'success', %s, %s, %s, %s)",
            (name, size, started, started + timedelta(minutes=1)),
        )


def make_job(url: str, tmp_path: Path, fake: FakeSendGrid, **env: str) -> BackupJob:
    settings = Settings.from_env(
        {"DATABASE_URL": url, "BACKUP_LOCAL_ROOT": str(tmp_path / "store"), **alert_env(fake, **env)}
    )
    return backup_job(settings, clock=lambda: MOMENT, alerter=alerter_for(settings, sleep=lambda _: None))


def test_a_failed_backup_sends_the_spec_email_field_for_field(app_db: OwnerDb, tmp_path: Path, sendgrid) -> None:  # type: ignore[no-untyped-def]
    insert_success(app_db.url, MOMENT - timedelta(days=1), 123_456)
    outcome = make_job(app_db.url, tmp_path, sendgrid, PG_DUMP_PATH=str(failing_pg_dump(tmp_path))).run("scheduled")
    assert outcome.status == "failed"
    [request] = sendgrid.requests
    assert (request.method, request.path, request.status) == ("POST", "/v3/mail/send", 202)
    assert request.headers["Authorization"] == f"Bearer {sendgrid.api_key}"
    [mail] = sendgrid.sent
    assert mail.to == [OPS] and mail.sender == SENDER
    assert mail.subject == "[Database Backup] Backup Failed - 2026-11-25"
    name = "DB_Backup_2026-11-25_02-00.sql.gz"
    assert outcome.file_name == name and "***" in outcome.reason
    # The spec's template (database-backup-spec.md, section 10.2), copied here line for line with
    # its placeholders in brackets; each placeholder becomes this backup's value.
    spec_template = (
        "Database Backup Failure Alert\n"
        "\n"
        "Date & Time: [backup_date] [backup_time]\n"
        "Backup Type: [automatic/manual]\n"
        "Status: Failed\n"
        "\n"
        "Failure Details:\n"
        "[detailed_error_message]\n"
        "\n"
        "File Information:\n"
        "- File Name: [file_name]\n"
        "- Expected Size: [file_size]\n"
        "- Google Drive Path: [drive_path]\n"
        "\n"
        "System Information:\n"
        "- Environment: [production/staging]\n"
        "- Backup ID: [backup_log_id]\n"
        "\n"
        "Please investigate and ensure backups are functioning correctly.\n"
        "\n"
        "---\n"
        "This is an automated message from Aamodha Operations Portal.\n"
    )
    values = {
        "[backup_date] [backup_time]": "2026-11-25 02:00:30 Europe/Berlin",
        "[automatic/manual]": "automatic",
        "[detailed_error_message]": outcome.reason,
        "[file_name]": name,
        "[file_size]": "about 120.6 KB (123,456 bytes) (the last successful backup)",
        "[drive_path]": f"{FOLDER}/{name}",
        "[production/staging]": "staging",
        "[backup_log_id]": str(outcome.backup_log_id),
    }
    expected = spec_template
    for placeholder, value in values.items():
        expected = expected.replace(placeholder, value)
    assert mail.text == expected
    assert mail.html.startswith("<!DOCTYPE html>") and "<h2>Database Backup Failure Alert</h2>" in mail.html
    for heading in ("Failure Details:", "File Information:", "System Information:"):
        assert f"<h3>{heading}</h3>" in mail.html
    for label, value in [
        ("Date &amp; Time", "2026-11-25 02:00:30 Europe/Berlin"),
        ("Backup Type", "automatic"),
        ("File Name", name),
        ("Google Drive Path", f"{FOLDER}/{name}"),
        ("Environment", "staging"),
        ("Backup ID", outcome.backup_log_id),
    ]:
        assert f"<b>{label}:</b> {value}<" in mail.html, label
    assert "This is an automated message from Aamodha Operations Portal." in mail.html


def test_the_portal_name_in_every_alert_is_alert_organization(app_db: OwnerDb, tmp_path: Path, sendgrid) -> None:  # type: ignore[no-untyped-def]
    job = make_job(
        app_db.url, tmp_path, sendgrid, PG_DUMP_PATH=str(failing_pg_dump(tmp_path)), ALERT_ORGANIZATION="Acme  Ops"
    )
    assert job.run("scheduled").status == "failed"
    [mail] = sendgrid.sent
    assert mail.text.endswith("\n---\nThis is an automated message from Acme Ops.\n")
    assert "Aamodha" not in mail.text + mail.html


def test_no_password_or_key_reaches_the_email_the_logs_or_the_answer(
    app_db: OwnerDb,
    tmp_path: Path,
    sendgrid,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    script = failing_pg_dump(tmp_path)
    settings = Settings.from_env(
        {"DATABASE_URL": app_db.url, "BACKUP_LOCAL_ROOT": str(tmp_path), "PG_DUMP_PATH": str(script)}
        | alert_env(sendgrid)
    )
    with caplog.at_level(logging.DEBUG):
        body, status = run_backup(settings, "manual")
    assert status == 500 and "connection to postgresql://app:***@db.example.com" in body["failure_reason"]
    raw_requests = json.dumps([r.body for r in sendgrid.requests])
    assert len(sendgrid.sent) == 1
    for secret in (app_db.password, sendgrid.api_key):
        assert secret not in raw_requests
        assert secret not in caplog.text
        assert secret not in json.dumps(body)


def test_a_sendgrid_outage_never_masks_the_backups_own_failure(app_db: OwnerDb, tmp_path: Path, sendgrid) -> None:  # type: ignore[no-untyped-def]
    script = failing_pg_dump(tmp_path)
    settings = Settings.from_env(
        {"DATABASE_URL": app_db.url, "BACKUP_LOCAL_ROOT": str(tmp_path), "PG_DUMP_PATH": str(script)}
        | alert_env(sendgrid)
    )
    sendgrid.fail_next(503, 500, 503)  # every attempt of this alert (3, with real 1 s / 2 s backoff)
    body, status = run_backup(settings, "scheduled")
    assert status == 500 and body["status"] == "failed" and body["failure_reason"].startswith("pg_dump")
    assert [r.status for r in sendgrid.requests] == [503, 500, 503]
    with psycopg.connect(app_db.url) as conn:
        row = conn.execute("SELECT status, failure_reason FROM backup_logs").fetchone()
    assert row == ("failed", body["failure_reason"])


@pytest.mark.parametrize(
    ("statuses", "attempts", "delivered"),
    [
        ((429,), 2, True),  # rate limited: retried, then accepted
        ((502, 503), 3, True),
        ((413,), 1, False),  # an HTML error page: not JSON, not retried, still no crash
        ((400,), 1, False),
    ],
)
def test_sendgrid_errors_are_retried_only_when_a_retry_can_help(
    app_db: OwnerDb,
    tmp_path: Path,
    sendgrid,
    statuses: tuple[int, ...],
    attempts: int,
    delivered: bool,  # type: ignore[no-untyped-def]
) -> None:
    sendgrid.fail_next(*statuses)
    outcome = make_job(app_db.url, tmp_path, sendgrid, PG_DUMP_PATH=str(failing_pg_dump(tmp_path))).run("manual")
    assert outcome.status == "failed" and outcome.reason.startswith("pg_dump")
    assert len(sendgrid.requests) == attempts
    assert len(sendgrid.sent) == (1 if delivered else 0)


def test_a_revoked_key_is_logged_and_the_failure_stands(
    app_db: OwnerDb,
    tmp_path: Path,
    sendgrid,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    job = make_job(
        app_db.url, tmp_path, sendgrid, PG_DUMP_PATH=str(failing_pg_dump(tmp_path)), SENDGRID_API_KEY="SG.revoked.key"
    )
    with caplog.at_level(logging.INFO):
        outcome = job.run("scheduled")
    assert outcome.status == "failed" and [r.status for r in sendgrid.requests] == [401]
    assert "SendGrid answered 401: The provided authorization grant is invalid" in caplog.text
    assert "SG.revoked.key" not in caplog.text
    # The content still reaches the log, so the failure is never silent; the key is rejected, not missing.
    assert "[Database Backup] Backup Failed - 2026-11-25" in caplog.text
    assert "ALERT (log only, sendgrid did not deliver it)" in caplog.text and "no SENDGRID_API_KEY" not in caplog.text


def test_sendgrid_unreachable_is_retried_then_logged(app_db: OwnerDb, tmp_path: Path, sendgrid, caplog) -> None:  # type: ignore[no-untyped-def]
    job = make_job(app_db.url, tmp_path, sendgrid, PG_DUMP_PATH=str(failing_pg_dump(tmp_path)))
    sendgrid.stop()  # connection refused
    with caplog.at_level(logging.WARNING):
        outcome = job.run("scheduled")
    assert outcome.status == "failed"
    assert caplog.text.count("SendGrid unreachable") == 3 and "NOT sent after 3 attempt(s)" in caplog.text


def test_an_invalid_recipient_is_a_clear_log_error_and_the_fallback_gets_the_alert(
    app_db: OwnerDb,
    tmp_path: Path,
    sendgrid,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    with psycopg.connect(app_db.url, autocommit=True) as conn:
        conn.execute(
            "UPDATE invoice_configurations SET config_value = 'ops at example'"
            " WHERE config_key = 'backup_notification_email'"
        )
    job = make_job(
        app_db.url,
        tmp_path,
        sendgrid,
        PG_DUMP_PATH=str(failing_pg_dump(tmp_path)),
        ALERT_FALLBACK_EMAIL="oncall@example.com",
    )
    with caplog.at_level(logging.ERROR):
        job.run("scheduled")
    assert "backup_notification_email='ops at example' is not a valid e-mail address" in caplog.text
    assert [m.to for m in sendgrid.sent] == [["oncall@example.com"]]


def test_the_recipient_is_read_at_send_time(app_db: OwnerDb, tmp_path: Path, sendgrid) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "pg_dump_edits_config"
    real = pgbin.tool("pg_dump")
    # The manager changes the address while the backup runs; the alert goes to the new one.
    script.write_text(
        f'#!/bin/sh\nif [ "$1" = "--version" ]; then exec "{real}" --version; fi\n'
        'for a in "$@"; do case "$a" in --dbname=*) DB="${a#--dbname=}";; esac; done\n'
        f'"{pgbin.tool("psql")}" -X -q -d "$DB" -c "UPDATE invoice_configurations SET config_value = '
        "'new@example.com' WHERE config_key = 'backup_notification_email'\"\n"
        "exit 3\n"
    )
    script.chmod(0o755)
    make_job(app_db.url, tmp_path, sendgrid, PG_DUMP_PATH=str(script)).run("scheduled")
    assert [m.to for m in sendgrid.sent] == [["new@example.com"]]


def test_without_a_sendgrid_key_alerts_go_to_the_log_only(
    app_db: OwnerDb, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": app_db.url,
            "BACKUP_LOCAL_ROOT": str(tmp_path),
            "PG_DUMP_PATH": str(failing_pg_dump(tmp_path)),
        }
    )
    with caplog.at_level(logging.WARNING):
        body, status = run_backup(settings, "scheduled")
    assert status == 500 and body["failure_reason"].startswith("pg_dump")
    assert "ALERT (log only, no SENDGRID_API_KEY) to ops@example.com: [Database Backup] Backup Failed" in caplog.text
    assert app_db.password not in caplog.text


def test_the_nth_failure_in_a_row_says_so_in_subject_and_body(app_db: OwnerDb, tmp_path: Path, sendgrid) -> None:  # type: ignore[no-untyped-def]
    insert_success(app_db.url, MOMENT - timedelta(days=3), 5000)
    job = make_job(app_db.url, tmp_path, sendgrid, PG_DUMP_PATH=str(failing_pg_dump(tmp_path)))
    for _ in range(3):
        assert job.run("scheduled").status == "failed"
    subjects = [m.subject for m in sendgrid.sent]
    assert subjects == [
        "[Database Backup] Backup Failed - 2026-11-25",
        "[Database Backup] Backup Failed - 2026-11-25 (2 failures in a row)",
        "[Database Backup] Backup Failed - 2026-11-25 (3 failures in a row)",
    ]
    assert "This is the 3rd failed backup in a row; the last successful backup was on 2026-11-22 02:01" in (
        sendgrid.sent[2].text
    )
    assert "in a row" not in sendgrid.sent[0].text


def test_a_run_killed_before_it_could_report_is_alerted_by_the_next_run(
    app_db: OwnerDb,
    tmp_path: Path,
    sendgrid,  # type: ignore[no-untyped-def]
) -> None:
    with psycopg.connect(app_db.url, autocommit=True) as conn:
        stale = conn.execute(
            "INSERT INTO backup_logs (backup_type, status, file_name, google_drive_path)"
            " VALUES ('manual', 'in_progress', 'DB_Backup_2026-11-24_02-00.sql.gz', %s) RETURNING id",
            (FOLDER,),
        ).fetchone()[0]
    outcome = make_job(app_db.url, tmp_path, sendgrid).run("scheduled")
    assert outcome.status == "success", outcome.reason
    [mail] = sendgrid.sent
    assert f"- Backup ID: {stale}\n" in mail.text and "Failure Details:\ninterrupted:" in mail.text
    assert "Backup Type: manual\n" in mail.text


def test_a_backup_much_smaller_than_the_previous_is_flagged_and_warned(
    app_db: OwnerDb, tmp_path: Path, sendgrid
) -> None:  # type: ignore[no-untyped-def]
    insert_success(app_db.url, MOMENT - timedelta(days=1), 50_000_000)
    outcome = make_job(app_db.url, tmp_path, sendgrid).run("scheduled")
    assert outcome.status == "success"
    with psycopg.connect(app_db.url) as conn:
        warning = conn.execute(
            "SELECT size_warning FROM backup_logs WHERE id = %s", (outcome.backup_log_id,)
        ).fetchone()
    assert warning[0].startswith(f"{outcome.file_size_bytes:,} bytes is ") and "50,000,000 bytes" in warning[0]
    [mail] = sendgrid.sent
    assert mail.subject == "[Database Backup] Backup Size Warning - 2026-11-25"
    assert f"- Backup ID: {outcome.backup_log_id}\n" in mail.text
    assert mail.text.startswith("Database Backup Size Warning\n")
    # A normal-sized next backup is not flagged.
    again = make_job(app_db.url, tmp_path, sendgrid).run("scheduled")
    with psycopg.connect(app_db.url) as conn:
        assert conn.execute(
            "SELECT size_warning FROM backup_logs WHERE id = %s", (again.backup_log_id,)
        ).fetchone() == (None,)
    assert len(sendgrid.sent) == 1


def test_a_wrong_database_password_alerts_the_fallback_address_without_the_password(
    password_server: EmbeddedPostgres,
    tmp_path: Path,
    sendgrid,  # type: ignore[no-untyped-def]
) -> None:
    role, bad = f"u_{uuid.uuid4().hex[:8]}", "hunter2-wrong-secret"
    with psycopg.connect(password_server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'the-right-one'")
    url = f"postgresql://{role}:{bad}@127.0.0.1:{password_server.port}/postgres"
    settings = Settings.from_env({"DATABASE_URL": url} | alert_env(sendgrid, ALERT_FALLBACK_EMAIL="oncall@example.com"))
    with pytest.raises(DatabaseUnavailable):
        backup_job(settings, clock=lambda: MOMENT, alerter=alerter_for(settings, sleep=lambda _: None)).run("scheduled")
    [mail] = sendgrid.sent
    assert mail.to == ["oncall@example.com"] and mail.subject == "[Database Backup] Backup Failed - 2026-11-25"
    assert "Failure Details:\n" in mail.text and "password authentication failed" in mail.text
    assert "- Backup ID: none (the backup could not start)" in mail.text
    assert bad not in json.dumps([r.body for r in sendgrid.requests])


def test_alert_settings_are_validated_naming_the_variable() -> None:
    base = {"DATABASE_URL": "postgresql://u@localhost/db"}
    cases = {
        "ALERT_FROM_EMAIL": {"SENDGRID_API_KEY": "SG.x"},
        "ALERT_FALLBACK_EMAIL": {"ALERT_FALLBACK_EMAIL": "nobody"},
        "SENDGRID_API_HOST": {"SENDGRID_API_HOST": "127.0.0.1:9"},
        "BACKUP_RETENTION_DAYS": {"BACKUP_RETENTION_DAYS": "0"},
        "BACKUP_KEEP_MIN": {"BACKUP_KEEP_MIN": "-1"},
        "BACKUP_MAX_AGE_HOURS": {"BACKUP_MAX_AGE_HOURS": "a day"},
    }
    from dbbackup.errors import ConfigError

    for variable, env in cases.items():
        with pytest.raises(ConfigError, match=variable):
            Settings.from_env(base | env)
    settings = Settings.from_env(base | {"SENDGRID_API_KEY": "SG.secret-key", "ALERT_FROM_EMAIL": SENDER})
    assert "SG.secret-key" not in repr(settings) and "SG.secret-key" in settings.secrets
    defaults = Settings.from_env(base)
    assert (defaults.retention_days, defaults.keep_min, defaults.max_age_hours) == (15, 3, 26)
    assert (defaults.size_warning_percent, defaults.environment, defaults.sendgrid_api_key) == (50, "production", None)


# --- the webhook channel (ALERT_WEBHOOK_URL) ------------------------------------------------------


def test_every_alert_the_email_gets_reaches_the_webhook_as_json_text(
    app_db: OwnerDb,
    tmp_path: Path,
    sendgrid: FakeSendGrid,
    webhook: FakeWebhook,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = make_job(
        app_db.url, tmp_path, sendgrid, PG_DUMP_PATH=str(failing_pg_dump(tmp_path)), ALERT_WEBHOOK_URL=webhook.hook_url
    )
    with caplog.at_level(logging.DEBUG):
        assert job.run("scheduled").status == "failed"
    [mail] = sendgrid.sent
    assert webhook.texts == [f"{mail.subject}\n\n{mail.text}"]
    [exchange] = webhook.exchanges
    assert exchange.method == "POST" and exchange.header("Content-Type") == "application/json"
    assert set(exchange.json()) == {"text"} and "Backup Failed" in webhook.texts[0]
    assert "failed" in webhook.texts[0] and "***" in webhook.texts[0]
    for secret in (app_db.password, sendgrid.api_key, TOKEN):
        assert secret not in webhook.texts[0] and secret not in caplog.text
    assert "sent to the webhook via webhook" in caplog.text


def test_the_webhook_gets_the_alert_without_sendgrid_or_a_recipient(
    app_db: OwnerDb, tmp_path: Path, webhook: FakeWebhook
) -> None:
    with psycopg.connect(app_db.url, autocommit=True) as conn:
        conn.execute(
            "UPDATE invoice_configurations SET config_value = '' WHERE config_key = 'backup_notification_email'"
        )
    settings = Settings.from_env(
        {
            "DATABASE_URL": app_db.url,
            "BACKUP_LOCAL_ROOT": str(tmp_path),
            "PG_DUMP_PATH": str(failing_pg_dump(tmp_path)),
            "ALERT_WEBHOOK_URL": webhook.hook_url,
        }
    )
    body, status = run_backup(settings, "manual")
    assert status == 500 and body["status"] == "failed"
    [text] = webhook.texts
    assert text.startswith("[Database Backup] Backup Failed - ") and "Backup Type: manual" in text


@pytest.mark.parametrize(
    ("statuses", "attempts", "delivered"),
    [
        ((429,), 2, True),  # rate limited: retried, then accepted
        ((DROPPED, 503), 3, True),  # a cut connection and a 5xx are retried too
        ((500, 502, 503), 3, False),  # retries exhausted: logged, the backup's failure stands
        ((403,), 1, False),  # a revoked or wrong token does not get better by retrying
    ],
)
def test_webhook_errors_are_retried_when_a_retry_can_help_and_never_fail_the_backup(
    app_db: OwnerDb,
    tmp_path: Path,
    sendgrid: FakeSendGrid,
    webhook: FakeWebhook,
    caplog: pytest.LogCaptureFixture,
    statuses: tuple[int, ...],
    attempts: int,
    delivered: bool,
) -> None:
    webhook.fail_next(*statuses)
    job = make_job(
        app_db.url, tmp_path, sendgrid, PG_DUMP_PATH=str(failing_pg_dump(tmp_path)), ALERT_WEBHOOK_URL=webhook.hook_url
    )
    with caplog.at_level(logging.INFO):
        outcome = job.run("scheduled")
    assert outcome.status == "failed" and outcome.reason.startswith("pg_dump")
    assert len(webhook.exchanges) == attempts and len(webhook.texts) == (1 if delivered else 0)
    assert len(sendgrid.sent) == 1  # the e-mail goes out whatever the webhook does
    if not delivered:
        assert f"to the webhook NOT sent after {attempts} attempt(s): webhook answered" in caplog.text
    assert TOKEN not in caplog.text


def test_an_unreachable_webhook_is_logged_without_its_url(
    app_db: OwnerDb, tmp_path: Path, sendgrid: FakeSendGrid, caplog: pytest.LogCaptureFixture
) -> None:
    gone = FakeWebhook()
    url = gone.hook_url
    gone.stop()  # the port is closed: connection refused
    job = make_job(app_db.url, tmp_path, sendgrid, PG_DUMP_PATH=str(failing_pg_dump(tmp_path)), ALERT_WEBHOOK_URL=url)
    with caplog.at_level(logging.WARNING):
        assert job.run("scheduled").status == "failed"
    assert caplog.text.count("webhook unreachable (ConnectionError)") == 3
    assert TOKEN not in caplog.text and len(sendgrid.sent) == 1


def test_the_webhook_url_must_be_https_except_for_localhost() -> None:
    from dbbackup.errors import ConfigError

    base = {"DATABASE_URL": "postgresql://u@localhost/db"}
    for bad in ("http://hooks.example.com/services/x", "ftp://hooks.example.com/x", "hooks.example.com/x", "https://"):
        with pytest.raises(ConfigError, match="ALERT_WEBHOOK_URL") as raised:
            Settings.from_env(base | {"ALERT_WEBHOOK_URL": bad})
        assert "services/x" not in str(raised.value)  # the URL's path may hold its token
    for good in ("https://hooks.slack.com/services/T/B/secret", "http://127.0.0.1:8080/hook", "http://localhost/h"):
        settings = Settings.from_env(base | {"ALERT_WEBHOOK_URL": good})
        assert settings.webhook_url == good and good in settings.secrets and good not in repr(settings)


# --- the spec's default recipient is replaced at deploy time (BACKUP_NOTIFICATION_EMAIL) ------------


def notification_email(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT config_value FROM invoice_configurations WHERE config_key = 'backup_notification_email'"
        ).fetchone()
    assert row is not None
    return str(row[0])


def test_a_new_deployments_first_run_replaces_the_specs_default_recipient(
    owner_db: OwnerDb, tmp_path: Path, sendgrid: FakeSendGrid
) -> None:
    run_cli(["migrate"], owner_db.url, check=True)
    assert notification_email(owner_db.url) == "pega2023test@gmail.com"  # the spec's default, as migrated
    job = make_job(
        owner_db.url,
        tmp_path,
        sendgrid,
        PG_DUMP_PATH=str(failing_pg_dump(tmp_path)),
        BACKUP_NOTIFICATION_EMAIL="oncall@example.com",
    )
    assert job.run("scheduled").status == "failed"
    assert [m.to for m in sendgrid.sent] == [["oncall@example.com"]]
    assert notification_email(owner_db.url) == "oncall@example.com"


def test_an_address_a_manager_chose_is_never_overwritten(
    app_db: OwnerDb, tmp_path: Path, sendgrid: FakeSendGrid
) -> None:
    job = make_job(
        app_db.url,
        tmp_path,
        sendgrid,
        PG_DUMP_PATH=str(failing_pg_dump(tmp_path)),
        BACKUP_NOTIFICATION_EMAIL="oncall@example.com",
    )
    job.run("scheduled")
    assert [m.to for m in sendgrid.sent] == [[OPS]] and notification_email(app_db.url) == OPS
    migrated = run_cli(["migrate"], app_db.url, check=True, BACKUP_NOTIFICATION_EMAIL="oncall@example.com")
    assert "backup_notification_email set" not in migrated.stdout and notification_email(app_db.url) == OPS


def test_migrate_applies_the_deployments_recipient(owner_db: OwnerDb) -> None:
    out = run_cli(["migrate"], owner_db.url, check=True, BACKUP_NOTIFICATION_EMAIL="oncall@example.com").stdout
    assert "backup_notification_email set to oncall@example.com (BACKUP_NOTIFICATION_EMAIL)" in out
    assert notification_email(owner_db.url) == "oncall@example.com"
    bad = run_cli(["migrate"], owner_db.url, BACKUP_NOTIFICATION_EMAIL="not an address")
    assert bad.returncode == 2 and "BACKUP_NOTIFICATION_EMAIL" in bad.stderr
