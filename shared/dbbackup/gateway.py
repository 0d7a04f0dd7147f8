"""The secured HTTP entry of both functions, still framework-free: a request (method, path,
headers, body) in, a reply (JSON-able dict, status, headers) out. ``functions/*/main.py`` only
translate Flask to this; ``service`` behind it knows nothing of callers.

Order of checks, each answering before anything is started or written: configuration (500),
CORS preflight, method (405), body size (413), content type (415), token (401/403), body (400),
who may do what (403), the manual rate limit (429), then the job (200/409/500)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from . import db, service
from .auth import SCHEDULER, USER, Authenticator, AuthError, Caller, challenge, require
from .auth_config import DEFAULT_MANUAL_INTERVAL_SECONDS, AuthConfig, auth_config_from_env
from .errors import ConfigError, DatabaseUnavailable
from .redact import install_log_redaction, one_line, redact, remember_secrets
from .secrets_gsm import resolve_secrets
from .settings import Settings

log = logging.getLogger("dbbackup.gateway")
JSON_TYPES = ("application/json",)


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # names in lower case
    body: bytes
    host: str = ""
    query: str = ""  # the raw query string (the console's log filters), without the "?"

    @classmethod
    def of(cls, method: str, path: str, headers: Mapping[str, str], body: bytes, query: str = "") -> HttpRequest:
        lowered = {k.lower(): v for k, v in headers.items()}
        return cls(method.upper(), path or "/", lowered, body, lowered.get("host", ""), query)


@dataclass
class HttpReply:
    body: dict[str, Any]
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    # A streamed body (a CSV export, a backup file, a page) sent instead of ``body`` as JSON.
    stream: Iterable[bytes] | None = None
    content_type: str = "application/json"


class _Connection:
    """One service connection per request, opened only if a question needs the database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._conn: psycopg.Connection | None = None

    def get(self) -> psycopg.Connection:
        if self._conn is None:
            s = self.settings
            self._conn = db.connect(s.database_url, attempts=s.connect_attempts, secrets=s.secrets)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


class _LazyRoles:
    def __init__(self, conn: _Connection) -> None:
        self.conn = conn

    def role_of(self, user_id: str) -> str | None:
        from .auth_db import PgRoleDirectory

        return PgRoleDirectory(self.conn.get()).role_of(user_id)


def _audiences(config: AuthConfig, req: HttpRequest) -> list[str]:
    if config.scheduler_audience:
        return [config.scheduler_audience]
    # Scheduler's default audience is the target URI; behind Cloud Run the request arrives as
    # http, so the https form is rebuilt from the Host header (README: set it explicitly).
    base = f"https://{req.host}"
    found = [base, base + "/"]
    if req.path not in ("", "/"):
        found.append(base + req.path)
    return found


def _authenticator(config: AuthConfig, req: HttpRequest, conn: _Connection) -> Authenticator:
    from .auth_google import GoogleIdTokenVerifier
    from .auth_supabase import SupabaseVerifier

    users = None
    if config.supabase_jwt_secret or config.supabase_jwks_url:
        users = SupabaseVerifier(config.supabase_jwt_secret, config.supabase_jwks_url, config.supabase_issuer)
    scheduler = GoogleIdTokenVerifier(_audiences(config, req), config.google_certs_url)
    return Authenticator(config, scheduler, users, _LazyRoles(conn))


def _cors(config: AuthConfig, req: HttpRequest) -> dict[str, str]:
    origin = req.headers.get("origin", "")
    headers = {"Vary": "Origin"}
    if origin and origin.rstrip("/") in config.allowed_origins:
        # The exact origin, never "*"; no Allow-Credentials: the token travels in a header, not a cookie.
        headers["Access-Control-Allow-Origin"] = origin
    return headers


def _content_type_ok(req: HttpRequest) -> bool:
    if not req.body.strip():
        return True
    kind = req.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind in JSON_TYPES


# A job answers (JSON body, status, headers), or a whole HttpReply when it streams its body.
Job = Callable[[HttpRequest, Settings, Caller, _Connection], tuple[dict[str, Any], int, dict[str, str]] | HttpReply]


def serve(req: HttpRequest, env: Mapping[str, str] | None, job: Job, methods: tuple[str, ...]) -> HttpReply:
    """Every check of this module (configuration, CORS, method, body, token) around ``job``: how
    other endpoints (the console's API) reuse them."""
    return _serve(req, env, job, methods, cors=True)


def _serve(
    req: HttpRequest, env: Mapping[str, str] | None, job: Job, methods: tuple[str, ...], cors: bool
) -> HttpReply:
    install_log_redaction()
    env = os.environ if env is None else env
    try:
        env = resolve_secrets(env)
        config = auth_config_from_env(env)
    except ConfigError as exc:
        log.error("request refused, the function is misconfigured: %s", exc)
        return HttpReply({"error": one_line(redact(f"the function is misconfigured: {exc}")), "status": "failed"}, 500)
    remember_secrets(config.secrets)
    extra = _cors(config, req) if cors else {}
    if req.method == "OPTIONS" and cors:
        if "Access-Control-Allow-Origin" not in extra:
            log.warning("CORS preflight refused for origin %r", req.headers.get("origin", "")[:200])
            return HttpReply({"error": "origin not allowed"}, 403, extra)
        extra |= {
            "Access-Control-Allow-Methods": ", ".join(methods),
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Max-Age": "600",
        }
        return HttpReply({}, 204, extra)
    reply = _guarded(req, env, config, job, methods)
    reply.headers |= extra
    return reply


def _guarded(
    req: HttpRequest, env: Mapping[str, str], config: AuthConfig, job: Job, methods: tuple[str, ...]
) -> HttpReply:
    if req.method not in methods:
        allow = {"Allow": ", ".join(methods)}
        return HttpReply({"error": f"method not allowed; use {' or '.join(methods)}"}, 405, allow)
    if len(req.body) > config.max_body_bytes:
        return HttpReply({"error": f"the body is larger than {config.max_body_bytes} bytes"}, 413)
    if not _content_type_ok(req):
        return HttpReply({"error": "the body must be sent as Content-Type: application/json"}, 415)
    if not config.enforced:
        log.warning("AUTH_MODE=disabled: accepting an unauthenticated %s %s (local only)", req.method, req.path)
    secrets: tuple[str, ...] = config.secrets
    caller = None
    try:
        settings = Settings.from_env(env)
        secrets = settings.secrets + config.secrets
        remember_secrets(secrets)
        conn = _Connection(settings)
        try:
            caller = _authenticator(config, req, conn).authenticate(req.headers)
            answer = job(req, settings, caller, conn)
        finally:
            conn.close()
    except AuthError as exc:
        log.warning("refused %s %s with %s: %s", req.method, req.path, exc.status, exc.reason)
        headers = {"WWW-Authenticate": challenge(exc.reason)} if exc.status == 401 else {}
        return HttpReply({"error": one_line(redact(exc.reason, secrets))}, exc.status, headers)
    except (ConfigError, DatabaseUnavailable) as exc:
        log.error("%s %s could not start: %s", req.method, req.path, exc)
        if config.enforced and caller is None:
            # Nobody authenticated yet: the details (variable names, hosts) are for the logs only.
            return HttpReply({"error": "the function cannot start: see its logs", "status": "failed"}, 500)
        return HttpReply({"error": one_line(redact(str(exc), secrets)), "status": "failed"}, 500)
    except psycopg.Error as exc:
        # The role or rate-limit query failed (a broken user_profiles, a lost connection): one line, no traceback.
        log.error("%s %s could not start: database error %s", req.method, req.path, db.describe(exc, secrets))
        return HttpReply({"error": f"database error: {db.describe(exc, secrets)}", "status": "failed"}, 500)
    if isinstance(answer, HttpReply):
        answer.body = _redacted(answer.body, secrets)  # a stream is data (a file, a CSV), not a message
        return answer
    body, status, headers = answer
    return HttpReply(_redacted(body, secrets), status, headers)


def _redacted(value: Any, secrets: tuple[str, ...]) -> Any:
    """Every string of an answer through the one redaction function (a reason may quote anything)."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: _redacted(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v, secrets) for v in value]
    return value


def _backup_job(
    req: HttpRequest, settings: Settings, caller: Caller, conn: _Connection
) -> tuple[dict[str, Any], int, dict[str, str]]:
    if req.method == "GET":
        if not req.path.rstrip("/").endswith("/status"):
            return {"error": "method not allowed; use POST (or GET /status for backup health)"}, 405, {}
        require(caller, (SCHEDULER, USER), "read the backup status")
        body, status = service.handle_status(settings)
        return body, status, {}
    try:
        trigger = service.parse_backup_body(req.body)
    except ValueError as exc:
        return {"error": str(exc)}, 400, {}
    schedule_time = None
    if trigger == "scheduled":
        require(caller, (SCHEDULER,), "start a scheduled backup")
        try:
            # The slot; Scheduler's retries repeat it, so a slot that succeeded is never backed up twice.
            schedule_time = service.parse_schedule_time(req.headers.get("x-cloudscheduler-scheduletime"))
        except ValueError as exc:
            return {"error": str(exc)}, 400, {}
    else:
        require(caller, (USER,), "start a manual backup")
    slot = None
    limiter = None
    if caller.kind == USER:
        from .auth_db import RateLimiter

        interval = settings.auth.manual_interval_seconds if settings.auth else DEFAULT_MANUAL_INTERVAL_SECONDS
        limiter = RateLimiter(conn.get(), interval)
        slot = limiter.claim(caller.subject)
        if not slot.granted:
            retry = str(slot.retry_after_seconds)
            log.warning("refused manual backup for %s: rate limited, retry in %s s", caller.label, retry)
            return (
                {"error": f"a manual backup was started less than {limiter.interval} s ago; retry in {retry} s"},
                429,
                {"Retry-After": retry},
            )
    log.info("%s backup requested by %s", trigger, caller.label)
    body, status = service.handle_backup(
        "POST", req.body, settings, req.path, triggered_by=caller.subject, schedule_time=schedule_time
    )
    if status == 409 and limiter is not None and slot is not None:
        limiter.release(caller.subject, slot)
    return body, status, {}


def _cleanup_job(
    req: HttpRequest, settings: Settings, caller: Caller, conn: _Connection
) -> tuple[dict[str, Any], int, dict[str, str]]:
    try:
        service.parse_cleanup_body(req.body)
    except ValueError as exc:
        return {"error": str(exc)}, 400, {}
    require(caller, (SCHEDULER,), "run the cleanup")
    log.info("cleanup requested by %s", caller.label)
    body, status = service.handle_cleanup("POST", req.body, settings)
    return body, status, {}


def backup_endpoint(req: HttpRequest, env: Mapping[str, str] | None = None) -> HttpReply:
    """``database_backup``: POST (scheduled by the scheduler, manual by a manager), GET /status."""
    return _serve(req, env, _backup_job, ("POST", "GET", "OPTIONS"), cors=True)


def cleanup_endpoint(req: HttpRequest, env: Mapping[str, str] | None = None) -> HttpReply:
    """``cleanup_old_backups``: POST by the scheduler only; no browser ever calls it (no CORS)."""
    return _serve(req, env, _cleanup_job, ("POST",), cors=False)
