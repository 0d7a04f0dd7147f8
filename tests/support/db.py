"""Connection strings and databases of the test PostgreSQL servers (the fixtures that make
them are in conftest)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
