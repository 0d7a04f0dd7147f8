"""Logs Cloud Logging understands (issue 18): with K_SERVICE or LOG_FORMAT=json every stderr line
is one JSON object with severity, message, time, trace and labels, redacted as before; a
terminal keeps its plain lines."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from functions_framework import create_app

from dbbackup import structured_log
from support.cli import run_cli
from support.db import OwnerDb
from support.dumps import failing_pg_dump
from support.paths import ROOT

TRACE = "105445aa7843bc8bf206b12000100000"
SEVERITIES = {"DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL"}


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line parsed; a line that is not one JSON object fails the test."""
    lines = text.splitlines()
    assert lines, "nothing was written"
    parsed = []
    for line in lines:
        obj = json.loads(line)
        assert isinstance(obj, dict) and obj["severity"] in SEVERITIES and obj["message"], line
        assert obj["time"].endswith("Z") and "T" in obj["time"], line
        parsed.append(obj)
    return parsed


@pytest.fixture
def root_logging() -> Iterator[None]:
    """The root logger as it was: structured_log.configure replaces its console handler."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def app_db(owner_db: OwnerDb) -> OwnerDb:
    run_cli(["migrate"], owner_db.url, check=True)
    return owner_db


def test_a_failed_cli_backup_with_log_format_json_writes_only_json_lines_with_an_error_and_no_secret(
    app_db: OwnerDb, tmp_path: Path
) -> None:
    proc = run_cli(
        ["backup"],
        app_db.url,
        LOG_FORMAT="json",
        PG_DUMP_PATH=str(failing_pg_dump(tmp_path)),
        BACKUP_LOCAL_ROOT=str(tmp_path / "store"),
    )
    assert proc.returncode == 1
    entries = json_lines(proc.stderr)
    assert app_db.password not in proc.stderr
    errors = [e for e in entries if e["severity"] == "ERROR"]
    assert errors and any(e["message"].startswith("backup ") and " failed: pg_dump" in e["message"] for e in errors)
    # The alert (log only, no SendGrid key) is among them, in full and redacted.
    assert any("ALERT (log only" in e["message"] and "***" in e["message"] for e in errors)
    labels = entries[-1]["logging.googleapis.com/labels"]
    assert labels["trigger"] == "scheduled" and f"backup {labels['backup_log_id']} failed" in entries[-1]["message"]


def test_a_terminal_keeps_its_plain_one_line_error(app_db: OwnerDb, tmp_path: Path) -> None:
    proc = run_cli(
        ["backup"], app_db.url, PG_DUMP_PATH=str(failing_pg_dump(tmp_path)), BACKUP_LOCAL_ROOT=str(tmp_path / "s")
    )
    assert proc.returncode == 1
    [line] = proc.stderr.splitlines()
    assert line.startswith("backup ") and " failed: pg_dump" in line and app_db.password not in line


def test_cli_usage_and_configuration_errors_are_json_too(tmp_path: Path) -> None:
    usage = run_cli(["backup", "--no-such-flag"], None, LOG_FORMAT="json")
    config = run_cli(["backup"], None, K_SERVICE="dbbackup-database-backup")
    for proc in (usage, config):
        assert proc.returncode == 2
        [entry] = json_lines(proc.stderr)
        assert entry["severity"] == "ERROR" and entry["message"].startswith("dbbackup: ")
    assert "DATABASE_URL is not set" in config.stderr


def test_the_function_logs_json_with_the_requests_trace_and_labels(
    app_db: OwnerDb,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    root_logging: None,
) -> None:
    for name, value in {
        "DATABASE_URL": app_db.url,
        "BACKUP_LOCAL_ROOT": str(tmp_path / "store"),
        "PG_DUMP_PATH": str(failing_pg_dump(tmp_path)),
        "AUTH_MODE": "disabled",  # who may call is test_auth.py's; refused with K_SERVICE, hence LOG_FORMAT
        "LOG_FORMAT": "json",
        "GOOGLE_CLOUD_PROJECT": "my-project",
        "FUNCTION_TARGET": "database_backup",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("K_SERVICE", raising=False)
    client = create_app("database_backup", str(ROOT / "functions" / "database_backup" / "main.py")).test_client()
    capsys.readouterr()
    answer = client.post("/", json={"trigger": "manual"}, headers={"X-Cloud-Trace-Context": f"{TRACE}/1;o=1"})
    assert answer.status_code == 500
    err = capsys.readouterr().err
    entries = json_lines(err)
    assert app_db.password not in err
    assert any(e["severity"] == "ERROR" for e in entries)
    ours = [e for e in entries if e.get("logger", "").startswith("dbbackup")]
    assert ours and all(e["logging.googleapis.com/trace"] == f"projects/my-project/traces/{TRACE}" for e in ours)
    labels = ours[-1]["logging.googleapis.com/labels"]
    assert labels == {
        "function": "database_backup",
        "trigger": "manual",
        "backup_log_id": answer.get_json()["backup_log_id"],
    }

    # The next request starts clean: its own trace (W3C traceparent here), not the earlier backup's id.
    other = "4bf92f3577b34da6a3ce929d0e0e4736"
    again = client.post("/", json={"trigger": "scheduled"}, headers={"traceparent": f"00-{other}-00f067aa0ba902b7-01"})
    later = [e for e in json_lines(capsys.readouterr().err) if e.get("logger", "").startswith("dbbackup")]
    assert later and all(e["logging.googleapis.com/trace"] == f"projects/my-project/traces/{other}" for e in later)
    assert later[0]["logging.googleapis.com/labels"] == {"function": "database_backup"}
    assert later[-1]["logging.googleapis.com/labels"]["backup_log_id"] == again.get_json()["backup_log_id"]
    assert again.get_json()["backup_log_id"] != answer.get_json()["backup_log_id"]


def test_json_records_are_redacted_and_a_traceback_stays_one_line(
    capsys: pytest.CaptureFixture[str], root_logging: None
) -> None:
    assert structured_log.configure(logging.DEBUG, env={"LOG_FORMAT": "json"})
    log = logging.getLogger("dbbackup.test")
    log.info("connecting to postgresql://app:hunter2-secret@db.example.com/postgres")
    try:
        raise ValueError("line one\nline two PGPASSWORD=hunter2-secret")
    except ValueError:
        log.exception("it broke")
    logging.getLogger("dbbackup.test").log(25, "between info and warning")
    entries = json_lines(capsys.readouterr().err)
    assert [e["severity"] for e in entries] == ["INFO", "ERROR", "NOTICE"]
    assert "hunter2-secret" not in json.dumps(entries)
    assert entries[1]["message"].startswith("it broke [ValueError: line one line two PGPASSWORD=***")


def test_plain_lines_off_cloud_run_and_with_log_format_text(
    capsys: pytest.CaptureFixture[str], root_logging: None
) -> None:
    for env in ({}, {"K_SERVICE": "svc", "LOG_FORMAT": "text"}):
        assert not structured_log.configure(logging.INFO, env=env)
        logging.getLogger("dbbackup.test").warning("plain please")
        assert capsys.readouterr().err == "WARNING dbbackup.test: plain please\n"
    assert structured_log.json_wanted({"K_SERVICE": "svc"})
    assert structured_log.json_wanted({"LOG_FORMAT": "JSON"})


def test_trace_ids_are_read_from_either_header_and_nothing_else() -> None:
    assert structured_log.trace_id({"X-Cloud-Trace-Context": f"{TRACE}/123;o=1"}) == TRACE
    assert structured_log.trace_id({"x-cloud-trace-context": TRACE.upper()}) == TRACE
    assert structured_log.trace_id({"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}) == TRACE
    for bad in ({}, {"traceparent": "garbage"}, {"X-Cloud-Trace-Context": "x" * 32}):
        assert structured_log.trace_id(bad) is None
