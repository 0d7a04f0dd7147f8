"""Restore and "Verify now" in a real browser: Debian's chromium driven by Playwright, against the
``backup_console`` function served on 127.0.0.1 with a real PostgreSQL, a real backup in a local
folder, RESTORE_TARGETS naming throwaway databases, the SendGrid fake for alerts and the
Supabase Auth fake for signing in. One server and one browser for the module (each test costs
seconds); screenshots go under pytest's basetemp, and with UPDATE_SCREENSHOTS=1 the restore
dialog's is copied to docs/console-restore.png."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fakes.auth_people import MANAGER, auth_env
from fakes.jwks_fake import SupabaseJwksFake
from fakes.oidc_fake import GoogleCertsFake
from fakes.sendgrid_fake import FakeSendGrid
from fakes.supabase_auth_fake import PASSWORD, SupabaseAuthFake
from support.db import with_params
from support.paths import ROOT

CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
if not CHROMIUM and os.environ.get("DBBACKUP_REQUIRE_BROWSER") == "1":
    pytest.fail("DBBACKUP_REQUIRE_BROWSER=1 but Debian's chromium is not installed", pytrace=False)
if not CHROMIUM:
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

pytest_plugins = ["fakes.auth_fixtures"]

SOURCE = ROOT / "functions" / "backup_console" / "main.py"
OPS = "ops@example.com"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


@dataclass
class Site:
    url: str
    db: str
    auth: SupabaseAuthFake
    sendgrid: FakeSendGrid
    targets: dict[str, str]  # name -> URL
    backup_id: str
    file_name: str
    sealed_id: str  # an encrypted backup (the console has no identity)
    shots: Path

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db) as conn:
            return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def _database(admin: str, name: str, sql: str | None = None) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_params(admin, dbname=name)
    if sql:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]
    return url


@pytest.fixture(scope="module")
def site(
    pg_admin_url: str,
    app_db_template: str,
    google_certs: GoogleCertsFake,
    supabase: SupabaseJwksFake,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Site]:
    from functions_framework import create_app
    from werkzeug.serving import make_server

    from dbbackup.settings import Settings
    from dbbackup.wiring import backup_job

    tag = f"{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    names = {"app": f"t_rb_app_{tag}", "staging": f"t_rb_staging_{tag}", "busy": f"t_rb_busy_{tag}"}
    names |= {"verify": f"t_rb_verify_{tag}"}
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{names["app"]}" TEMPLATE "{app_db_template}"')
    url = with_params(pg_admin_url, dbname=names["app"])
    targets = {
        "staging": _database(pg_admin_url, names["staging"]),
        "busy": _database(pg_admin_url, names["busy"], "CREATE TABLE precious (id int)"),
        "itself": url,
    }
    verify = _database(pg_admin_url, names["verify"])
    work = tmp_path_factory.mktemp("restore_console")
    auth = SupabaseAuthFake(supabase)
    sendgrid = FakeSendGrid().start()
    try:
        env = auth_env(google_certs, supabase, url, work / "store") | {
            "MANUAL_BACKUP_INTERVAL_SECONDS": "0",
            "SUPABASE_URL": auth.url,
            "SUPABASE_ANON_KEY": auth.anon_key,
            "RESTORE_TARGETS": (
                f'{{"staging": "{targets["staging"]}", "busy": "{targets["busy"]}", "itself": "{url}"}}'
            ),
            "VERIFY_DATABASE_URL": verify,
            "SENDGRID_API_KEY": sendgrid.api_key,
            "SENDGRID_API_HOST": sendgrid.url,
            "ALERT_FROM_EMAIL": "backups@example.com",
        }
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "UPDATE invoice_configurations SET config_value = %s WHERE config_key = 'backup_notification_email'",
                (OPS,),
            )
        with pytest.MonkeyPatch.context() as mp:
            for key in ("AUTH_MODE", "K_SERVICE"):
                mp.delenv(key, raising=False)
            for key, value in env.items():
                mp.setenv(key, value)
            outcome = backup_job(Settings.from_env(env)).run("manual", triggered_by="seed")
            assert outcome.status == "success", outcome.reason
            with psycopg.connect(url, autocommit=True) as conn:
                sealed = conn.execute(
                    "INSERT INTO backup_logs (backup_type, status, file_name, file_size_bytes, google_drive_file_id,"
                    " started_at, completed_at) VALUES ('manual', 'success', 'DB_Backup_sealed.sql.gz.age', 10,"
                    " 'sealed.age', %s, %s) RETURNING id::text",
                    (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 0, 1, tzinfo=UTC)),
                ).fetchone()
            assert sealed is not None
            server = make_server("127.0.0.1", 0, create_app("backup_console", str(SOURCE)), threaded=True)
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
            try:
                yield Site(
                    f"http://127.0.0.1:{server.server_port}/",
                    url,
                    auth,
                    sendgrid,
                    targets,
                    outcome.backup_log_id,
                    outcome.file_name or "",
                    sealed[0],
                    tmp_path_factory.mktemp("restore_screenshots"),
                )
            finally:
                server.shutdown()
    finally:
        auth.stop()
        sendgrid.stop()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            for name in names.values():
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def page(site: Site) -> Iterator[Page]:
    """One signed-in page for the module; the tests run in order, each from the logs dialog."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        page = context.new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
        page.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
        page.goto(site.url)
        page.get_by_label("E-mail").fill("manager@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Configurations")).to_be_visible()
        yield page
        html = page.content()
        assert problems == []
        assert not any(u in html for u in site.targets.values()), "a target's URL reached the page"
        browser.close()


def open_logs(page: Page) -> None:
    if not page.locator("#logs-dialog").is_visible():
        page.get_by_role("button", name="View Logs").click()
    expect(page.locator("#logs-table")).not_to_have_attribute("aria-busy", "true")


def restore_dialog(page: Page, site: Site, backup_id: str, name: str) -> Any:
    open_logs(page)
    page.locator(f"#logs-body tr[data-id='{backup_id}']").get_by_role("button", name=f"Restore… {name}").click()
    dialog = page.get_by_role("dialog", name=f"Restore {name}")
    expect(dialog).to_be_visible()
    return dialog


def test_restore_into_a_target_starts_only_after_its_name_is_typed(page: Page, site: Site) -> None:
    dialog = restore_dialog(page, site, site.backup_id, site.file_name)
    submit = dialog.get_by_role("button", name="Restore", exact=True)
    dialog.get_by_label("Restore into").select_option("itself")
    expect(dialog.locator("#restore-danger")).to_contain_text("the backed-up database itself")
    page.screenshot(path=str(site.shots / "restore-into-itself.png"))
    dialog.get_by_label("Restore into").select_option("staging")
    expect(dialog.locator("#restore-danger")).to_be_hidden()
    expect(dialog.locator("#restore-note")).to_contain_text("staging must be empty")
    dialog.get_by_label("Type staging to confirm").fill("Staging")
    expect(submit).to_be_disabled()
    dialog.get_by_label("Type staging to confirm").fill("staging")
    expect(submit).to_be_enabled()
    page.screenshot(path=str(site.shots / "restore-dialog.png"))
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        shutil.copy(site.shots / "restore-dialog.png", ROOT / "docs" / "console-restore.png")
    submit.click()
    expect(dialog.locator("#restore-state")).to_contain_text("Restored", timeout=60_000)
    expect(page.locator("#toasts .toast.success").filter(has_text="Restored")).to_contain_text("into staging")
    [(status, target, who)] = site.rows("SELECT status, target, requested_by FROM restore_logs")
    assert (status, target, who) == ("success", "staging", MANAGER)
    with psycopg.connect(site.targets["staging"]) as conn:
        assert conn.execute("SELECT count(*) FROM public.user_profiles").fetchone()[0] > 0
    dialog.get_by_role("button", name="Cancel").click()


def test_a_failed_restore_shows_its_reason_alerts_and_is_logged(page: Page, site: Site) -> None:
    dialog = restore_dialog(page, site, site.backup_id, site.file_name)
    dialog.get_by_label("Restore into").select_option("busy")
    dialog.get_by_label("Type busy to confirm").fill("busy")
    dialog.get_by_role("button", name="Restore", exact=True).click()
    expect(dialog.locator("#restore-error")).to_contain_text("already holds 1 table")
    [(status, reason)] = site.rows("SELECT status, failure_reason FROM restore_logs WHERE target = 'busy'")
    assert status == "failed" and "already holds" in reason
    [mail] = [m for m in site.sendgrid.sent if "Restore Failed" in m.subject]
    assert mail.to == [OPS] and "busy" in mail.text and site.targets["busy"] not in mail.text
    dialog.get_by_role("button", name="Cancel").click()
    # An encrypted backup: the console holds no identity, and the dialog says why it cannot restore.
    sealed = restore_dialog(page, site, site.sealed_id, "DB_Backup_sealed.sql.gz.age")
    expect(sealed.locator("#restore-unavailable")).to_contain_text("BACKUP_AGE_IDENTITY_SECRET")
    expect(sealed.get_by_role("button", name="Restore", exact=True)).to_be_hidden()
    sealed.get_by_role("button", name="Cancel").click()


def test_verify_now_shows_the_verdict_and_the_badge(page: Page, site: Site) -> None:
    open_logs(page)
    row = page.locator(f"#logs-body tr[data-id='{site.backup_id}']")
    row.get_by_role("button", name=f"Verify now {site.file_name}").click()
    passed = page.locator("#toasts .toast.success").filter(has_text="Verify passed")
    expect(passed).to_contain_text(site.file_name, timeout=60_000)
    row = page.locator(f"#logs-body tr[data-id='{site.backup_id}']")
    expect(row.locator(".badge.verify.passed")).to_have_text("Verified")
    page.screenshot(path=str(site.shots / "verified-badge.png"))
    assert site.rows("SELECT verify_status FROM backup_logs WHERE id = %s", (site.backup_id,)) == [("passed",)]
