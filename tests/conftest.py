"""Shared fixtures: a real PostgreSQL server for every test that needs one.

With TEST_DATABASE_URL (a superuser URL) the tests use that server; otherwise they start a
throwaway server from the bundled binaries, with TLS on and only TLS connections allowed, and
reach it with sslmode=require as Supabase requires.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import psycopg.conninfo
import pytest
from fakes.certs import self_signed

from dbbackup.pg.embedded import EmbeddedPostgres

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def make_tls_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, generated at test time."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed(key, "127.0.0.1")
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def with_params(url: str, **params: str) -> str:
    """The same server/credentials with some conninfo parameters replaced (dbname, user...)."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    info.update(params)
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})


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


DbFactory = Callable[..., str]


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


@dataclass
class OwnerDb:
    url: str  # as the owning role, with its password
    admin_url: str  # the same database as superuser
    role: str
    password: str


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


def cli_env(database_url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKUP_", "PG_DUMP"))}
    env.pop("DATABASE_URL", None)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    env.update(extra)
    return env


def run_cli(
    args: list[str], database_url: str | None, check: bool = False, **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point in a subprocess, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "dbbackup.cli", *args],
        env=cli_env(database_url, **extra),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"dbbackup {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc
