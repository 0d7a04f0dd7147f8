"""The two functions' endpoints (``database_backup``: POST a backup, GET /status;
``cleanup_old_backups``: POST), each a job behind ``guard.serve``. A backup is started through one
typed call, ``start_backup``, which the console's "Run Backup Now" uses as well."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from dbbackup import wiring
from dbbackup.auth.authenticator import SCHEDULER, USER, require
from dbbackup.auth.config import DEFAULT_MANUAL_INTERVAL_SECONDS
from dbbackup.errors import BackupError, ConfigError, DatabaseError, DatabaseUnavailable, LockBusy, UsageError
from dbbackup.http.guard import RequestContext, serve
from dbbackup.http.types import HttpReply, HttpRequest, error_reply
from dbbackup.pg.access import RateLimiter
from dbbackup.settings import Settings

log = logging.getLogger("dbbackup")

# RFC 3339 date-time: full date, T, time with optional fraction, and a mandatory offset.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
# What a job may raise when it cannot start: answered from the error's class (409 busy, 500).
NOT_STARTED = (LockBusy, ConfigError, DatabaseUnavailable, DatabaseError)


def _not_started(what: str, exc: BackupError) -> HttpReply:
    (log.warning if isinstance(exc, LockBusy) else log.error)(
        "%s %s: %s", what, "refused" if isinstance(exc, LockBusy) else "could not start", exc
    )
    return error_reply(exc)


def _object(body: bytes, example: str) -> dict[str, Any]:
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise UsageError("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise UsageError(f"the body must be a JSON object like {example}")
    return data


def parse_backup_body(body: bytes) -> str:
    """The trigger from ``{"trigger": "scheduled"|"manual"}``; UsageError says what is wrong."""
    data = _object(body, '{"trigger": "scheduled"}')
    unknown = set(data) - {"trigger"}
    if unknown:
        raise UsageError(f"unknown field(s): {', '.join(sorted(unknown))}")
    trigger = data.get("trigger")
    if trigger not in ("scheduled", "manual"):
        raise UsageError('"trigger" must be "scheduled" or "manual"')
    return str(trigger)


def parse_cleanup_body(body: bytes) -> bool:
    """``dry_run`` from an empty body, ``{}`` or ``{"dry_run": true}``; UsageError says what is wrong."""
    if not (body or b"").strip():
        return False
    data = _object(body, '{"dry_run": false}')
    unknown = set(data) - {"dry_run", "trigger"}  # trigger: Cloud Scheduler jobs may reuse one body
    if unknown:
        raise UsageError(f"unknown field(s): {', '.join(sorted(unknown))}")
    dry_run = data.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise UsageError('"dry_run" must be true or false')
    return dry_run


def parse_schedule_time(value: str | None) -> datetime | None:
    """Cloud Scheduler's ``X-CloudScheduler-ScheduleTime`` (RFC 3339, with an offset or ``Z``),
    as an aware datetime; None when absent. UsageError says what is wrong (never echoing more
    than a short prefix of what was sent)."""
    if value is None:
        return None
    text = value.strip()
    if not _RFC3339.match(text):
        raise UsageError(
            f"X-CloudScheduler-ScheduleTime {text[:40]!r} is not an RFC 3339 time such as 2026-11-25T01:00:00Z"
        )
    try:
        return datetime.fromisoformat(text.replace("t", "T").replace("z", "Z"))
    except ValueError:  # matches the shape but is no real moment (month 13, 25 o'clock)
        raise UsageError(f"X-CloudScheduler-ScheduleTime {text[:40]!r} is not a valid date and time") from None


def run_backup(
    settings: Settings, trigger: str, triggered_by: str | None = None, schedule_time: datetime | None = None
) -> tuple[dict[str, Any], int]:
    """The backup job for an already authorised caller, as the answer's body and status;
    ``triggered_by`` is who asked (a token's subject), logged in ``backup_logs``;
    ``schedule_time`` is the scheduler's slot, so that its retries never back up a slot twice."""
    try:
        outcome = wiring.backup_job(settings).run(trigger, triggered_by, schedule_time)
    except NOT_STARTED as exc:
        reply = _not_started("backup", exc)
        return reply.body, reply.status
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
    # With several targets, where each copy is (a failed attempt may still hold complete copies).
    copies = {"copies": outcome.copies} if outcome.copies is not None else {}
    if outcome.status == "success":
        log.info("backup %s succeeded: %s (%s bytes)", outcome.backup_log_id, outcome.path, outcome.file_size_bytes)
        for line in outcome.warnings:
            log.warning("backup %s: %s", outcome.backup_log_id, line)
        extra = {"file_id": outcome.file_id, "md5": outcome.md5, "seconds": outcome.seconds}
        objects = {"storage": outcome.storage} if outcome.storage is not None else {}
        return result | extra | {"tables": outcome.tables, "warnings": outcome.warnings} | copies | objects, 200
    log.error("backup %s failed: %s", outcome.backup_log_id, outcome.reason)
    failed = {"backup_log_id": outcome.backup_log_id, "status": "failed", "failure_reason": outcome.reason}
    return failed | copies, 500


def start_backup(ctx: RequestContext, trigger: str, schedule_time: datetime | None = None) -> HttpReply:
    """A backup for the caller in ``ctx``: who may start which trigger, the managers' rate limit
    (a slot given back when another backup was running), then the job."""
    caller = ctx.caller
    if trigger == "scheduled":
        require(caller, (SCHEDULER,), "start a scheduled backup")
    else:
        require(caller, (USER,), "start a manual backup")
    limiter, slot = None, None
    if caller.kind == USER:
        auth = ctx.settings.auth
        limiter = RateLimiter(ctx.db.get(), auth.manual_interval_seconds if auth else DEFAULT_MANUAL_INTERVAL_SECONDS)
        slot = limiter.claim(caller.subject)
        if not slot.granted:
            retry = str(slot.retry_after_seconds)
            log.warning("refused manual backup for %s: rate limited, retry in %s s", caller.label, retry)
            return HttpReply(
                {"error": f"a manual backup was started less than {limiter.interval} s ago; retry in {retry} s"},
                429,
                {"Retry-After": retry},
            )
    log.info("%s backup requested by %s", trigger, caller.label)
    body, status = run_backup(ctx.settings, trigger, triggered_by=caller.subject, schedule_time=schedule_time)
    if status == 409 and limiter is not None and slot is not None:
        limiter.release(caller.subject, slot)
    return HttpReply(body, status)


def status_reply(settings: Settings) -> HttpReply:
    """Backup health (``GET /status``): read-only, never alerts."""
    try:
        return HttpReply(wiring.health(settings).as_dict(), 200)
    except (ConfigError, DatabaseUnavailable, DatabaseError) as exc:
        log.error("status could not be read: %s", exc)
        return error_reply(exc)


def _backup(req: HttpRequest, ctx: RequestContext) -> HttpReply:
    if req.method == "GET":
        if not req.path.rstrip("/").endswith("/status"):
            return HttpReply({"error": "method not allowed; use POST (or GET /status for backup health)"}, 405)
        require(ctx.caller, (SCHEDULER, USER), "read the backup status")
        return status_reply(ctx.settings)
    try:
        trigger = parse_backup_body(req.body)
        # The slot; Scheduler's retries repeat it, so a slot that succeeded is never backed up twice.
        header = req.headers.get("x-cloudscheduler-scheduletime") if trigger == "scheduled" else None
        if trigger == "scheduled":
            # Checked before the header is parsed (start_backup checks again): who may not start a
            # scheduled backup gets 403, never a 400 about a header they should not send.
            require(ctx.caller, (SCHEDULER,), "start a scheduled backup")
        schedule_time = parse_schedule_time(header)
    except UsageError as exc:
        return HttpReply({"error": str(exc)}, exc.http_status)
    return start_backup(ctx, trigger, schedule_time)


def _cleanup(req: HttpRequest, ctx: RequestContext) -> HttpReply:
    try:
        dry_run = parse_cleanup_body(req.body)
    except UsageError as exc:
        return HttpReply({"error": str(exc)}, exc.http_status)
    require(ctx.caller, (SCHEDULER,), "run the cleanup")
    log.info("cleanup requested by %s", ctx.caller.label)
    try:
        result = wiring.cleanup_job(ctx.settings).run(dry_run=dry_run)
    except NOT_STARTED as exc:
        return _not_started("cleanup", exc)
    return HttpReply(result.as_dict(), 200 if result.status == "success" else 500)


def _verify(req: HttpRequest, ctx: RequestContext) -> HttpReply:
    try:
        data = _object(req.body, "{}") if req.body.strip() else {}
        unknown = set(data) - {"trigger"}  # one Scheduler body may serve every function
        if unknown:
            raise UsageError(f"unknown field(s): {', '.join(sorted(unknown))}")
    except UsageError as exc:
        return HttpReply({"error": str(exc)}, exc.http_status)
    require(ctx.caller, (SCHEDULER,), "run the restore drill")
    log.info("restore drill requested by %s", ctx.caller.label)
    try:
        result = wiring.drill(ctx.settings).run()
    except NOT_STARTED as exc:
        return _not_started("restore drill", exc)
    return HttpReply(result.as_dict(), 500 if result.status == "failed" else 200)


def backup_endpoint(req: HttpRequest, env: Mapping[str, str] | None = None) -> HttpReply:
    """``database_backup``: POST (scheduled by the scheduler, manual by a manager), GET /status."""
    return serve(req, env, _backup, ("POST", "GET", "OPTIONS"), cors=True)


def cleanup_endpoint(req: HttpRequest, env: Mapping[str, str] | None = None) -> HttpReply:
    """``cleanup_old_backups``: POST by the scheduler only; no browser ever calls it (no CORS)."""
    return serve(req, env, _cleanup, ("POST",), cors=False)


def verify_endpoint(req: HttpRequest, env: Mapping[str, str] | None = None) -> HttpReply:
    """``verify_backup``: POST by the scheduler only (the weekly restore drill); no CORS."""
    return serve(req, env, _verify, ("POST",), cors=False)
