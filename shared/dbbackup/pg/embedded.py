"""A throwaway PostgreSQL server started from the bundled binaries.

Used by the tests (when no TEST_DATABASE_URL is given), by ``verify --restore-test`` and by
the demo. The server lives in a temporary directory on a free 127.0.0.1 port, and ``stop()``
(also run by the context manager and at interpreter exit) removes every trace of it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbbackup.errors import ConfigError
from dbbackup.pg import binaries as pgbin


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> tuple[int, int] | None:
    """initdb and postgres refuse to run as root; pick an unprivileged account then."""
    if os.geteuid() != 0:
        return None
    for name in filter(None, [os.environ.get("DBBACKUP_EMBEDDED_USER"), "postgres", "nobody"]):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise ConfigError("running as root and no unprivileged user (postgres, nobody) exists")


@dataclass
class EmbeddedPostgres:
    """One throwaway server. ``url(dbname)`` gives a libpq URL for user ``postgres``."""

    bin_dir: Path | None = None
    ssl_cert: Path | None = None
    ssl_key: Path | None = None
    settings: dict[str, str] = field(default_factory=dict)
    hba: list[str] | None = None  # pg_hba.conf lines; default trusts everyone on 127.0.0.1
    port: int = 0
    base: Path | None = None
    _started: bool = False

    def start(self) -> EmbeddedPostgres:
        bin_dir = self.bin_dir or pgbin.bundled_bin_dir()
        self.bin_dir = bin_dir
        owner = _run_as()
        self.base = Path(tempfile.mkdtemp(prefix="dbbackup-pg-"))
        data = self.base / "data"
        if owner:
            os.chown(self.base, *owner)
        os.chmod(self.base, 0o700)
        kwargs: dict[str, Any] = {"user": owner[0], "group": owner[1], "extra_groups": []} if owner else {}
        self._run(
            [
                bin_dir / "initdb",
                "-D",
                data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            kwargs,
        )
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": "''",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "60",
            "shared_buffers": "64MB",
        }
        if self.ssl_cert and self.ssl_key:
            for src, name in ((self.ssl_cert, "server.crt"), (self.ssl_key, "server.key")):
                shutil.copy(src, data / name)
                os.chmod(data / name, 0o600)
                if owner:
                    os.chown(data / name, *owner)
            conf |= {"ssl": "on", "ssl_cert_file": "'server.crt'", "ssl_key_file": "'server.key'"}
        conf |= {k: v for k, v in self.settings.items()}
        if self.hba is not None:
            (data / "pg_hba.conf").write_text("\n".join(self.hba) + "\n")
        with open(data / "postgresql.auto.conf", "a") as fh:
            fh.writelines(f"{k} = {v}\n" for k, v in conf.items())
        last_error = ""
        for _ in range(5):  # the chosen port can be taken between probing and binding
            self.port = free_port()
            proc = subprocess.run(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    str(self.base / "server.log"),
                    "-o",
                    f"-p {self.port}",
                    "start",
                ],
                capture_output=True,
                text=True,
                check=False,
                **kwargs,
            )
            if proc.returncode == 0:
                self._started = True
                atexit.register(self.stop)
                return self
            last_error = self._log_tail() or proc.stderr.strip()
        self.stop()
        raise ConfigError(f"the throwaway PostgreSQL server did not start: {last_error}")

    def _run(self, argv: list[str | Path], kwargs: dict[str, Any]) -> None:
        proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False, **kwargs)
        if proc.returncode != 0:
            self.stop()
            raise ConfigError(f"{Path(argv[0]).name} failed: {proc.stderr.strip()[-500:]}")

    def _log_tail(self) -> str:
        if self.base is None:
            return ""
        with contextlib.suppress(OSError):
            return (self.base / "server.log").read_text()[-500:].strip()
        return ""

    def url(self, dbname: str = "postgres", **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}" + (f"?{query}" if query else "")

    def stop(self) -> None:
        if self.base is None:
            return
        if self._started and self.bin_dir is not None:
            owner = _run_as()
            kwargs: dict[str, Any] = {"user": owner[0], "group": owner[1], "extra_groups": []} if owner else {}
            subprocess.run(
                [
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.base / "data"),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
                capture_output=True,
                check=False,
                **kwargs,
            )
            self._started = False
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
