"""The managers' console in a real browser: Debian's chromium driven by Playwright, against the
``backup_console`` function served over HTTP on 127.0.0.1, a real PostgreSQL with the app's
user_profiles, the Google Drive fake as storage and a Supabase Auth fake that signs real tokens.

One browser for the module; each test opens a fresh context (no shared session) and signs in.
Screenshots of the main states go to a folder under pytest's basetemp (printed at the end);
with UPDATE_SCREENSHOTS=1 the logs screenshot is also copied to docs/console.png.
"""

from __future__ import annotations

import csv
import io
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from fakes import USER, drive_env
from fakes.auth_people import MANAGER
from fakes.drive_fake import DriveFake
from fakes.jwks_fake import SupabaseJwksFake
from fakes.oidc_fake import GoogleCertsFake
from fakes.supabase_auth_fake import PASSWORD, SupabaseAuthFake
from support import console_site
from support.paths import ROOT

console_site.require_chromium()

pytest_plugins = ["fakes.auth_fixtures"]  # google_certs, supabase (JWKS), app_db_template

TZ = ZoneInfo("Europe/Berlin")  # not UTC, so the page's time zone handling shows
SEEDED = 44  # plus one real backup on Drive: 45 rows, three pages of 20
HOSTILE_REASON = '=HYPERLINK("http://evil.example","click") came back from pg_dump'


@dataclass
class Console:
    url: str
    db: str
    auth: SupabaseAuthFake
    drive: DriveFake
    shots: Path
    real_id: str  # a successful backup whose file really is on the Drive fake
    real_name: str
    real_bytes: bytes
    seeded: dict[int, str] = field(default_factory=dict)  # seed index -> backup_logs id

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db) as conn:
            return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]

    def day(self, seed: int) -> str:
        """The day (in the backups' time zone) the seeded row ``seed`` started."""
        started = self.rows("SELECT started_at FROM backup_logs WHERE id = %s", (self.seeded[seed],))[0][0]
        return started.astimezone(TZ).date().isoformat()

    def setting(self, key: str) -> str:
        return self.rows("SELECT config_value FROM invoice_configurations WHERE config_key = %s", (key,))[0][0]


ENCRYPTED_SEED = 1  # an age-encrypted backup among the seeded rows


def _seed(url: str, today: datetime) -> dict[int, str]:
    """Row i started i+1 days ago at 02:00 UTC: one failure a week (one reason is a spreadsheet
    formula), one stuck attempt, a third manual, growing sizes, the oldest files deleted."""
    ids: dict[int, str] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(SEEDED):
            started = (today - timedelta(days=i + 1)).replace(hour=2, minute=0, second=0, microsecond=0)
            name = started.astimezone(TZ).strftime("DB_Backup_%Y-%m-%d_%H-%M.sql.gz")
            name += ".age" if i == ENCRYPTED_SEED else ""
            status = "failed" if i % 7 == 3 else "in_progress" if i == 20 else "success"
            ok = status == "success"
            reason = (
                (HOSTILE_REASON if i == 10 else f"pg_dump exited with status 1: connection refused (#{i})")
                if (status == "failed")
                else None
            )
            row = conn.execute(
                "INSERT INTO backup_logs (backup_type, status, file_name, file_size_bytes, google_drive_file_id,"
                " google_drive_path, failure_reason, started_at, completed_at, deleted_at, triggered_by)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    "manual" if i % 3 == 0 else "automatic",
                    status,
                    name,
                    1000 * (i + 1) ** 2 + 17 if ok else None,
                    f"seedfile{i:03d}" if ok else None,
                    f"MyDrive/DatabaseBackups/{name}" if ok else None,
                    reason,
                    started,
                    started + timedelta(minutes=2) if status != "in_progress" else None,
                    started + timedelta(days=1) if ok and i >= 35 and i % 2 == 1 else None,
                    "seed",
                ),
            ).fetchone()
            assert row is not None
            ids[i] = str(row[0])
    return ids


@pytest.fixture(scope="module")
def console(
    pg_admin_url: str,
    app_db_template: str,
    google_certs: GoogleCertsFake,
    supabase: SupabaseJwksFake,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Console]:
    from dbbackup.settings import Settings
    from dbbackup.wiring import backup_job

    work = tmp_path_factory.mktemp("console")
    with (
        console_site.database(pg_admin_url, "t_console", template=app_db_template) as url,
        console_site.running(SupabaseAuthFake(supabase)) as auth,
        DriveFake() as drive,
    ):
        env = (
            console_site.console_env(google_certs, supabase, url, work / "store", auth)
            | drive_env(drive, drive.authorized_user(USER))
            | {"BACKUP_TIMEZONE": str(TZ)}
        )
        with console_site.environment(env):
            outcome = backup_job(Settings.from_env(env)).run("manual", triggered_by="seed")
            assert outcome.status == "success", outcome.reason
            stored = drive.files[outcome.file_id].content
            assert stored
            seeded = _seed(url, datetime.now(UTC))

            with console_site.serve_console() as console_url:
                shots = tmp_path_factory.mktemp("console_screenshots")
                try:
                    yield Console(
                        console_url,
                        url,
                        auth,
                        drive,
                        shots,
                        outcome.backup_log_id,
                        outcome.file_name,
                        stored,
                        seeded,
                    )
                finally:
                    print(f"\nconsole screenshots: {shots}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with console_site.chromium() as launched:
        yield launched


@dataclass
class Watched:
    """What a page did that it must not: CSP violations, uncaught errors, tokens in URLs."""

    problems: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)


def _open(browser: Browser, **options: Any) -> tuple[BrowserContext, Page, Watched]:
    options = {"accept_downloads": True, "viewport": {"width": 1280, "height": 860}} | options
    context, page, problems = console_site.open_page(browser, timeout_ms=10_000, csp_errors_only=True, **options)
    watched = Watched(problems)
    page.on("request", lambda r: watched.urls.append(r.url))
    return context, page, watched


@pytest.fixture
def visit(browser: Browser, console: Console) -> Iterator[Any]:
    """Opens fresh contexts; at the end checks none leaked a token or broke the CSP."""
    opened: list[tuple[BrowserContext, Page, Watched]] = []

    def opener(**options: Any) -> Page:
        opened.append(_open(browser, **options))
        return opened[-1][1]

    yield opener
    for context, page, watched in opened:
        try:
            assert watched.problems == []
            html = page.content()
            stored = page.evaluate("() => [localStorage.length, sessionStorage.length, document.cookie]")
            assert stored == [0, 0, ""]
            for token in console.auth.issued:
                assert token not in html, "a token reached the DOM"
                assert not any(token in u for u in watched.urls), "a token was put in a URL"
        finally:
            context.close()


def sign_in(page: Page, console: Console, email: str, password: str = PASSWORD) -> None:
    console_site.sign_in(page, console.url, email, password)


def sign_in_manager(page: Page, console: Console) -> None:
    sign_in(page, console, "manager@example.com")
    expect(page.get_by_role("heading", name="Configurations")).to_be_visible()
    expect(page.locator("#st-failures")).not_to_have_text("—")  # the status strip has loaded


def open_logs(page: Page) -> None:
    page.get_by_role("button", name="View Logs").click()
    expect(page.get_by_role("dialog", name="Backup Logs")).to_be_visible()
    expect(page.locator("#logs-table")).not_to_have_attribute("aria-busy", "true")


def row_ids(page: Page) -> list[str]:
    return page.locator("#logs-body tr[data-id]").evaluate_all("rows => rows.map(r => r.dataset.id)")


def wait_idle(page: Page) -> None:
    expect(page.locator("#logs-table")).not_to_have_attribute("aria-busy", "true")


def shot(page: Page, console: Console, name: str) -> Path:
    path = console.shots / f"{name}.png"
    page.screenshot(path=str(path))
    return path


# --- the tests ------------------------------------------------------------------------------


def test_a_manager_signs_in_and_sees_the_configurations_status_and_logs(visit: Any, console: Console) -> None:
    page = visit()
    page.goto(console.url)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shot(page, console, "01-sign-in")
    sign_in_manager(page, console)
    expect(page.get_by_text("Signed in as manager@example.com · manager")).to_be_visible()

    rows = page.locator("#cfg-table tbody tr")
    expect(rows).to_have_count(4)
    expected = [
        ("1", "Database Backup", "View Logs"),
        ("2", "Backup Folder Path", "Edit"),
        ("3", "Notification Email", "Edit"),
        ("4", "Manual Database Backup", "Run Backup"),
    ]
    for n, (number, description, action) in enumerate(expected):
        cells = rows.nth(n).locator("td")
        expect(cells.nth(0)).to_have_text(number)
        expect(cells.nth(1)).to_contain_text(description)
        expect(cells.nth(2)).to_have_text(action)
    expect(page.locator("#cfg-folder")).to_have_text(console.setting("backup_folder_path"))
    failures = console.rows(
        "SELECT count(*) FROM backup_logs WHERE status = 'failed' AND started_at >"
        " (SELECT max(started_at) FROM backup_logs WHERE status = 'success')"
    )[0][0]
    expect(page.locator("#st-failures")).to_have_text(str(failures))
    expect(page.locator("#st-rate")).to_contain_text("%")
    last = console.rows("SELECT max(coalesce(completed_at, started_at)) FROM backup_logs WHERE status = 'success'")
    expect(page.locator("#st-last")).to_have_text(last[0][0].astimezone(TZ).strftime("%Y-%m-%d %H:%M:%S %Z"))
    shot(page, console, "02-console")

    open_logs(page)
    total = console.rows("SELECT count(*) FROM backup_logs")[0][0]
    expect(page.locator("#logs-summary")).to_have_text(f"Page 1 of {-(-total // 20)} · {total} backups")
    expect(page.locator("#logs-body tr")).to_have_count(20)
    newest = [str(r[0]) for r in console.rows("SELECT id FROM backup_logs ORDER BY started_at DESC LIMIT 20")]
    assert row_ids(page) == newest
    expect(page.locator("#logs-table thead th")).to_have_text(
        ["Date & Time", "Type", "Status", "File Name", "File Size", "Google Drive Path", "Failure Reason"]
    )
    expect(page.locator("th[data-sort=started_at]")).to_have_attribute("aria-sort", "descending")

    # Date and time in BACKUP_TIMEZONE; type, status, size as words; Drive link in a new tab.
    seeded = page.locator(f"#logs-body tr[data-id='{console.seeded[0]}'] td")
    started = console.rows("SELECT started_at FROM backup_logs WHERE id = %s", (console.seeded[0],))[0][0]
    expect(seeded.nth(0)).to_have_text(started.astimezone(TZ).strftime("%Y-%m-%d %H:%M:%S %Z"))
    expect(seeded.nth(1)).to_have_text("Manual")
    expect(seeded.nth(2).locator(".badge")).to_have_text("Success")  # restore.js adds its links beside it
    expect(seeded.nth(4)).to_have_text(re.compile(r"^[0-9][0-9,.]* (bytes|B|kB|KB|MB|KiB|MiB)$"))
    link = seeded.nth(5).get_by_role("link")
    expect(link).to_have_attribute("href", "https://drive.google.com/file/d/seedfile000/view")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", re.compile(r"\bnoopener\b"))
    expect(seeded.nth(6)).to_have_text("")

    failed = page.locator(f"#logs-body tr[data-id='{console.seeded[3]}'] td")
    expect(failed.nth(2)).to_have_text("Failed")
    expect(failed.nth(6)).to_have_text("pg_dump exited with status 1: connection refused (#3)")
    expect(failed.nth(3).get_by_role("button")).to_have_count(0)  # nothing to download
    shot(page, console, "03-logs")
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        page.evaluate("() => document.activeElement && document.activeElement.blur()")  # no focus ring
        page.screenshot(path=str(ROOT / "docs" / "console.png"))


def test_deleted_backups_are_shown_marked_and_not_downloadable(visit: Any, console: Console) -> None:
    page = visit()
    sign_in_manager(page, console)
    open_logs(page)
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Next").click()
    wait_idle(page)
    deleted = page.locator(f"#logs-body tr[data-id='{console.seeded[41]}']")  # page 3 with 45 or 46 rows
    expect(deleted).to_have_class(re.compile(r"\bdeleted\b"))
    expect(deleted.locator("td").nth(2)).to_have_text("SuccessDeleted")
    expect(deleted.get_by_role("button")).to_have_count(0)
    expect(deleted.get_by_role("link")).to_have_count(0)


def test_an_encrypted_backup_shows_a_lock_and_the_command_that_decrypts_its_download(
    visit: Any, console: Console
) -> None:
    page = visit()
    sign_in_manager(page, console)
    open_logs(page)
    cell = page.locator(f"#logs-body tr[data-id='{console.seeded[ENCRYPTED_SEED]}'] td").nth(3)
    expect(cell.get_by_label("Encrypted with age")).to_have_count(1)
    name = cell.get_by_role("button").inner_text()
    assert name.endswith(".sql.gz.age")
    expect(cell.locator("code.decrypt")).to_have_text(
        f"age -d -i key.txt {name} | gunzip | psql -X -v ON_ERROR_STOP=1 -d EMPTY_DB_URL"
    )
    plain = page.locator(f"#logs-body tr[data-id='{console.seeded[0]}'] td").nth(3)
    expect(plain.get_by_label("Encrypted with age")).to_have_count(0)
    expect(plain.locator("code.decrypt")).to_have_count(0)


def test_sorting_by_size_puts_the_largest_backup_first_then_the_smallest(visit: Any, console: Console) -> None:
    page = visit()
    sign_in_manager(page, console)
    open_logs(page)
    page.get_by_role("button", name="Size").click()
    wait_idle(page)
    size = page.locator("th[data-sort=file_size_bytes]")
    expect(size).to_have_attribute("aria-sort", "descending")
    expect(page.locator("th[data-sort=started_at]")).to_have_attribute("aria-sort", "none")
    biggest = console.rows("SELECT id FROM backup_logs ORDER BY file_size_bytes DESC NULLS LAST LIMIT 1")[0][0]
    expect(page.locator("#logs-body tr").first).to_have_attribute("data-id", str(biggest))

    page.get_by_role("button", name="Size").click()
    expect(size).to_have_attribute("aria-sort", "ascending")
    smallest = console.rows("SELECT id FROM backup_logs ORDER BY file_size_bytes ASC NULLS LAST LIMIT 1")[0][0]
    smallest_shown = page.locator(f"#logs-body tr[data-id='{smallest}']")
    expect(smallest_shown).to_have_count(1)  # nulls may sort either end; the smallest is on page 1


def test_filtering_failed_backups_shows_only_failures_with_their_reasons(visit: Any, console: Console) -> None:
    page = visit()
    sign_in_manager(page, console)
    open_logs(page)
    page.get_by_label("Status", exact=True).select_option("failed")
    failed = console.rows("SELECT count(*) FROM backup_logs WHERE status = 'failed'")[0][0]
    expect(page.locator("#logs-summary")).to_have_text(f"Page 1 of 1 · {failed} backups")
    rows = page.locator("#logs-body tr")
    expect(rows).to_have_count(failed)
    for n in range(failed):
        expect(rows.nth(n).locator("td").nth(2)).to_have_text("Failed")
        expect(rows.nth(n).locator("td").nth(6)).not_to_be_empty()
    shot(page, console, "04-failed")


def test_page_two_shows_the_next_twenty_backups(visit: Any, console: Console) -> None:
    page = visit()
    sign_in_manager(page, console)
    open_logs(page)
    expect(page.get_by_role("button", name="Previous")).to_be_disabled()
    page.get_by_role("button", name="Next").click()
    total = console.rows("SELECT count(*) FROM backup_logs")[0][0]
    expect(page.locator("#logs-summary")).to_have_text(f"Page 2 of {-(-total // 20)} · {total} backups")
    second = [str(r[0]) for r in console.rows("SELECT id FROM backup_logs ORDER BY started_at DESC OFFSET 20 LIMIT 20")]
    expect(page.locator("#logs-body tr")).to_have_count(len(second))
    assert row_ids(page) == second
    expect(page.get_by_role("button", name="Previous")).to_be_enabled()


def test_a_custom_date_range_shows_the_backups_of_those_days(visit: Any, console: Console) -> None:
    page = visit()
    sign_in_manager(page, console)
    open_logs(page)
    # Seed rows 6..10: the five days from 11 to 7 days ago, in the backups' time zone.
    day = console.day
    page.get_by_label("Date range").select_option("custom")
    expect(page.get_by_label("From")).to_be_focused()
    page.get_by_label("From").fill(day(10))
    page.get_by_label("To").fill(day(6))
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#logs-summary")).to_have_text("Page 1 of 1 · 5 backups")
    assert sorted(row_ids(page)) == sorted(console.seeded[i] for i in range(6, 11))

    # From after To: the page says so and does not ask the server.
    page.get_by_label("From").fill(day(6))
    page.get_by_label("To").fill(day(10))
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#filters-error")).to_have_text("The start date is after the end date.")


def test_csv_export_downloads_the_filtered_rows_spreadsheet_safe(visit: Any, console: Console) -> None:
    page = visit()
    sign_in_manager(page, console)
    open_logs(page)
    page.get_by_label("Status", exact=True).select_option("failed")
    wait_idle(page)
    with page.expect_download() as info:
        page.get_by_role("button", name="Export CSV").click()
    download = info.value
    assert re.fullmatch(r"backup_logs_\d{4}-\d{2}-\d{2}\.csv", download.suggested_filename)
    text = Path(download.path()).read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    failed = console.rows("SELECT count(*) FROM backup_logs WHERE status = 'failed'")[0][0]
    assert len(rows) == 1 + failed
    header = rows[0]
    assert "status" in header and "file_name" in header
    statuses = {r[header.index("status")] for r in rows[1:]}
    assert statuses == {"failed"}
    reasons = [r[header.index("failure_reason")] for r in rows[1:]]
    assert "'" + HOSTILE_REASON in reasons  # a formula is text, not something a spreadsheet runs


def test_downloading_a_backup_gives_the_bytes_stored_on_drive(visit: Any, console: Console) -> None:
    page = visit()
    sign_in_manager(page, console)
    open_logs(page)
    button = page.locator(f"#logs-body tr[data-id='{console.real_id}']").get_by_role(
        "button", name=f"Download {console.real_name}"
    )
    expect(button).to_have_accessible_name(f"Download {console.real_name}")
    with page.expect_download() as info:
        button.click()
    download = info.value
    assert download.suggested_filename == console.real_name
    assert Path(download.path()).read_bytes() == console.real_bytes


def test_a_backups_status_opens_what_it_holds_table_by_table(visit: Any, console: Console) -> None:
    page = visit()
    sign_in_manager(page, console)
    open_logs(page)
    page.locator(f"#logs-body tr[data-id='{console.real_id}']").get_by_role(
        "button", name=f"Contents of {console.real_name}"
    ).click()
    dialog = page.locator("#contents-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("h2")).to_have_text(f"Contents of {console.real_name}")
    [(manifest,)] = console.rows("SELECT manifest FROM backup_logs WHERE id = %s", (console.real_id,))
    tables = sorted(manifest["tables"])
    expect(dialog.locator("#contents-body tr")).to_have_count(len(tables))
    first = dialog.locator("#contents-body tr").first.locator("td")
    expect(first.nth(0)).to_have_text(tables[0])
    expect(first.nth(1)).to_have_text(f"{manifest['tables'][tables[0]]['rows']:,}")
    expect(dialog.locator("#contents-summary")).to_contain_text(f"{len(tables)} tables")


def test_editing_the_folder_path_checks_it_then_saves_it(visit: Any, console: Console) -> None:
    page = visit()
    sign_in_manager(page, console)
    before = console.setting("backup_folder_path")
    try:
        edit = page.get_by_role("row", name=re.compile("Backup Folder Path")).get_by_role("button", name="Edit")
        edit.click()
        dialog = page.get_by_role("dialog", name="Edit Backup Folder Path")
        expect(dialog).to_be_visible()
        field = dialog.get_by_label("Google Drive folder")
        expect(field).to_be_focused()
        expect(field).to_have_value(before)

        field.fill("MyDrive//Backups")  # caught in the page
        dialog.get_by_role("button", name="Save").click()
        expect(dialog.locator("#edit-error")).to_have_text("The path has an empty folder name (//).")
        expect(field).to_have_attribute("aria-invalid", "true")

        field.fill("MyDrive/ Backups")  # caught by the server: its message is shown as is
        dialog.get_by_role("button", name="Save").click()
        expect(dialog.locator("#edit-error")).to_contain_text("starts or ends with a space")
        shot(page, console, "05-edit-invalid")
        assert console.setting("backup_folder_path") == before

        field.fill("MyDrive/Team Backups/2026")
        dialog.get_by_role("button", name="Save").click()
        expect(dialog).to_be_hidden()
        expect(edit).to_be_focused()  # focus goes back where it came from
        expect(page.locator("#cfg-folder")).to_have_text("MyDrive/Team Backups/2026")
        expect(page.locator("#toasts")).to_contain_text("Backup folder path saved.")
        assert console.setting("backup_folder_path") == "MyDrive/Team Backups/2026"
    finally:
        with psycopg.connect(console.db, autocommit=True) as conn:
            conn.execute(
                "UPDATE invoice_configurations SET config_value = %s WHERE config_key = 'backup_folder_path'", (before,)
            )


def test_editing_the_notification_email_checks_it_then_saves_it(visit: Any, console: Console) -> None:
    page = visit()
    sign_in_manager(page, console)
    page.get_by_role("row", name=re.compile("Notification Email")).get_by_role("button", name="Edit").click()
    dialog = page.get_by_role("dialog", name="Edit Notification Email")
    field = dialog.get_by_label("E-mail address for backup alerts")

    field.fill("not-an-email")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.locator("#edit-error")).to_have_text("Enter an e-mail address like ops@example.com.")

    field.fill("ops@example")  # no dot in the domain: the server's check
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.locator("#edit-error")).not_to_be_empty()
    expect(dialog.locator("#edit-error")).not_to_have_text("Enter an e-mail address like ops@example.com.")
    assert console.setting("backup_notification_email") != "ops@example"

    field.fill("ops@example.com")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#cfg-email")).to_have_text("ops@example.com")
    assert console.setting("backup_notification_email") == "ops@example.com"


def test_run_backup_asks_first_shows_progress_then_the_new_row(visit: Any, console: Console) -> None:
    page = visit()
    sign_in_manager(page, console)
    run = page.get_by_role("button", name="Run Backup")
    run.click()
    confirm = page.get_by_role("dialog", name="Run a backup now?")
    expect(confirm).to_be_visible()
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Escape")  # changing one's mind runs nothing
    expect(confirm).to_be_hidden()
    expect(run).to_be_focused()

    console.drive.slow(1.5, method="PUT", path="/upload/")  # long enough to see it running
    run.click()
    confirm.get_by_role("button", name="Run Backup").click()
    button = page.locator("#run-backup")
    expect(button).to_be_disabled()
    expect(page.locator("#run-spinner")).to_be_visible()
    expect(page.locator("#toasts")).to_contain_text("Backup in progress…")
    shot(page, console, "06-backup-running")
    success = page.locator("#toasts .toast.success")
    expect(success).to_contain_text("Backup completed: DB_Backup_", timeout=30_000)
    expect(button).to_be_enabled()
    expect(page.locator("#run-spinner")).to_be_hidden()

    newest_id, name, kind, by = console.rows(
        "SELECT id, file_name, backup_type, triggered_by FROM backup_logs ORDER BY started_at DESC LIMIT 1"
    )[0]
    assert kind == "manual" and MANAGER in (by or "")
    expect(success).to_contain_text(name)
    open_logs(page)
    first = page.locator("#logs-body tr").first
    expect(first).to_have_attribute("data-id", str(newest_id))
    expect(first.locator("td").nth(1)).to_have_text("Manual")
    expect(first.locator("td").nth(3)).to_have_text(name)


def test_the_session_is_refreshed_before_the_token_expires(visit: Any, console: Console) -> None:
    auth = console.auth
    auth.expires_in = 3
    try:
        page = visit()
        before = auth.count("refresh_token")
        sign_in_manager(page, console)
        deadline = time.monotonic() + 8
        while auth.count("refresh_token") < before + 2 and time.monotonic() < deadline:
            page.wait_for_timeout(200)
        assert auth.count("refresh_token") >= before + 2
        open_logs(page)  # the API takes the renewed token
        expect(page.locator("#logs-body tr")).to_have_count(20)
    finally:
        auth.expires_in = 3600


def test_a_wrong_password_shows_supabases_message(visit: Any, console: Console) -> None:
    page = visit()
    sign_in(page, console, "manager@example.com", "not the password")
    expect(page.get_by_role("alert")).to_have_text("Invalid login credentials")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


@pytest.mark.parametrize("email", ["clerk@example.com", "stranger@example.com"])
def test_a_non_manager_sees_no_access_and_can_sign_out(visit: Any, console: Console, email: str) -> None:
    page = visit()
    sign_in(page, console, email)
    expect(page.get_by_role("heading", name="No access")).to_be_visible()
    expect(page.get_by_role("heading", name="Configurations")).to_be_hidden()
    if email.startswith("clerk"):
        shot(page, console, "07-no-access")
    page.locator("#noaccess-sign-out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_an_admin_may_use_the_console_and_signing_out_ends_the_session(visit: Any, console: Console) -> None:
    page = visit()
    sign_in(page, console, "admin@example.com")
    expect(page.get_by_text("Signed in as admin@example.com · admin")).to_be_visible()
    expect(page.get_by_role("heading", name="Configurations")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("heading", name="Configurations")).to_be_hidden()
    # The session's refresh token is revoked at Supabase Auth too (best effort, after the page moved on).
    held = [t for t in console.auth.refresh_tokens.values() if t.user.email == "admin@example.com"]
    deadline = time.monotonic() + 5
    while not all(t.revoked for t in held) and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert held and all(t.revoked for t in held), "the page did not sign out at Supabase Auth"


def test_with_auth_disabled_the_console_opens_without_signing_in(
    visit: Any, console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTH_MODE", "disabled")  # read per request by the served function
    page = visit()
    page.goto(console.url)
    expect(page.get_by_role("heading", name="Configurations")).to_be_visible()
    expect(page.get_by_text("Authentication is disabled on this deployment")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    open_logs(page)
    expect(page.locator("#logs-body tr")).to_have_count(20)


def test_the_logs_dialog_works_from_the_keyboard(visit: Any, console: Console) -> None:
    page = visit()
    sign_in_manager(page, console)
    view = page.get_by_role("button", name="View Logs")
    view.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Backup Logs")
    expect(dialog).to_be_visible()
    expect(page.get_by_label("Status", exact=True)).to_be_focused()  # focus moved into the dialog
    wait_idle(page)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(view).to_be_focused()  # and back


def test_the_console_fits_a_phone(visit: Any, console: Console) -> None:
    page = visit(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    sign_in_manager(page, console)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 375, f"the page scrolls sideways ({width}px)"
    expect(page.get_by_role("button", name="Run Backup")).to_be_in_viewport()
    shot(page, console, "08-phone")
    open_logs(page)
    box = page.get_by_role("dialog", name="Backup Logs").bounding_box()
    assert box is not None and box["width"] <= 375
    expect(page.get_by_role("button", name="Export CSV")).to_be_visible()
    shot(page, console, "09-phone-logs")


def _post(url: str, body: dict[str, Any] | None, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    import json
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **headers}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_the_auth_fake_answers_as_supabase_auth_does(console: Console) -> None:
    """What the page relies on, without a browser: the shapes of answers and refresh rotation."""
    auth = console.auth
    token = f"{auth.url}/auth/v1/token?grant_type="
    key = {"apikey": auth.anon_key}
    assert _post(token + "password", {"email": "manager@example.com", "password": PASSWORD}, {})[0] == 401
    assert _post(token + "password", {"email": "manager@example.com", "password": "x"}, key) == (
        400,
        {"code": 400, "error_code": "invalid_credentials", "msg": "Invalid login credentials"},
    )
    new_shape = key | {"X-Supabase-Api-Version": "2024-01-01"}
    assert _post(token + "password", {"email": "nobody@example.com", "password": "x"}, new_shape) == (
        400,
        {"code": "invalid_credentials", "message": "Invalid login credentials"},
    )
    status, session = _post(token + "password", {"email": "manager@example.com", "password": PASSWORD}, key)
    assert status == 200 and session["token_type"] == "bearer" and session["user"]["id"] == MANAGER
    assert session["expires_at"] - int(time.time()) in range(session["expires_in"] - 5, session["expires_in"] + 1)
    status, renewed = _post(token + "refresh_token", {"refresh_token": session["refresh_token"]}, key)
    assert status == 200 and renewed["refresh_token"] != session["refresh_token"]
    again = _post(token + "refresh_token", {"refresh_token": session["refresh_token"]}, key)
    assert again == (
        400,
        {"code": 400, "error_code": "refresh_token_already_used", "msg": "Invalid Refresh Token: Already Used"},
    )
    status, _ = _post(
        f"{auth.url}/auth/v1/logout?scope=local", None, key | {"Authorization": f"Bearer {renewed['access_token']}"}
    )
    assert status == 204
    assert _post(token + "refresh_token", {"refresh_token": renewed["refresh_token"]}, key)[0] == 400
