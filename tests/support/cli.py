"""The real ``dbbackup`` console entry point, run in a subprocess as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cli_env(database_url: str | None, **extra: str) -> dict[str, str]:
    """This process's environment minus any BACKUP_*/PG_DUMP*/DATABASE_URL the developer has set,
    so a test sees only the configuration it gives."""
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


def pg_dump_that_fails(directory: Path, after_dumping: bool = False) -> Path:
    """A PG_DUMP_PATH that passes the checks (its --version is the bundled pg_dump's) and then
    fails as pg_dump does when the connection drops: the backup's row exists and ends failed.
    ``after_dumping``: only after writing the whole dump, so everything but the file's end has
    streamed to storage when it fails."""
    from dbbackup.pg import binaries as pgbin

    real = pgbin.tool("pg_dump")
    script = directory / "pg_dump"
    script.write_text(
        f'#!/bin/sh\nif [ "$1" = "--version" ]; then exec "{real}" --version; fi\n'
        + (f'"{real}" "$@"\n' if after_dumping else "")
        + 'echo "pg_dump: error: connection lost" >&2\nexit 1\n'
    )
    script.chmod(0o755)
    return script
