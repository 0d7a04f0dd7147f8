"""The restore drill (``verify_backup``): passes, fails (alerted) and skips, on the embedded server
and on a scratch database (VERIFY_DATABASE_URL); the verdict lands on the backup's row and in
``dbbackup status``."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import psycopg
import pytest
from pyrage import x25519

from dbbackup.errors import LockBusy
from dbbackup.http.endpoints import verify_endpoint
from dbbackup.http.types import HttpRequest
from dbbackup.settings import Settings
from dbbackup.wiring import alerter_for, backup_job, drill
from fakes.sendgrid_fake import FakeSendGrid
from support.cli import run_cli
from support.db import DbFactory

pytest_plugins = ["fakes.fixtures"]  # sendgrid

OPS = "ops@example.com"


def populate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE invoice_configurations SET config_value = %s WHERE config_key = 'backup_notification_email'", (OPS,)
        )
        conn.execute('CREATE TABLE "Odd Name" (id int PRIMARY KEY, v text)')
        conn.execute("""INSERT INTO "Odd Name" SELECT g, 'v' || g FROM generate_series(1, 300) g""")


def make_settings(url: str, root: Path, sendgrid: FakeSendGrid | None = None, **env: str) -> Settings:
    alerts = (
        {"SENDGRID_API_KEY": sendgrid.api_key, "SENDGRID_API_HOST": sendgrid.url, "ALERT_FROM_EMAIL": "b@example.com"}
        if sendgrid
        else {}
    )
    return Settings.from_env({"DATABASE_URL": url, "BACKUP_LOCAL_ROOT": str(root), **alerts, **env})


def verdict(url: str, log_id: str) -> tuple:
    with psycopg.connect(url) as conn:
        return conn.execute(  # type: ignore[return-value]
            "SELECT verify_status, verify_detail, verified_at IS NOT NULL FROM backup_logs WHERE id = %s", (log_id,)
        ).fetchone()


def test_the_drill_passes_on_the_embedded_server_and_status_shows_it(migrated_url: str, tmp_path: Path) -> None:
    populate(migrated_url)
    s = make_settings(migrated_url, tmp_path)
    backup = backup_job(s).run("scheduled")
    result = drill(s).run()
    assert result.status == "passed", result.detail
    assert result.target == "embedded PostgreSQL 18" and result.backup_log_id == backup.backup_log_id
    assert result.tables is not None and result.tables["public.Odd Name"] == {"expected": 300, "restored": 300}
    status, detail, at = verdict(migrated_url, backup.backup_log_id)
    assert (status, at) == ("passed", True) and "restored with the recorded rows" in detail
    assert f"the bytes restored: recorded {backup.md5}, read {backup.md5}" in detail
    report = json.loads(run_cli(["status", "--json"], migrated_url, check=True).stdout)
    assert report["last_verified_id"] == backup.backup_log_id and report["last_verify_status"] == "passed"
    assert report["last_verified_backup_age_hours"] is not None
    assert "last restore drill:   passed" in run_cli(["status"], migrated_url, check=True).stdout


def test_on_a_scratch_database_the_drill_empties_it_first_and_passes(
    migrated_url: str, make_db: DbFactory, tmp_path: Path
) -> None:
    populate(migrated_url)
    scratch = make_db()
    with psycopg.connect(scratch, autocommit=True) as conn:
        conn.execute("CREATE TABLE leftover (id int); CREATE SCHEMA old_drill; CREATE TABLE old_drill.t (x int)")
    s = make_settings(migrated_url, tmp_path, VERIFY_DATABASE_URL=scratch, VERIFY_MAX_SQL_BYTES="1")
    backup_job(s).run("scheduled")
    result = drill(s).run()
    assert result.status == "passed", result.detail
    assert result.target == "scratch database (VERIFY_DATABASE_URL)"
    with psycopg.connect(scratch) as conn:
        names = {
            r[0] for r in conn.execute("SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace > 16384")
        }
        assert "leftover" not in names and "Odd Name" in names
        assert conn.execute('SELECT count(*) FROM "Odd Name"').fetchone() == (300,)


def test_a_backup_that_restores_with_other_counts_fails_the_drill_and_is_alerted(
    migrated_url: str, make_db: DbFactory, tmp_path: Path, sendgrid: FakeSendGrid
) -> None:
    populate(migrated_url)
    s = make_settings(migrated_url, tmp_path, sendgrid, VERIFY_DATABASE_URL=make_db())
    backup = backup_job(s, alerter=alerter_for(s, sleep=lambda _: None)).run("scheduled")
    path = tmp_path / backup.file_id
    sql = gzip.decompress(path.read_bytes())
    corrupt = gzip.compress(sql.replace(b"\n42\tv42\n", b"\n", 1))
    path.write_bytes(corrupt)
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE backup_logs SET file_size_bytes = %s, md5_checksum = %s WHERE id = %s",
            (len(corrupt), hashlib.md5(corrupt).hexdigest(), backup.backup_log_id),
        )
    result = drill(s, alerter=alerter_for(s, sleep=lambda _: None)).run()
    assert result.status == "failed"
    assert "public.Odd Name: expected 300, restored 299" in result.detail
    assert verdict(migrated_url, backup.backup_log_id)[0] == "failed"
    [mail] = sendgrid.sent
    assert mail.to == [OPS] and "Restore Drill Failed" in mail.subject and "expected 300, restored 299" in mail.text


def test_the_drill_refuses_to_use_the_backed_up_database_as_its_scratch(migrated_url: str, tmp_path: Path) -> None:
    populate(migrated_url)
    spelt_otherwise = migrated_url.replace("127.0.0.1", "localhost")
    s = make_settings(migrated_url, tmp_path, VERIFY_DATABASE_URL=spelt_otherwise)
    backup_job(s).run("scheduled")
    result = drill(s).run()
    assert result.status == "failed" and "VERIFY_DATABASE_URL is the backed-up database itself" in result.detail
    with psycopg.connect(migrated_url) as conn:  # nothing was emptied
        assert conn.execute('SELECT count(*) FROM "Odd Name"').fetchone() == (300,)


def test_the_drill_skips_for_a_stated_reason(migrated_url: str, tmp_path: Path) -> None:
    s = make_settings(migrated_url, tmp_path, VERIFY_MAX_SQL_BYTES="1000")
    assert (drill(s).run().status, drill(s).run().detail) == ("skipped", "no successful backup to verify")
    populate(migrated_url)
    backup = backup_job(s).run("scheduled")
    too_big = drill(s).run()
    assert too_big.status == "skipped" and "larger than VERIFY_MAX_SQL_BYTES (1,000)" in too_big.detail
    assert verdict(migrated_url, backup.backup_log_id)[0] == "skipped"
    key = x25519.Identity.generate()
    encrypted = make_settings(migrated_url, tmp_path, BACKUP_AGE_RECIPIENTS=str(key.to_public()))
    backup_job(encrypted).run("manual")
    no_key = drill(encrypted).run()
    assert no_key.status == "skipped" and "encrypted and no identity" in no_key.detail


def test_verify_backup_answers_the_scheduler_and_refuses_bad_bodies(migrated_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": migrated_url, "BACKUP_LOCAL_ROOT": str(tmp_path), "AUTH_MODE": "disabled"}
    bad = verify_endpoint(HttpRequest("POST", "/", {"content-type": "application/json"}, b'{"x": 1}'), env)
    assert bad.status == 400 and "unknown field" in bad.body["error"]
    ok = verify_endpoint(HttpRequest("POST", "/", {"content-type": "application/json"}, b"{}"), env)
    assert ok.status == 200 and ok.body["status"] == "skipped", ok.body


def test_a_skipped_drill_never_erases_a_verdict_and_one_drill_runs_at_a_time(
    migrated_url: str, tmp_path: Path, make_db: DbFactory
) -> None:
    populate(migrated_url)
    s = make_settings(migrated_url, tmp_path, VERIFY_DATABASE_URL=make_db())
    backup = backup_job(s).run("scheduled")
    assert drill(s).run().status == "passed"
    with psycopg.connect(migrated_url) as conn:
        before = conn.execute("SELECT verified_at FROM backup_logs WHERE id = %s", (backup.backup_log_id,)).fetchone()
    small = make_settings(migrated_url, tmp_path, VERIFY_MAX_SQL_BYTES="10")
    assert drill(small).run().status == "skipped"  # too big for the embedded server: nowhere to restore
    # Another drill holds the lock (a second manager, the weekly drill): skipped, nothing erased.
    with psycopg.connect(migrated_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (0x6462_6472_696C,))
        busy = drill(s).run()
        assert busy.status == "skipped" and "another restore drill is running" in busy.detail
        with pytest.raises(LockBusy):
            drill(s).run(backup.backup_log_id, busy_raises=True)
    assert verdict(migrated_url, backup.backup_log_id)[0] == "passed"
    with psycopg.connect(migrated_url) as conn:
        after = conn.execute("SELECT verified_at FROM backup_logs WHERE id = %s", (backup.backup_log_id,)).fetchone()
    assert after == before
