"""Running the bundled PostgreSQL programs: argv (never a shell), the password in the
environment (never in argv, which every local user can read), stderr captured and redacted,
the whole process group stopped on the way out."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections import deque
from collections.abc import Mapping
from typing import IO

import psycopg
import psycopg.conninfo

from dbbackup.errors import UsageError
from dbbackup.pg.conninfo import with_tls_default
from dbbackup.redact import redact

# A dead network path must end a dump, not hang it until the platform kills us: TCP keepalives
# notice a silent peer within about a minute. Values in the URL win.
KEEPALIVES = {"keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10", "keepalives_count": "3"}


def with_keepalives(params: Mapping[str, object]) -> dict[str, str]:
    """The libpq parameters every connection of ours gets unless the URL sets them: TCP
    keepalives, and sslmode=require for a remote host (supabase_conn.with_tls_default)."""
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


def drain_lines(pipe: IO[bytes], sink: deque[str], secrets: tuple[str, ...]) -> None:
    """Collect a program's stderr lines, redacted, into a bounded deque (run in a thread)."""
    for raw in iter(pipe.readline, b""):
        line = redact(raw.decode(errors="replace").rstrip(), secrets)
        if line:
            sink.append(line)


def stop_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the process group (pg_dump may run under a wrapper), SIGKILL after ``grace``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM if grace else signal.SIGKILL)
    try:
        proc.wait(timeout=grace or None)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
