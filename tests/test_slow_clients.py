"""Slow clients: a few connections trickling their requests one byte at a time must not take
every thread of the server the functions run under (functions-framework's gunicorn) and lock the
console out for everyone. The real server, in a subprocess, as `functions-framework` runs it."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import cli_env
from support.paths import ROOT

BIN = Path(sys.executable).parent
CONSOLE = ROOT / "functions" / "backup_console"
THREADS = 2  # the server's worker threads (functions-framework reads THREADS; default 4 per CPU)
SLOW_CLIENTS = 3 * THREADS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def console(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    env = cli_env(None, THREADS=str(THREADS), REQUEST_READ_TIMEOUT_SECONDS="2", AUTH_MODE="disabled")
    env.pop("K_SERVICE", None)
    log = tmp_path / "server.log"
    process = subprocess.Popen(
        [
            str(BIN / "functions-framework"),
            *("--source", str(CONSOLE / "main.py"), "--target", "backup_console"),
            *("--host", "127.0.0.1", "--port", str(port)),
        ],
        cwd=CONSOLE,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()[-2000:]
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _trickle(url: str, stop: threading.Event) -> None:
    """A request sent one byte every 0.2 s, for as long as the server keeps reading."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        for byte in b"GET /api/client-config HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 10_000:
            if stop.is_set():
                return
            try:
                s.sendall(bytes([byte]))
            except OSError:
                return  # the server closed it: what it should do
            time.sleep(0.2)


def test_slow_clients_do_not_lock_the_console_out(console: str) -> None:
    stop = threading.Event()
    slow = [threading.Thread(target=_trickle, args=(console, stop), daemon=True) for _ in range(SLOW_CLIENTS)]
    for t in slow:
        t.start()
    try:
        time.sleep(1)  # every thread is now reading a trickling request
        started = time.monotonic()
        with urllib.request.urlopen(console + "/api/client-config", timeout=15) as resp:
            assert resp.status == 200
        assert time.monotonic() - started < 10
    finally:
        stop.set()
