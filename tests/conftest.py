"""Shared fixtures: a real PostgreSQL server for every test that needs one.

With TEST_DATABASE_URL (a superuser URL) the tests use that server; otherwise they start a
throwaway server from the bundled binaries, with TLS on and only TLS connections allowed, and
reach it with sslmode=require as Supabase requires.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from dbbackup.pg.embedded import EmbeddedPostgres
from support.cli import run_cli
from support.db import DbFactory, OwnerDb, with_params
from support.tls import make_tls_cert


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
        return
    cert, key = make_tls_cert(tmp_path_factory.mktemp("tls"))
    hba = [
        "hostssl all postgres 127.0.0.1/32 trust",
        "hostssl all all 127.0.0.1/32 scram-sha-256",
    ]
    with EmbeddedPostgres(ssl_cert=cert, ssl_key=key, hba=hba) as pg:
        yield pg.url("postgres", sslmode="require")


@pytest.fixture(scope="session")
def password_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """A bundled server that checks passwords (the shared test server may trust everyone)."""
    hba = ["host all postgres 127.0.0.1/32 trust", "host all all 127.0.0.1/32 scram-sha-256"]
    with EmbeddedPostgres(hba=hba) as pg:
        yield pg


@pytest.fixture
def make_db(pg_admin_url: str) -> Iterator[DbFactory]:
    """Creates uniquely named databases (optionally owned by a role); drops them afterwards."""
    created: list[str] = []

    def factory(owner: str | None = None, sql: str | None = None) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' OWNER "{owner}"' if owner else ""))
        created.append(name)
        url = with_params(pg_admin_url, dbname=name)
        if sql:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(sql)  # type: ignore[arg-type]
        return url

    yield factory
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def owner_db(make_db: DbFactory, pg_admin_url: str) -> Iterator[OwnerDb]:
    """A database owned by a fresh non-superuser role with a password (as on Supabase, where
    the app's role is not a superuser)."""
    role = f"owner_{uuid.uuid4().hex[:8]}"
    password = f"pw-{uuid.uuid4().hex}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{password}'")
    try:
        admin_url = make_db(owner=role)
        url = with_params(admin_url, user=role, password=password)
        with psycopg.connect(url) as conn:
            assert not conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
        yield OwnerDb(url, admin_url, role, password)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            owned = conn.execute(
                "SELECT datname FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = %s)",
                (role,),
            ).fetchall()
            for (dbname,) in owned:
                conn.execute(f'DROP DATABASE "{dbname}" WITH (FORCE)')
            conn.execute(f"DROP ROLE IF EXISTS {role}")


@pytest.fixture
def db_url(make_db: DbFactory) -> str:
    return make_db()


@pytest.fixture
def migrated_url(db_url: str) -> str:
    run_cli(["migrate"], db_url, check=True)
    return db_url
