"""Connection strings and databases of the test PostgreSQL servers (the fixtures that make
them are in conftest)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import psycopg.conninfo

# make_db's factory: (owner=None, sql=None) -> the URL of a fresh database, dropped after the test.
DbFactory = Callable[..., str]


@dataclass
class OwnerDb:
    url: str  # as the owning role, with its password
    admin_url: str  # the same database as superuser
    role: str
    password: str


def with_params(url: str, **params: str) -> str:
    """The same server/credentials with some conninfo parameters replaced (dbname, user...)."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    info.update(params)
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})


def wait_until_gone(url: str, pid: int, timeout: float = 10.0) -> None:
    """Wait until the server has ended the backend ``pid`` (and so released its session locks):
    a closed connection's backend exits a moment after the client leaves, and on a busy shared
    server that moment is long enough for the next statement to see the lock still held."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s)", (pid,)).fetchone()
            if not (row and row[0]):
                return
            time.sleep(0.05)
