"""The managers' console as the browser tests meet it: the ``backup_console`` function served over
HTTP on 127.0.0.1 against a copy of the app database, the Supabase Auth fake to sign in through,
and Debian's chromium driven by Playwright.

Small context managers rather than one fixture: each module adds its own fakes and environment,
and seeds its database (or runs a backup) between setting the environment and serving.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

from fakes._http import FakeServer
from fakes.auth_people import auth_env
from fakes.jwks_fake import SupabaseJwksFake
from fakes.oidc_fake import GoogleCertsFake
from fakes.supabase_auth_fake import PASSWORD, SupabaseAuthFake
from support.db import with_params
from support.paths import ROOT

SOURCE = ROOT / "functions" / "backup_console" / "main.py"
MANAGER_EMAIL = "manager@example.com"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_chromium() -> str:
    """Debian's chromium; without it the calling module is skipped (call it at module level)."""
    found = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
    if not found and os.environ.get("DBBACKUP_REQUIRE_BROWSER") == "1":
        # CI installs chromium and sets this: there a missing browser is a failure, never a silent skip.
        pytest.fail("DBBACKUP_REQUIRE_BROWSER=1 but Debian's chromium is not installed", pytrace=False)
    if not found:
        pytest.skip(
            "Debian's chromium is not installed (apt-get install chromium): the console's browser tests need it",
            allow_module_level=True,
        )
    return found


@contextmanager
def database(admin_url: str, prefix: str, *, template: str | None = None, sql: str | None = None) -> Iterator[str]:
    """A new database (a copy of ``template``, or empty with ``sql`` run in it); yields its URL."""
    # The pid and the time keep the name apart from other xdist workers and from earlier runs'
    # leftovers on a shared server.
    name = f"{prefix}_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    try:
        url = with_params(admin_url, dbname=name)
        if sql:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(sql)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            # FORCE: a connection the served console or a backup left open would block the drop.
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def running[F: FakeServer](fake: F) -> Iterator[F]:
    """Stops ``fake`` at the end: for fakes that start when made (``with`` would start them twice)."""
    try:
        yield fake
    finally:
        fake.stop()


def console_env(
    google_certs: GoogleCertsFake, supabase: SupabaseJwksFake, db_url: str, store: Path, auth: SupabaseAuthFake
) -> dict[str, str]:
    """The environment every served console needs: enforced auth against the fakes, sign-in
    through ``auth``, the backups in the local folder ``store``, and no manual-backup rate limit
    (the tests run backups one after another)."""
    return auth_env(google_certs, supabase, db_url, store) | {
        "MANUAL_BACKUP_INTERVAL_SECONDS": "0",
        "SUPABASE_URL": auth.url,
        "SUPABASE_ANON_KEY": auth.anon_key,
    }


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """``env`` set in os.environ, all restored at the end: the served function reads it there on
    every request, so it must stay set while the console is served."""
    with pytest.MonkeyPatch.context() as mp:
        # Whatever the caller's shell has: AUTH_MODE=disabled would open the console without
        # signing in, and K_SERVICE makes the auth config behave as on Cloud Run.
        for key in ("AUTH_MODE", "K_SERVICE"):
            mp.delenv(key, raising=False)
        for key, value in env.items():
            mp.setenv(key, value)
        yield


@contextmanager
def serve_console() -> Iterator[str]:
    """``backup_console`` served on a free port of 127.0.0.1; yields the console's URL. Call it
    inside ``environment``: the function reads os.environ on every request."""
    from functions_framework import create_app
    from werkzeug.serving import make_server

    app = create_app("backup_console", str(SOURCE))  # type: ignore[no-untyped-call]  # functions_framework has no types
    # threaded: a backup or a restore takes seconds inside one request, while the page goes on
    # fetching (the restore dialog polls the restore's progress).
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()


@contextmanager
def chromium() -> Iterator[Browser]:
    """Headless, from Debian's chromium package rather than a browser Playwright downloads."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=require_chromium(), headless=True, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(
    browser: Browser, *, timeout_ms: int, csp_errors_only: bool = False, **options: Any
) -> tuple[BrowserContext, Page, list[str]]:
    """A page in a fresh context (no session shared with other tests), and the list that collects
    what the page must never do: break the Content Security Policy or throw an uncaught error.
    Only console messages about the CSP count (a failed fetch a test provokes is a console error
    too); with ``csp_errors_only``, only those of type error."""
    context = browser.new_context(**options)
    context.set_default_timeout(timeout_ms)
    page = context.new_page()
    problems: list[str] = []

    def logged(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text and (message.type == "error" or not csp_errors_only):
            problems.append(message.text)

    page.on("console", logged)
    page.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
    return context, page, problems


def sign_in(page: Page, url: str, email: str = MANAGER_EMAIL, password: str = PASSWORD) -> None:
    """Through the console's own form, as a person does (the Supabase Auth fake checks the password)."""
    page.goto(url)
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
