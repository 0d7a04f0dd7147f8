"""Everyone's connection policy: the libpq parameters our connections and our pg_dump/psql runs
get (TCP keepalives, TLS for remote hosts, the password out of argv), and connecting to Supabase
the way its network works (docs/supabase.md, "Connecting").

- The direct host ``db.<ref>.supabase.co`` resolves to IPv6 only unless the project bought the
  IPv4 add-on; the shared pooler ``*.pooler.supabase.com`` answers IPv4, in session mode on
  5432 and in transaction mode on 6543, and wants the user ``postgres.<project-ref>``.
- pg_dump needs a session (it sets session parameters, takes a snapshot and locks tables for
  the whole dump): the transaction pooler on 6543 breaks it, so a dump through 6543 is refused
  before it starts, naming the URL to use instead.
- TLS: every connection to a non-local host gets ``sslmode=require`` unless the URL (or
  ``PGSSLMODE``) says otherwise. Local hosts (127.0.0.1, ::1, localhost, a unix socket) keep
  libpq's default, so a local server without TLS keeps working.

Nothing here ever puts a password into a message: suggestions are built from the host, port,
user and database name only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import quote

import psycopg
import psycopg.conninfo

from dbbackup.errors import ConfigError, UsageError

TRANSACTION_POOLER_PORT = "6543"
SESSION_PORT = "5432"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_SHARED_POOLER = re.compile(r"\.pooler\.supabase\.com\.?$", re.I)
_DIRECT = re.compile(r"^db\.(?P<ref>[a-z0-9]+)\.supabase\.(?:co|com)\.?$", re.I)
_NO_ROUTE = (
    "network is unreachable",
    "address family not supported",
    "could not translate host name",
    "no route to host",
    "cannot assign requested address",
)


def _params(url: str | Mapping[str, object]) -> dict[str, str]:
    if isinstance(url, str):
        try:
            return {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(url).items()}
        except psycopg.ProgrammingError:
            return {}
    return {k: str(v) for k, v in url.items()}


def _hosts(params: Mapping[str, str]) -> list[str]:
    # hostaddr only matters when no host name is given: the name is what TLS and Supabase see.
    text = params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST", "")
    return [h.strip() for h in text.split(",")] if text else [""]


def is_local(params: Mapping[str, str]) -> bool:
    """True when every host is this machine: an empty host or a path is a unix socket."""
    return all(not h or h.startswith(("/", "@")) or h.lower() in LOCAL_HOSTS for h in _hosts(params))


def with_tls_default(params: dict[str, str]) -> dict[str, str]:
    """``sslmode=require`` for remote hosts when neither the URL nor PGSSLMODE chose a mode.
    ``verify-full`` with ``sslrootcert=`` in the URL is passed through untouched."""
    if "sslmode" in params or os.environ.get("PGSSLMODE") or is_local(params):
        return params
    if params.get("sslrootcert") == "system":
        return params  # libpq then defaults to verify-full and refuses a weaker mode
    return {**params, "sslmode": "require"}


def _ports(params: Mapping[str, str]) -> list[str]:
    text = params.get("port") or os.environ.get("PGPORT") or SESSION_PORT
    return [p.strip() or SESSION_PORT for p in text.split(",")]


def session_url(params: Mapping[str, str]) -> str:
    """The same server on port 5432, as a URL without the password (safe to print)."""
    host = _hosts(params)[0] or "HOST"
    user = params.get("user") or "postgres"
    if _SHARED_POOLER.search(host) and "." not in user:
        user = f"{user}.<project-ref>"
    netloc_host = f"[{host}]" if ":" in host else host
    dbname = params.get("dbname") or "postgres"
    query = f"?sslmode={params['sslmode']}" if params.get("sslmode") else ""
    netloc = f"{quote(user, safe='.<>-_')}:[YOUR-PASSWORD]@{netloc_host}:{SESSION_PORT}"
    return f"postgresql://{netloc}/{quote(dbname)}{query}"


def check_dump_url(url: str, what: str = "DATABASE_URL") -> None:
    """Refuse a URL pg_dump (or a restore) cannot work through: the transaction pooler."""
    params = _params(url)
    if TRANSACTION_POOLER_PORT in _ports(params):
        raise ConfigError(
            f"{what} uses port {TRANSACTION_POOLER_PORT}, Supabase's transaction pooler, where pg_dump and"
            " restores break (each transaction may land on another server session); use the session"
            f" pooler (or the direct host) on port {SESSION_PORT} instead: {session_url(params)}"
        )


def check_url(url: str, what: str = "DATABASE_URL") -> None:
    """Mistakes visible in the URL itself: the shared pooler without ``postgres.<project-ref>``."""
    params = _params(url)
    user = params.get("user") or os.environ.get("PGUSER", "")
    for host in _hosts(params):
        if _SHARED_POOLER.search(host) and user and "." not in user:
            raise ConfigError(
                f"{what}: Supabase's shared pooler ({host}) needs the user {user}.<project-ref>"
                f" (e.g. postgres.abcdefghijklmnopqrst), not {user!r}; copy the Session pooler string"
                " from the project's Connect dialog"
            )


def explain(message: str, url: str | Mapping[str, object]) -> str:
    """A hint (starting with "; ") naming the likely cause of a connection error, or ""."""
    lowered = message.lower()
    params = _params(url)
    host = _hosts(params)[0]
    direct = _DIRECT.match(host)
    if "tenant or user not found" in lowered or "no tenant identifier" in lowered:
        return (
            "; Supabase's pooler does not know this user/project: the user must be postgres.<project-ref>"
            " and the host copied from the project's Connect dialog (the aws-N prefix is not the region)"
        )
    if direct and any(s in lowered for s in _NO_ROUTE):
        return (
            f"; {host} has only an IPv6 address unless the project has the IPv4 add-on, and this network"
            " cannot reach it: use the Session pooler (Connect dialog; port 5432, user"
            f" postgres.{direct['ref']}) from IPv4-only networks"
        )
    if "password authentication failed" in lowered:
        return (
            "; the password is wrong for that user (Supabase: reset it under Database settings; special"
            " characters must be percent-encoded in a URL)"
        )
    if "server does not support ssl" in lowered:
        return (
            "; TLS is required by default for a remote host and this server offers none: add"
            " sslmode=disable (or prefer) to the URL only on a network you trust"
        )
    if "certificate" in lowered and ("verify" in lowered or "root" in lowered):
        return (
            "; the server certificate could not be verified: with sslmode=verify-full set sslrootcert= to"
            " the CA file (Supabase: download it under Database settings > SSL configuration)"
        )
    return ""


# A dead network path must end a dump, not hang it until the platform kills us: TCP keepalives
# notice a silent peer within about a minute. Values in the URL win.
KEEPALIVES = {"keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10", "keepalives_count": "3"}


def with_keepalives(params: Mapping[str, object]) -> dict[str, str]:
    """The libpq parameters every connection of ours gets unless the URL sets them: TCP
    keepalives, and sslmode=require for a remote host (``with_tls_default``)."""
    merged = {k: str(v) for k, v in params.items()}
    for key, value in KEEPALIVES.items():
        merged.setdefault(key, value)
    return with_tls_default(merged)


def libpq_target(url: str, what: str = "DATABASE_URL") -> tuple[str, dict[str, str], tuple[str, ...]]:
    """(conninfo without the password, environment carrying it in PGPASSWORD, secrets to redact)."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise UsageError(f"{what} is not a valid PostgreSQL URL or conninfo") from None
    password = params.pop("password", None)
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = str(password)
    conninfo = psycopg.conninfo.make_conninfo(**with_keepalives(params))
    return conninfo, env, (str(password),) if password else ()
