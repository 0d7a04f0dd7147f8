"""Applying the SQL migrations in ``migrations/`` in order, each once, each in a transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources

import psycopg

MIGRATIONS_TABLE = "public.dbbackup_migrations"
LOCK_KEY = 0x6462_6D69_6772  # "dbmigr": serialises concurrent migrate runs


@dataclass
class MigrationReport:
    applied: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


def available() -> list[tuple[str, str]]:
    folder = resources.files("dbbackup.pg") / "migrations"
    files = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), (folder / name).read_text()) for name in files]


def migrate(conn: psycopg.Connection) -> MigrationReport:
    report = MigrationReport()

    def on_notice(diag: psycopg.errors.Diagnostic) -> None:
        message = diag.message_primary or ""
        noisy = "already exists, skipping" in message or "does not exist, skipping" in message
        if message and diag.severity_nonlocalized in ("NOTICE", "WARNING") and not noisy:
            report.notices.append(message)

    conn.add_notice_handler(on_notice)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute(f"SELECT version FROM {MIGRATIONS_TABLE}")}
            for version, sql in available():
                if version in done:
                    report.already.append(version)
                    continue
                conn.execute(sql)  # our own SQL files, shipped in the package
                conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} (version) VALUES (%s)", (version,))
                report.applied.append(version)
    finally:
        conn.remove_notice_handler(on_notice)
    return report
