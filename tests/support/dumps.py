"""Stand-ins for pg_dump that fail the way real ones do (for alert and log tests)."""

from __future__ import annotations

from pathlib import Path

from dbbackup.pg import binaries as pgbin


def failing_pg_dump(tmp_path: Path) -> Path:
    """A pg_dump that fails the way a broken connection does, echoing its connection string and
    password: the raw error holds the secret, the alert must not."""
    real = pgbin.tool("pg_dump")
    script = tmp_path / "pg_dump"
    script.write_text(
        f'#!/bin/sh\nif [ "$1" = "--version" ]; then exec "{real}" --version; fi\n'
        'echo "pg_dump: error: connection to postgresql://app:$PGPASSWORD@db.example.com:5432/postgres failed:'
        ' FATAL: password=$PGPASSWORD rejected" >&2\nexit 1\n'
    )
    script.chmod(0o755)
    return script
