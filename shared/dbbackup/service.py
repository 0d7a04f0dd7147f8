"""The HTTP contract of the functions, without any web framework: method + body in,
(JSON-able dict, status) out. The adapters in ``functions/`` only translate Flask to this."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .backup import BackupJob
from .errors import ConfigError, DatabaseUnavailable, LockBusy
from .settings import Settings

log = logging.getLogger("dbbackup")

Response = tuple[dict[str, Any], int]
# RFC 3339 date-time: full date, T, time with optional fraction, and a mandatory offset.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


def _start[T](what: str, job: Callable[[], T]) -> T | Response:
    """Run a job, or the answer for why it could not start: the one place these errors become
    HTTP statuses (409 busy, 500 configuration or database)."""
    try:
        return job()
    except LockBusy as exc:
        log.warning("%s refused: %s", what, exc)
        return {"error": str(exc), "status": "busy"}, 409
    except (ConfigError, DatabaseUnavailable) as exc:
        log.error("%s could not start: %s", what, exc)
        return {"error": str(exc), "status": "failed"}, 500


def parse_backup_body(body: bytes) -> str:
    """The trigger from ``{"trigger": "scheduled"|"manual"}``; ValueError says what is wrong."""
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError('the body must be a JSON object like {"trigger": "scheduled"}')
    unknown = set(data) - {"trigger"}
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
    trigger = data.get("trigger")
    if trigger not in ("scheduled", "manual"):
        raise ValueError('"trigger" must be "scheduled" or "manual"')
    return trigger


def parse_schedule_time(value: str | None) -> datetime | None:
    """Cloud Scheduler's ``X-CloudScheduler-ScheduleTime`` (RFC 3339, with an offset or ``Z``),
    as an aware datetime; None when absent. ValueError says what is wrong (never echoing more
    than a short prefix of what was sent)."""
    if value is None:
        return None
    text = value.strip()
    if not _RFC3339.match(text):
        raise ValueError(
            f"X-CloudScheduler-ScheduleTime {text[:40]!r} is not an RFC 3339 time such as 2026-11-25T01:00:00Z"
        )
    try:
        return datetime.fromisoformat(text.replace("t", "T").replace("z", "Z"))
    except ValueError:  # matches the shape but is no real moment (month 13, 25 o'clock)
        raise ValueError(f"X-CloudScheduler-ScheduleTime {text[:40]!r} is not a valid date and time") from None


def handle_backup(
    method: str,
    body: bytes,
    settings: Settings | None = None,
    path: str = "/",
    triggered_by: str | None = None,
    schedule_time: datetime | None = None,
) -> Response:
    """The job behind the function, for an already authorised caller (``gateway`` checks who may
    call); ``triggered_by`` is who asked (a token's subject), logged in ``backup_logs``;
    ``schedule_time`` is the scheduler's slot, so that its retries never back up a slot twice."""
    if method == "GET" and path.rstrip("/").endswith("/status"):
        return handle_status(settings)
    if method != "POST":
        return {"error": "method not allowed; use POST (or GET /status for backup health)"}, 405
    try:
        trigger = parse_backup_body(body)
    except ValueError as exc:
        return {"error": str(exc)}, 400
    started = _start(
        "backup", lambda: BackupJob(settings or Settings.from_env()).run(trigger, triggered_by, schedule_time)
    )
    if isinstance(started, tuple):
        return started
    outcome = started
    if outcome.status == "skipped":
        log.info("scheduled backup skipped: %s", outcome.reason)
        skipped: dict[str, Any] = {"status": "skipped", "reason": outcome.reason}
        if outcome.backup_log_id:  # already done: the slot's successful backup
            skipped |= {"backup_log_id": outcome.backup_log_id, "file_name": outcome.file_name, "path": outcome.path}
        return skipped, 200
    result = {
        "backup_log_id": outcome.backup_log_id,
        "status": outcome.status,
        "file_name": outcome.file_name,
        "file_size_bytes": outcome.file_size_bytes,
        "path": outcome.path,
    }
    if outcome.status == "success":
        log.info("backup %s succeeded: %s (%s bytes)", outcome.backup_log_id, outcome.path, outcome.file_size_bytes)
        return result | {"file_id": outcome.file_id, "md5": outcome.md5, "seconds": outcome.seconds}, 200
    log.error("backup %s failed: %s", outcome.backup_log_id, outcome.reason)
    return {"backup_log_id": outcome.backup_log_id, "status": "failed", "failure_reason": outcome.reason}, 500


def handle_status(settings: Settings | None = None) -> Response:
    """Backup health (``GET /status`` on the backup function): read-only, never alerts."""
    from datetime import UTC, datetime

    from . import db
    from .monitoring import read_health

    try:
        settings = settings or Settings.from_env()
        with db.connect(settings.database_url, attempts=settings.connect_attempts, secrets=settings.secrets) as conn:
            health = read_health(conn, datetime.now(UTC), settings.max_age_hours)
    except (ConfigError, DatabaseUnavailable) as exc:
        log.error("status could not be read: %s", exc)
        return {"error": str(exc), "status": "failed"}, 500
    return health.as_dict(), 200


def parse_cleanup_body(body: bytes) -> bool:
    """``dry_run`` from an empty body, ``{}`` or ``{"dry_run": true}``; ValueError says what is wrong."""
    if not (body or b"").strip():
        return False
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError('the body must be a JSON object like {"dry_run": false}')
    unknown = set(data) - {"dry_run", "trigger"}  # trigger: Cloud Scheduler jobs may reuse one body
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
    dry_run = data.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ValueError('"dry_run" must be true or false')
    return dry_run


def handle_cleanup(method: str, body: bytes, settings: Settings | None = None) -> Response:
    """The ``cleanup_old_backups`` function: 200 when every expired file was deleted, 500 (with
    the same result, naming the files) when any was not, 409 when another cleanup runs."""
    from .cleanup import CleanupJob

    if method != "POST":
        return {"error": "method not allowed; use POST"}, 405
    try:
        dry_run = parse_cleanup_body(body)
    except ValueError as exc:
        return {"error": str(exc)}, 400
    started = _start("cleanup", lambda: CleanupJob(settings or Settings.from_env()).run(dry_run=dry_run))
    if isinstance(started, tuple):
        return started
    result = started
    return result.as_dict(), 200 if result.status == "success" else 500
