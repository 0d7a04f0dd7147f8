"""CLI contract: exit codes 0/1/2 and one-line errors, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from support.cli import cli_env, pg_dump_that_fails, run_cli


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["backup"], {}, "DATABASE_URL is not set"),
        (["backup", "--bogus"], {"DATABASE_URL": "postgresql://x@127.0.0.1/x"}, "unrecognized arguments"),
        (["frobnicate"], {}, "invalid choice"),
        (
            ["backup"],
            {"DATABASE_URL": "postgresql://x@h/x", "BACKUP_TIMEZONE": "Mars/Base"},
            "BACKUP_TIMEZONE",
        ),
        (["backup"], {"DATABASE_URL": "postgresql://x@h/x", "BACKUP_STORAGE": "ftp"}, "BACKUP_STORAGE"),
        (["backup"], {"DATABASE_URL": "postgresql://x@h/x", "BACKUP_GZIP_LEVEL": "9"}, "BACKUP_GZIP_LEVEL"),
        (["backup"], {"DATABASE_URL": "host=x port=notaport sslmode=bogus"}, "DATABASE_URL"),
        (["logs", "--limit", "0"], {"DATABASE_URL": "postgresql://x@h/x"}, "--limit"),
    ],
)
def test_usage_and_configuration_errors_exit_2_with_one_line(args: list[str], env: dict, needle: str) -> None:
    url = env.pop("DATABASE_URL", None)
    proc = run_cli(args, url, **env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and needle in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_prints_the_installed_version(flag: str) -> None:
    from importlib.metadata import version

    proc = run_cli([flag], None)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"dbbackup {version('dbbackup')}\n", "")


def test_a_failed_backup_exits_1(migrated_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc = run_cli(
        ["backup"], migrated_url, BACKUP_LOCAL_ROOT=str(tmp_path), PG_DUMP_PATH=str(pg_dump_that_fails(tmp_path))
    )
    assert proc.returncode == 1 and "failed" in proc.stderr


def test_logs_has_a_header_and_times_in_the_backup_timezone_with_their_offset(migrated_url: str) -> None:
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO backup_logs (backup_type, status, file_name, started_at)"
            " VALUES ('manual', 'failed', 'DB_Backup_x.sql.gz', '2025-03-01 20:00:00+00')"
        )
    proc = run_cli(["logs"], migrated_url, BACKUP_TIMEZONE="Asia/Kolkata")
    assert proc.returncode == 0, proc.stderr
    header, line = proc.stdout.splitlines()
    assert header.split()[:4] == ["started", "status", "type", "size"]
    assert line.startswith("2025-03-02 01:30:00+05:30  failed")


def test_logs_says_when_no_backup_matches(migrated_url: str) -> None:
    for args in (["logs"], ["logs", "--status", "success"]):
        proc = run_cli(args, migrated_url)
        assert proc.returncode == 0 and proc.stdout.startswith("no backups match"), proc.stdout


def test_the_demo_writes_into_a_folder_of_its_own(tmp_path: Path) -> None:
    real = tmp_path / "real-backups"
    proc = subprocess.run(
        [sys.executable, "-m", "dbbackup.cli", "demo"],
        env=cli_env(None, BACKUP_LOCAL_ROOT=str(real)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not real.exists() and not (tmp_path / "backups").exists()
    assert list((tmp_path / "demo-backups").rglob("DB_Backup_*.sql.gz"))
