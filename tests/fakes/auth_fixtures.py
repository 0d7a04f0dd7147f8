"""Fixtures for the security tests (a plugin: ``pytest_plugins = ["fakes.auth_fixtures"]``): the
Google certs and Supabase JWKS fakes, a Supabase-like migrated database with a manager, an
admin and a plain user, and the environment that points both functions at all of them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from support.cli import run_cli
from support.db import with_params
from support.paths import FIXTURES
from support.supabase_roles import ensure_api_roles

from .auth_people import Secured, auth_env
from .jwks_fake import SupabaseJwksFake
from .oidc_fake import GoogleCertsFake


@pytest.fixture(scope="session")
def google_certs() -> Iterator[GoogleCertsFake]:
    fake = GoogleCertsFake()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def supabase() -> Iterator[SupabaseJwksFake]:
    fake = SupabaseJwksFake()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def app_db_template(pg_admin_url: str) -> Iterator[str]:
    """A migrated database with Supabase's roles, auth.uid() and the app's user_profiles, made
    once: each test gets a copy (CREATE DATABASE ... TEMPLATE), far faster than migrating."""
    name = f"tmpl_auth_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_params(pg_admin_url, dbname=name)
    ensure_api_roles(pg_admin_url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute((FIXTURES / "supabase_auth.sql").read_text())  # type: ignore[arg-type]
        conn.execute((FIXTURES / "supabase_app.sql").read_text())  # type: ignore[arg-type]
    run_cli(["migrate"], url, check=True)
    yield name
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def app_db(pg_admin_url: str, app_db_template: str) -> Iterator[str]:
    name = f"t_auth_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{app_db_template}"')
    yield with_params(pg_admin_url, dbname=name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def secured(
    monkeypatch: pytest.MonkeyPatch,
    google_certs: GoogleCertsFake,
    supabase: SupabaseJwksFake,
    app_db: str,
    tmp_path: Path,
) -> Secured:
    """Both functions' environment set (enforced auth, no rate limit unless a test sets one)."""
    env = auth_env(google_certs, supabase, app_db, tmp_path / "store") | {"MANUAL_BACKUP_INTERVAL_SECONDS": "0"}
    for key in ("AUTH_MODE", "K_SERVICE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Secured(app_db, tmp_path / "store", env)
