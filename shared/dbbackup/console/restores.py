"""Restore and "Verify now" from the console (docs/console.md, docs/http-api.md).

A manager restores a backup into one of the operator's RESTORE_TARGETS by typing its name; the
URL never reaches the browser. The restore runs inside the request, as Run Backup Now does: a
Cloud Functions gen2 instance gets CPU only while it answers a request, so work left running after
the answer would crawl or stop. The page polls ``GET /api/restores`` meanwhile for progress.

Refusals (bad body, unknown target, wrong confirmation, no such backup, encrypted without an
identity, rate limit) write nothing. Every restore that starts is a ``restore_logs`` row, and a
failed one alerts."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from dbbackup import wiring
from dbbackup.auth.config import DEFAULT_MANUAL_INTERVAL_SECONDS
from dbbackup.core import messages, naming
from dbbackup.errors import BackupError, ConfigError, LockBusy, UsageError
from dbbackup.http.guard import RequestContext
from dbbackup.http.types import HttpReply, HttpRequest
from dbbackup.pg import binaries as pgbin
from dbbackup.pg import connect as db
from dbbackup.pg import scratch
from dbbackup.pg.access import RateLimiter
from dbbackup.pg.backup_log import PgBackupLog
from dbbackup.pg.catalog import exact_rows
from dbbackup.pg.restore_log import Outcome, PgRestoreLog
from dbbackup.redact import one_line, redact
from dbbackup.restore.restorer import restore
from dbbackup.restore.sources import Source
from dbbackup.restore.targets import RestoreTarget
from dbbackup.settings import Settings

log = logging.getLogger("dbbackup.console")
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
NOWHERE_TO_VERIFY = (
    "Verify now has nowhere to restore: backup_console carries no PostgreSQL server binaries and"
    " VERIFY_DATABASE_URL is not set for it; set VERIFY_DATABASE_URL (a scratch database) on"
    " backup_console, or rely on the weekly drill (verify_backup)"
)
INTERRUPTED = "interrupted: the console's instance stopped before the restore ended"
FINISH_ATTEMPTS = 3
RESTORE, VERIFY = "restore", "verify"  # their rate-limit actions, apart from the manual backup's
PROGRESS_EVERY_SECONDS = 2.0
NO_IDENTITY = (
    "this backup is encrypted and the console has no identity to decrypt it (BACKUP_AGE_IDENTITY_SECRET is"
    " not set for backup_console): restore it with `dbbackup restore <id> --identity FILE`"
)


def _error(status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None) -> HttpReply:
    return HttpReply({"error": message} | ({"field": field} if field else {}), status, headers or {})


def _at(value: Any, settings: Settings) -> Any:
    return value.astimezone(settings.timezone).isoformat() if isinstance(value, datetime) else value


def can_decrypt(settings: Settings) -> tuple[bool, str | None]:
    """Whether the console holds an age identity; the reason when it does not (or it is broken)."""
    try:
        return (wiring.age_identities(None, settings.identity_env) is not None, None)
    except (UsageError, ConfigError) as exc:
        return False, one_line(redact(str(exc), settings.secrets))


def _is_source(target: RestoreTarget, settings: Settings) -> bool | None:
    """None when the target cannot be reached now (the dialog says so)."""
    try:
        return scratch.same_database(target.url, settings.database_url, settings.secrets)
    except BackupError:
        return None


def restore_targets(req: HttpRequest, ctx: RequestContext) -> HttpReply:
    """``GET /api/restore-targets``: names, replace flags and which one is the backed-up
    database itself; never a URL."""
    settings = ctx.settings
    try:
        configured = settings.restore_targets()
    except ConfigError as exc:
        return _bad_targets(exc)
    decrypt, problem = can_decrypt(settings)
    targets = []
    for target in configured:
        is_source = _is_source(target, settings)
        targets.append(
            {"name": target.name, "replace": target.replace, "is_source": is_source, "reachable": is_source is not None}
        )
    body = {"targets": targets, "can_decrypt": decrypt}
    if not decrypt:
        body["decrypt_problem"] = problem or NO_IDENTITY
    return HttpReply(body, 200)


def _bad_targets(exc: ConfigError) -> HttpReply:
    """RESTORE_TARGETS cannot be read: only restoring is unavailable (the rest of the console works)."""
    log.error("restore unavailable: %s", exc)
    return _error(500, f"restore is unavailable: the operator's RESTORE_TARGETS is invalid: {exc}")


def _body(req: HttpRequest) -> tuple[str, str]:
    try:
        data = json.loads(req.body or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise UsageError("the body is not valid JSON") from None
    if not isinstance(data, dict) or set(data) != {"target", "confirm"}:
        raise UsageError('the body must be {"target": NAME, "confirm": NAME}')
    target, confirm = data["target"], data["confirm"]
    if not isinstance(target, str) or not isinstance(confirm, str):
        raise UsageError('"target" and "confirm" must be strings')
    return target, confirm


class _Counted:
    """The source's bytes, counted; the count goes to the row every few seconds (the page's progress)."""

    def __init__(self, source: Source, report: Callable[[int], None]) -> None:
        self.source, self.report = source, report
        self.read = 0

    def open(self) -> Iterator[bytes]:
        last = time.monotonic()
        for chunk in self.source.open():
            self.read += len(chunk)
            if time.monotonic() - last >= PROGRESS_EVERY_SECONDS:
                last = time.monotonic()
                self.report(self.read)
            yield chunk


def _rate_limited(ctx: RequestContext, action: str) -> HttpReply | None:
    auth = ctx.settings.auth
    limiter = RateLimiter(ctx.db.get(), auth.manual_interval_seconds if auth else DEFAULT_MANUAL_INTERVAL_SECONDS)
    slot = limiter.claim(ctx.caller.subject, action)
    if slot.granted:
        return None
    retry = str(slot.retry_after_seconds)
    log.warning("refused %s for %s: rate limited, retry in %s s", action, ctx.caller.label, retry)
    return _error(
        429,
        f"a {action} was started less than {limiter.interval} s ago; retry in {retry} s",
        headers={"Retry-After": retry},
    )


def start_restore(req: HttpRequest, ctx: RequestContext, log_id: str) -> HttpReply:
    """``POST /api/backups/{id}/restore``: checks, then the restore, answered when it is done."""
    settings = ctx.settings
    if not UUID.match(log_id):
        return _error(400, "the backup id is not a UUID", "id")
    try:
        name, confirm = _body(req)
    except UsageError as exc:
        return _error(400, str(exc), "body")
    try:
        targets = {t.name: t for t in settings.restore_targets()}
    except ConfigError as exc:
        return _bad_targets(exc)
    target = targets.get(name)
    if target is None:
        known = ", ".join(targets) or "none are configured (RESTORE_TARGETS)"
        return _error(404, f"no restore target {name[:63]!r}; targets: {known}", "target")
    if confirm != name:
        return _error(400, f"type the target's name ({name}) to confirm: the confirmation does not match", "confirm")
    row = PgBackupLog(ctx.db.get(), settings.database_url, settings.secrets).get(log_id)
    if row is None:
        return _error(404, f"no backup {log_id}")
    if row.status != "success":
        return _error(409, f"backup {log_id} is {row.status}, not a successful backup")
    identities = None
    if naming.is_encrypted(row.file_name or ""):
        try:
            identities = wiring.age_identities(None, settings.identity_env)
        except (UsageError, ConfigError) as exc:
            return _error(409, one_line(redact(str(exc), settings.secrets)))
        if identities is None:
            return _error(409, NO_IDENTITY)
    try:
        source = wiring.resolve_source(log_id, lambda: settings)
    except UsageError as exc:
        return _error(409, str(exc))
    restore_logs = PgRestoreLog(ctx.db.get())
    if not restore_logs.try_lock_target(target.name):
        return _error(409, f"a restore into {target.name} is running; try again when it has finished")
    try:
        if (limited := _rate_limited(ctx, RESTORE)) is not None:
            return limited
        # Holding the target's lock: no restore into it runs, so a row still in_progress is one
        # whose instance stopped (timeout, eviction) before it ended. It ends now, alerted once.
        for stale in restore_logs.fail_interrupted(target.name, INTERRUPTED):
            log.error("restore %s into %s: %s", stale["id"], target.name, INTERRUPTED)
            _alert(
                settings,
                stale["id"],
                stale["backup_log_id"] or "",
                stale["file_name"] or "",
                target.name,
                stale["requested_by"] or "",
                INTERRUPTED,
            )
        restore_id = restore_logs.start(log_id, row.file_name, target.name, target.replace, ctx.caller.subject)
        log.info("restore %s of backup %s into %s requested by %s", restore_id, log_id, target.name, ctx.caller.label)
        outcome = Outcome("failed", 0.0, reason=INTERRUPTED)  # what the row says if the request is cut short
        try:
            outcome = _run(settings, source, target, identities, restore_id)
        finally:
            _finish(settings, restore_id, outcome)
    finally:
        try:
            restore_logs.unlock_target(target.name)
        except Exception as exc:  # the request's connection is gone, and its session lock with it
            log.warning("restore into %s: unlock on the request's connection failed: %s", target.name, exc)
    body: dict[str, Any] = {
        "restore_id": restore_id,
        "status": outcome.status,
        "target": target.name,
        "seconds": outcome.seconds,
        "tables": outcome.tables,
        "rows": outcome.rows,
    }
    if outcome.status == "success":
        log.info(
            "restore %s into %s succeeded: %s tables, %s rows", restore_id, target.name, outcome.tables, outcome.rows
        )
        return HttpReply(body, 200)
    log.error("restore %s into %s failed: %s", restore_id, target.name, outcome.reason)
    _alert(settings, restore_id, log_id, row.file_name or "", target.name, ctx.caller.subject, outcome.reason or "")
    # A target or backup that refused (not empty, a Supabase mismatch) is the caller's to fix: 409.
    return HttpReply(body | {"reason": outcome.reason}, 409 if outcome.reason_kind == "refused" else 500)


def _run(settings: Settings, source: Source, target: RestoreTarget, identities: Any, restore_id: str) -> Outcome:
    """The restore and its counts; never raises: a failure is the outcome's reason."""
    started = time.monotonic()
    # Progress goes through a connection of its own: the request's stays free, and a progress
    # write that fails never fails the restore.
    lock = threading.Lock()

    def report(count: int) -> None:
        try:
            with lock, db.connect(settings.database_url, attempts=1, secrets=settings.secrets) as conn:
                PgRestoreLog(conn).progress(restore_id, count)
        except BackupError as exc:
            log.warning("restore %s: progress not recorded: %s", restore_id, exc)

    counted = _Counted(source, report)
    reading = Source(source.label, counted.open, source.row, source.target)
    try:
        restore(reading, target.url, identities=identities, replace=target.replace)
        restored = exact_rows(target.url, settings.secrets)
    except UsageError as exc:
        return Outcome("failed", _seconds(started), counted.read, reason=_reason(exc, settings), reason_kind="refused")
    except BackupError as exc:
        return Outcome("failed", _seconds(started), counted.read, reason=_reason(exc, settings))
    except Exception as exc:  # the row must end whatever happened
        return Outcome("failed", _seconds(started), counted.read, reason=_reason(exc, settings, unexpected=True))
    return Outcome("success", _seconds(started), counted.read, len(restored), sum(restored.values()))


def _finish(settings: Settings, restore_id: str, outcome: Outcome) -> None:
    """The row's end, on a fresh connection (the request's sat idle through the restore and may
    be gone), retried; a row it could not end is failed by the next restore into that target."""
    for attempt in range(1, FINISH_ATTEMPTS + 1):
        try:
            with db.connect(settings.database_url, attempts=2, secrets=settings.secrets) as conn:
                PgRestoreLog(conn).finish(restore_id, outcome)
            return
        except Exception as exc:  # DatabaseUnavailable, or psycopg's own (outside sql_errors)
            log.warning("restore %s: its end not recorded (attempt %s): %s", restore_id, attempt, exc)
        time.sleep(attempt)
    log.error("restore %s: its end (%s) could not be recorded", restore_id, outcome.status)


def _seconds(started: float) -> float:
    return round(time.monotonic() - started, 3)


def _reason(exc: BaseException, settings: Settings, unexpected: bool = False) -> str:
    text = f"unexpected error: {type(exc).__name__}: {exc}" if unexpected else str(exc)
    return one_line(redact(text, settings.secrets))


def _alert(
    settings: Settings, restore_id: str, log_id: str, file_name: str, target: str, who: str, reason: str
) -> None:
    email = messages.restore_failure_email(
        datetime.now(UTC),
        settings.timezone,
        settings.environment,
        restore_id=restore_id,
        backup_id=log_id,
        file_name=file_name,
        target=target,
        requested_by=who,
        detail=reason,
        organization=settings.organization,
    )
    recipient = None
    try:
        with wiring.open_log(settings)(attempts=1) as repo:
            recipient = repo.notification_email()
    except BackupError:
        pass
    try:
        wiring.alerter_for(settings).deliver(email, recipient)
    except Exception as exc:  # the answer still says the restore failed
        log.error("the restore's failure alert was not sent: %s", one_line(redact(str(exc), settings.secrets)))


def _shown(row: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """A restore_logs row as the API shows it."""
    return {
        "restore_id": row["id"],
        "backup_id": row["backup_log_id"],
        "file_name": row["file_name"],
        "target": row["target"],
        "replace": row["replace_target"],
        "requested_by": row["requested_by"],
        "status": row["status"],
        "started_at": _at(row["started_at"], settings),
        "completed_at": _at(row["completed_at"], settings),
        "seconds": row["duration_seconds"],
        "progress": {"bytes_read": row["bytes_read"], "total_bytes": row["total_bytes"]},
        "tables": row["tables_restored"],
        "rows": row["rows_restored"],
        "reason": row["failure_reason"],
    }


def restore_status(req: HttpRequest, ctx: RequestContext, restore_id: str) -> HttpReply:
    """``GET /api/restores/{restore_id}``."""
    if not UUID.match(restore_id):
        return _error(400, "the restore id is not a UUID", "restore_id")
    row = PgRestoreLog(ctx.db.get()).get(restore_id)
    if row is None:
        return _error(404, f"no restore {restore_id}")
    return HttpReply(_shown(row, ctx.settings), 200)


def recent_restores(req: HttpRequest, ctx: RequestContext) -> HttpReply:
    """``GET /api/restores``: the newest 20 (the page polls it while its restore runs)."""
    return HttpReply({"items": [_shown(r, ctx.settings) for r in PgRestoreLog(ctx.db.get()).recent()]}, 200)


def verify_now(req: HttpRequest, ctx: RequestContext, log_id: str) -> HttpReply:
    """``POST /api/backups/{id}/verify``: the restore drill of that backup, recorded on its row."""
    if not UUID.match(log_id):
        return _error(400, "the backup id is not a UUID", "id")
    if req.body.strip() not in (b"", b"{}"):
        return _error(400, "the body must be empty or {}", "body")
    settings = ctx.settings
    row = PgBackupLog(ctx.db.get(), settings.database_url, settings.secrets).get(log_id)
    if row is None:
        return _error(404, f"no backup {log_id}")
    if row.status != "success" or row.deleted_at is not None:
        state = "deleted" if row.deleted_at is not None else row.status
        return _error(409, f"backup {log_id} cannot be verified ({state})")
    if not settings.verify_database_url and not pgbin.has_server():
        # The drill would only end "skipped": say why instead, and record nothing.
        return _error(409, NOWHERE_TO_VERIFY)
    if (limited := _rate_limited(ctx, VERIFY)) is not None:
        return limited
    log.info("verify of backup %s requested by %s", log_id, ctx.caller.label)
    drill = wiring.drill(settings, task=f"Verify now from the backup console, by {ctx.caller.subject}")
    try:
        result = drill.run(log_id, busy_raises=True)
    except LockBusy as exc:
        return _error(409, str(exc))
    body = {
        "verify_status": result.status,
        "detail": result.detail,
        "backup_log_id": result.backup_log_id,
        "file_name": result.file_name,
        "restored_into": result.target,
        "tables": result.tables or {},
        "seconds": result.seconds,
    }
    return HttpReply(body, 200)
