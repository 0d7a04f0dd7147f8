"""Restore and "Verify now" in a real browser: Debian's chromium driven by Playwright, against the
``backup_console`` function served on 127.0.0.1 with a real PostgreSQL, a real backup in a local
folder, RESTORE_TARGETS naming throwaway databases, the SendGrid fake for alerts and the
Supabase Auth fake for signing in. One server and one browser for the module (each test costs
seconds); screenshots go under pytest's basetemp, and with UPDATE_SCREENSHOTS=1 the restore
dialog's is copied to docs/console-restore.png."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from playwright.sync_api import Page, expect

from fakes.auth_people import MANAGER
from fakes.jwks_fake import SupabaseJwksFake
from fakes.oidc_fake import GoogleCertsFake
from fakes.sendgrid_fake import FakeSendGrid
from fakes.supabase_auth_fake import SupabaseAuthFake
from support import console_site
from support.paths import ROOT

console_site.require_chromium()

pytest_plugins = ["fakes.auth_fixtures"]

OPS = "ops@example.com"


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


@pytest.fixture(scope="module")
def site(
    pg_admin_url: str,
    app_db_template: str,
    google_certs: GoogleCertsFake,
    supabase: SupabaseJwksFake,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Site]:
    from dbbackup.settings import Settings
    from dbbackup.wiring import backup_job

    work = tmp_path_factory.mktemp("restore_console")
    with (
        console_site.database(pg_admin_url, "t_rb_app", template=app_db_template) as url,
        console_site.database(pg_admin_url, "t_rb_staging") as staging,
        console_site.database(pg_admin_url, "t_rb_busy", sql="CREATE TABLE precious (id int)") as busy,
        console_site.database(pg_admin_url, "t_rb_verify") as verify,
        console_site.running(SupabaseAuthFake(supabase)) as auth,
        FakeSendGrid() as sendgrid,
    ):
        targets = {"staging": staging, "busy": busy, "itself": url}
        env = console_site.console_env(google_certs, supabase, url, work / "store", auth) | {
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
        with console_site.environment(env):
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
            with console_site.serve_console() as console_url:
                yield Site(
                    console_url,
                    url,
                    auth,
                    sendgrid,
                    targets,
                    outcome.backup_log_id,
                    outcome.file_name or "",
                    sealed[0],
                    tmp_path_factory.mktemp("restore_screenshots"),
                )


@pytest.fixture(scope="module")
def page(site: Site) -> Iterator[Page]:
    """One signed-in page for the module; the tests run in order, each from the logs dialog."""
    with console_site.chromium() as browser:
        _, page, problems = console_site.open_page(browser, timeout_ms=15_000, viewport={"width": 1280, "height": 900})
        console_site.sign_in(page, site.url)
        expect(page.get_by_role("heading", name="Configurations")).to_be_visible()
        yield page
        html = page.content()
        assert problems == []
        assert not any(u in html for u in site.targets.values()), "a target's URL reached the page"


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
