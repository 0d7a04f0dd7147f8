"""Connecting to PostgreSQL with retries, and turning libpq errors into readable lines."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import psycopg
import psycopg.conninfo

from dbbackup.errors import DatabaseError, DatabaseUnavailable
from dbbackup.pg import conninfo
from dbbackup.pg.conninfo import with_keepalives
from dbbackup.redact import one_line, redact

APPLICATION_NAME = "dbbackup"


def describe(exc: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """One redacted line for a database error."""
    text = str(exc).strip() or type(exc).__name__
    return one_line(redact(text.splitlines()[0] if text else text, secrets))


def connect(
    url: str,
    *,
    attempts: int = 3,
    backoff: float = 1.0,
    secrets: tuple[str, ...] = (),
    sleep: Callable[[float], None] = time.sleep,
) -> psycopg.Connection:
    """An autocommit connection; retries with exponential backoff, then DatabaseUnavailable.

    Autocommit and no prepared statements keep every statement we run valid through a
    transaction-mode pooler."""
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            return psycopg.connect(
                psycopg.conninfo.make_conninfo(**with_keepalives(psycopg.conninfo.conninfo_to_dict(url))),
                autocommit=True,
                prepare_threshold=None,
                connect_timeout=15,
                application_name=APPLICATION_NAME,
            )
        except psycopg.OperationalError as exc:
            last = describe(exc, secrets)
            if _permanent(last) or attempt == attempts:
                break
            sleep(backoff * 2 ** (attempt - 1))
    raise DatabaseUnavailable(f"cannot connect to the database: {last}{conninfo.explain(last, url)}")


def _permanent(message: str) -> bool:
    """Errors that retrying cannot fix (fail fast instead of sleeping)."""
    lowered = message.lower()
    return any(
        s in lowered
        for s in (
            "password authentication failed",
            "does not exist",
            "no pg_hba.conf entry",
            'role "',
            "invalid",
            "certificate",
            "tenant or user not found",  # Supabase's pooler: wrong user form or project
            "does not support ssl",
        )
    )


@contextlib.contextmanager
def sql_errors(secrets: tuple[str, ...] = ()) -> Iterator[None]:
    """The driver's errors as DatabaseError (one redacted line): nothing above ``pg`` catches a
    psycopg exception."""
    try:
        yield
    except psycopg.Error as exc:
        raise DatabaseError(describe(exc, secrets)) from None


class LazyConnection:
    """One service connection per request, opened only if a question needs the database."""

    def __init__(self, url: str, attempts: int, secrets: tuple[str, ...]) -> None:
        self.url, self.attempts, self.secrets = url, attempts, secrets
        self._conn: psycopg.Connection | None = None

    def get(self) -> psycopg.Connection:
        if self._conn is None:
            self._conn = connect(self.url, attempts=self.attempts, secrets=self.secrets)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
