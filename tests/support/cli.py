"""The real ``dbbackup`` console entry point, run in a subprocess as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys


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
