"""The console's pictures and schedule settings in a real browser (issue 20, part B): Debian's
chromium driven by Playwright against ``backup_console`` served on 127.0.0.1, a real PostgreSQL
with a seeded history, the Drive fake as storage, the Supabase Auth fake, and the Cloud
Scheduler fake the schedule form updates through the real client.

One browser and one served console for the module; each test opens a fresh context and signs in.
With UPDATE_SCREENSHOTS=1 the history and schedule screenshot is copied to docs/console-history.png.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from playwright.sync_api import Browser, Page, Response, expect

from fakes import USER, drive_env
from fakes._http import Exchange, Fault
from fakes.drive_fake import DriveFake
from fakes.jwks_fake import SupabaseJwksFake
from fakes.oidc_fake import GoogleCertsFake
from fakes.scheduler_fake import SchedulerFake
from fakes.supabase_auth_fake import SupabaseAuthFake
from support import console_site
from support.paths import ROOT

console_site.require_chromium()

pytest_plugins = ["fakes.auth_fixtures"]

TZ = ZoneInfo("Europe/Berlin")
BACKUP_JOB = "projects/test-project/locations/europe-west1/jobs/dbbackup-backup"
CLEANUP_JOB = "projects/test-project/locations/europe-west1/jobs/dbbackup-cleanup"
FAILED_DAYS = (4, 11, 45)  # the attempts that failed (days ago); 45 is only in the 90-day chart
OLDEST = 60  # one success 60 days ago: in the 90-day chart only
REASON = "pg_dump: error: connection to server lost"


@dataclass
class Served:
    url: str
    db: str
    auth: SupabaseAuthFake
    drive: DriveFake
    scheduler: SchedulerFake
    shots: Path

    def count(self, sql: str) -> int:
        with psycopg.connect(self.db) as conn:
            row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
        assert row is not None
        return int(row[0])


def _seed(url: str, now: datetime) -> None:
    """A success each day of the last 20 (growing, taking longer), the failures of FAILED_DAYS
    (one with a Drive path recorded: a failed row must still show none), one older success."""
    with psycopg.connect(url, autocommit=True) as conn:
        attempts = [(days, False) for days in (*range(1, 21), OLDEST)] + [(days, True) for days in FAILED_DAYS]
        for days, failed in attempts:
            started = (now - timedelta(days=days)).replace(hour=1, minute=0, second=0, microsecond=0)
            conn.execute(
                "INSERT INTO backup_logs (backup_type, status, file_name, file_size_bytes, google_drive_path,"
                " failure_reason, started_at, completed_at) VALUES ('automatic', %s, %s, %s, %s, %s, %s, %s)",
                (
                    "failed" if failed else "success",
                    f"DB_Backup_seed_{days}.sql.gz",
                    None if failed else 1_000_000 * (30 - min(days, 29)),
                    f"MyDrive/DatabaseBackups/DB_Backup_seed_{days}.sql.gz",
                    REASON if failed else None,
                    started + timedelta(minutes=3) if failed else started,
                    started + timedelta(seconds=4 if failed else 30 + days),
                ),
            )


@pytest.fixture(scope="module")
def served(
    pg_admin_url: str,
    app_db_template: str,
    google_certs: GoogleCertsFake,
    supabase: SupabaseJwksFake,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("schedule_console")
    with (
        console_site.database(pg_admin_url, "t_sched", template=app_db_template) as url,
        console_site.running(SupabaseAuthFake(supabase)) as auth,
        DriveFake() as drive,
        console_site.running(SchedulerFake()) as scheduler,
    ):
        scheduler.add(BACKUP_JOB, "0 1 * * *", str(TZ))
        scheduler.add(CLEANUP_JOB, "0 2 * * *", str(TZ))
        _seed(url, datetime.now(UTC))
        env = (
            console_site.console_env(google_certs, supabase, url, work / "store", auth)
            | drive_env(drive, drive.authorized_user(USER))
            | {
                "BACKUP_TIMEZONE": str(TZ),
                "SCHEDULER_BACKUP_JOB": BACKUP_JOB,
                "SCHEDULER_CLEANUP_JOB": CLEANUP_JOB,
                "SCHEDULER_ENDPOINT": scheduler.url,
            }
        )
        with console_site.environment(env), console_site.serve_console() as console_url:
            yield Served(
                console_url,
                url,
                auth,
                drive,
                scheduler,
                tmp_path_factory.mktemp("schedule_screenshots"),
            )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with console_site.chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh context; at the end: no CSP refusal, no uncaught error, no answer >= 400 the test
    did not ask for (the favicon among them)."""
    context, page, problems = console_site.open_page(
        browser, timeout_ms=10_000, viewport={"width": 1280, "height": 1000}
    )

    def answered(response: Response) -> None:
        if response.status >= 400 and "/api/config/schedule" not in response.url:
            problems.append(f"{response.status} {response.url}")

    page.on("response", answered)
    yield page
    try:
        assert problems == []
    finally:
        context.close()


def sign_in(page: Page, served: Served) -> None:
    console_site.sign_in(page, served.url, "manager@example.com")
    expect(page.get_by_role("heading", name="Backup sizes and durations")).to_be_visible()


def test_the_history_chart_the_next_run_the_storage_use_and_the_favicon(page: Page, served: Served) -> None:
    icons: list[Response] = []
    page.on("response", lambda r: icons.append(r) if "favicon" in r.url else None)
    sign_in(page, served)
    expect(page.locator("#auth-banner")).to_be_hidden()
    chart = page.locator("#chart svg")
    # The last 30 days: 20 successes (a bar for the size, a point for the duration), 2 failures.
    expect(chart.locator("rect.bar")).to_have_count(20)
    expect(chart.locator("circle.point")).to_have_count(20)
    expect(chart.locator("path.failure")).to_have_count(2)
    expect(chart.locator("path.failure title").first).to_contain_text(REASON)
    expect(page.locator("#chart-summary")).to_have_text("22 attempts in 30 days: 20 succeeded, 2 failed.")
    # Taller bar, larger backup: the newest (largest) bar is the highest one.
    heights = chart.locator("rect.bar").evaluate_all("bars => bars.map(b => Number(b.getAttribute('height')))")
    assert heights == sorted(heights) and heights[0] < heights[-1]
    page.get_by_role("button", name="90 days").click()
    expect(chart.locator("rect.bar")).to_have_count(21)
    expect(chart.locator("path.failure")).to_have_count(3)
    expect(page.get_by_role("button", name="90 days")).to_have_attribute("aria-pressed", "true")

    expect(page.locator("#next-run")).to_contain_text(" 01:00:00 ")  # the backup job's 0 1 * * * in Berlin
    expect(page.locator("#storage-use")).to_have_text("Google Drive: 0 B used of 16.1 GB")
    assert [r.status for r in icons] == [200] and icons[0].url.endswith("/static/favicon.svg")
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        page.locator("#history").scroll_into_view_if_needed()
        page.locator("#history").screenshot(path=str(ROOT / "docs" / "console-history.png"))

    # The logs use the spec's column names, and a failed attempt shows no Drive path.
    page.get_by_role("button", name="View Logs").click()
    expect(page.locator("#logs-table thead th")).to_have_text(
        ["Date & Time", "Type", "Status", "File Name", "File Size", "Google Drive Path", "Failure Reason"]
    )
    failed = page.locator("#logs-body tr[data-status=failed]").first.locator("td")
    expect(failed.nth(5)).to_have_text("—")
    expect(failed.nth(6)).to_have_text(REASON)


def test_a_schedule_edit_is_applied_to_cloud_scheduler_and_a_bad_cron_is_refused(page: Page, served: Served) -> None:
    sign_in(page, served)
    form = page.locator("#schedule")
    expect(page.locator("#schedule-state")).to_have_text("Applied to the Cloud Scheduler jobs.")
    cron = page.get_by_label("Backup schedule (cron)")
    expect(cron).to_have_value("0 1 * * *")
    expect(page.get_by_label("Backup time zone")).to_have_value("Europe/Berlin")
    expect(page.get_by_label("Keep daily backups (days)")).to_have_value("15")

    cron.fill("0 25 * * *")  # five fields, but no 25th hour: the server's check refuses it
    form.get_by_role("button", name="Save schedule").click()
    expect(page.locator("#s-backup-cron-error")).to_contain_text("is not a unix-cron expression")
    expect(cron).to_have_attribute("aria-invalid", "true")
    assert served.scheduler.patches == []

    cron.fill("30 3 * * *")
    page.get_by_label("Backup time zone").fill("Asia/Tokyo")
    page.get_by_label("Weekly backups kept").fill("4")
    form.get_by_role("button", name="Save schedule").click()
    expect(page.locator("#toasts .toast.success")).to_contain_text("applied to Cloud Scheduler")
    expect(page.locator("#s-backup-cron-error")).to_be_hidden()
    job = served.scheduler.jobs[BACKUP_JOB]
    assert (job["schedule"], job["timeZone"]) == ("30 3 * * *", "Asia/Tokyo")
    assert served.scheduler.jobs[CLEANUP_JOB]["schedule"] == "0 2 * * *"
    assert (
        served.count("SELECT config_value::int FROM invoice_configurations WHERE config_key = 'backup_keep_weekly'")
        == 4
    )
    # 03:30 in Tokyo is 19:30 or 20:30 the day before in Berlin.
    expect(page.locator("#next-run")).to_contain_text(":30:00 ")
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        page.locator("#toasts button").first.click()  # the toast would cover the form
        page.locator("#schedule").screenshot(path=str(ROOT / "docs" / "console-schedule.png"))


def test_the_backup_toast_stays_while_the_backup_runs_then_the_result_replaces_it(page: Page, served: Served) -> None:
    page.clock.install()  # the page's timers run on a clock the test moves
    sign_in(page, served)
    release = threading.Event()

    def hold(exchange: Exchange) -> None:
        release.wait(5)  # the first upload request waits until the test has looked

    served.drive.arm(Fault(hold, method="PUT", path="/upload/"))
    page.get_by_role("button", name="Run Backup").click()
    page.get_by_role("dialog", name="Run a backup now?").get_by_role("button", name="Run Backup").click()
    toasts = page.locator("#toasts .toast")
    expect(toasts).to_have_count(1)
    expect(toasts.first).to_contain_text("Backup in progress…")
    page.clock.fast_forward(60_000)  # far past a toast's 8 s: the backup is still running
    expect(toasts).to_have_count(1)
    expect(toasts.first).to_contain_text("Backup in progress…")
    release.set()
    expect(toasts.first).to_contain_text("Backup completed: DB_Backup_", timeout=20_000)
    expect(toasts).to_have_count(1)  # replaced, not added beside it
    expect(page.locator("#run-backup")).to_be_enabled()


def test_a_prominent_banner_says_when_authentication_is_disabled(
    page: Page, served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTH_MODE", "disabled")  # read per request by the served function
    page.goto(served.url)
    banner = page.get_by_role("alert").filter(has_text="Authentication is off")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Anyone who can reach this page")
    box = banner.bounding_box()
    assert box is not None and box["y"] < 5 and box["width"] >= 1200  # the top of the page, full width
    expect(page.get_by_role("heading", name="Backup sizes and durations")).to_be_visible()
