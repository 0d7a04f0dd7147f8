"""The manual-backup rate limit lives in PostgreSQL, so it holds across function instances:
two real functions-framework processes share one database, and one manager gets one start
per interval between them (429 with Retry-After for the other), whoever asks first."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from fakes.auth_people import ADMIN, MANAGER, auth_env
from fakes.jwks_fake import SupabaseJwksFake
from fakes.oidc_fake import GoogleCertsFake
from support.db import wait_until_gone
from support.paths import ROOT

pytest_plugins = ["fakes.auth_fixtures"]

BACKUP = ROOT / "functions" / "database_backup" / "main.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(port: int, token: str) -> tuple[int, dict[str, str], dict[str, object]]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/",
        data=b'{"trigger": "manual"}',
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


@pytest.fixture
def two_instances(
    google_certs: GoogleCertsFake, supabase: SupabaseJwksFake, app_db: str, tmp_path: Path
) -> Iterator[tuple[int, int]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKUP_", "AUTH_", "K_SERVICE"))}
    env |= auth_env(google_certs, supabase, app_db, tmp_path / "store") | {"MANUAL_BACKUP_INTERVAL_SECONDS": "300"}
    ports = (_free_port(), _free_port())
    argv = [sys.executable, "-m", "functions_framework", "--source", str(BACKUP), "--target", "database_backup"]
    procs = [
        subprocess.Popen(
            [*argv, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        deadline = time.monotonic() + 30
        for port in ports:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "the function did not start"
                    time.sleep(0.1)
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)


def test_one_manual_backup_per_user_per_interval_across_two_processes(
    two_instances: tuple[int, int], supabase: SupabaseJwksFake, app_db: str
) -> None:
    a, b = two_instances
    token = supabase.mint(MANAGER)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda port: _post(port, token), (a, b)))
    statuses = sorted(r[0] for r in results)
    assert statuses == [200, 429], results
    refused = next(r for r in results if r[0] == 429)
    assert 290 <= int(refused[1]["Retry-After"]) <= 300 and "error" in refused[2]
    # Later, on either instance: still limited; another manager is not.
    assert _post(a, token)[0] == 429 and _post(b, token)[0] == 429
    assert _post(b, supabase.mint(ADMIN))[0] == 200
    with psycopg.connect(app_db) as conn:
        rows = conn.execute("SELECT triggered_by FROM backup_logs ORDER BY started_at").fetchall()
    assert rows == [(MANAGER,), (ADMIN,)]  # a refused request started nothing


def test_a_slot_refused_with_409_is_given_back(
    two_instances: tuple[int, int], supabase: SupabaseJwksFake, app_db: str
) -> None:
    """A manager who hits a running backup (409) may try again at once, not after 5 minutes."""
    from dbbackup.pg.backup_log import BACKUP_LOCK_KEY

    a, _ = two_instances
    token = supabase.mint(MANAGER)
    with psycopg.connect(app_db, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (BACKUP_LOCK_KEY,))
        holder_pid = holder.info.backend_pid
        status, _, body = _post(a, token)
        assert status == 409 and body["status"] == "busy"
    wait_until_gone(app_db, holder_pid)
    assert _post(a, token)[0] == 200
