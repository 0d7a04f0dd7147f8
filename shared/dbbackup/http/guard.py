"""The checks every endpoint sits behind, framework-free: a request (method, path, headers,
body) in, a reply out. Endpoints (``http.endpoints``, ``console.api``) are jobs run by ``serve``.

Order of checks, each answering before anything is started or written: configuration (500),
CORS preflight, method (405), body size (413), content type (415), token (401/403), then the
job, which checks the body (400), who may do what (403), the manual rate limit (429) and runs
(200/409/500)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dbbackup import structured_log, wiring
from dbbackup.auth.authenticator import Caller, challenge
from dbbackup.auth.config import AuthConfig, auth_config_from_env
from dbbackup.errors import AuthError, BackupError, ConfigError, DatabaseError, DatabaseUnavailable
from dbbackup.http.types import HttpReply, HttpRequest, error_reply
from dbbackup.pg.access import PgRoleDirectory
from dbbackup.pg.connect import LazyConnection, sql_errors
from dbbackup.redact import install_log_redaction, one_line, redact, remember_secrets
from dbbackup.settings import Settings

log = logging.getLogger("dbbackup.gateway")  # the name log filters and alerts already match
JSON_TYPES = ("application/json",)


@dataclass
class RequestContext:
    """What a job gets besides the request: the settings, who is calling, and the request's one
    service connection (opened only if something needs the database)."""

    settings: Settings
    caller: Caller
    db: LazyConnection


class _LazyRoles:
    def __init__(self, conn: LazyConnection) -> None:
        self.conn = conn

    def role_of(self, user_id: str) -> str | None:
        return PgRoleDirectory(self.conn.get()).role_of(user_id)


def _audiences(config: AuthConfig, req: HttpRequest) -> list[str]:
    if config.scheduler_audience:
        return [config.scheduler_audience]
    # Scheduler's default audience is the target URI; behind Cloud Run the request arrives as
    # http, so the https form is rebuilt from the Host header (docs/security.md: set it explicitly).
    base = f"https://{req.host}"
    found = [base, base + "/"]
    if req.path not in ("", "/"):
        found.append(base + req.path)
    return found


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


# An endpoint's work once the request passed the checks; it may raise AuthError (403 from
# ``require``), ConfigError / DatabaseUnavailable / DatabaseError (500).
Job = Callable[[HttpRequest, RequestContext], HttpReply]


def serve(
    req: HttpRequest, env: Mapping[str, str] | None, job: Job, methods: tuple[str, ...], cors: bool = True
) -> HttpReply:
    """Every check of this module (configuration, CORS, method, body, token) around ``job``."""
    install_log_redaction()
    env = os.environ if env is None else env
    structured_log.begin_request(req.headers, env)
    try:
        env = wiring.environment(env)
        config = auth_config_from_env(env)
    except ConfigError as exc:
        log.error("request refused, the function is misconfigured: %s", exc)
        return error_reply(exc, one_line(redact(f"the function is misconfigured: {exc}")))
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
        conn = LazyConnection(settings.database_url, settings.connect_attempts, settings.secrets)
        # A driver error anywhere in the request (the role lookup, a console query) becomes one
        # DatabaseError line, answered below.
        with sql_errors(secrets):
            try:
                authenticator = wiring.authenticator(config, _audiences(config, req), _LazyRoles(conn))
                caller = authenticator.authenticate(req.headers)
                reply = job(req, RequestContext(settings, caller, conn))
            finally:
                conn.close()
    except AuthError as exc:
        log.warning("refused %s %s with %s: %s", req.method, req.path, exc.status, exc.reason)
        headers = {"WWW-Authenticate": challenge(exc.reason)} if exc.status == 401 else {}
        return HttpReply({"error": one_line(redact(exc.reason, secrets))}, exc.status, headers)
    except DatabaseError as exc:
        # The role or rate-limit query failed (a broken user_profiles, a lost connection): one line, no traceback.
        log.error("%s %s could not start: %s", req.method, req.path, exc)
        return error_reply(exc, one_line(redact(str(exc), secrets)))
    except (ConfigError, DatabaseUnavailable) as exc:
        log.error("%s %s could not start: %s", req.method, req.path, exc)
        if config.enforced and caller is None:
            # Nobody authenticated yet: the details (variable names, hosts) are for the logs only.
            return error_reply(exc, "the function cannot start: see its logs")
        return error_reply(exc, one_line(redact(str(exc), secrets)))
    except BackupError as exc:
        # Anything else a job let through is still one line with its class's status, never a traceback.
        log.error("%s %s failed: %s", req.method, req.path, exc)
        return error_reply(exc, one_line(redact(str(exc), secrets)))
    reply.body = _redacted(reply.body, secrets)  # a stream is data (a file, a CSV), not a message
    return reply


def _redacted(value: Any, secrets: tuple[str, ...]) -> Any:
    """Every string of an answer through the one redaction function (a reason may quote anything)."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: _redacted(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v, secrets) for v in value]
    return value
