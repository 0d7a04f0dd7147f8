"""The managers' console (function ``backup_console``), framework-free like ``http``: the
routes, the public ones (the page, its files, the settings the page needs to sign in, the
OpenAPI document), and the manager-only API behind every check of ``http.guard.serve``. Every
answer carries the security headers (a strict Content-Security-Policy among them)."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from dbbackup import wiring
from dbbackup.auth.authenticator import USER, require
from dbbackup.auth.config import auth_config_from_env, trusted_url
from dbbackup.console import restores
from dbbackup.console.history import history, storage_use
from dbbackup.console.logs import CsvExport, parse_query, read_page
from dbbackup.console.schedule import retention_in_force, schedule_endpoint
from dbbackup.console.settings import SETTINGS, parse_value, read_config, write_setting
from dbbackup.core import naming
from dbbackup.errors import ConfigError, InvalidInput, StorageError, StorageNotFound
from dbbackup.http.endpoints import start_backup, status_reply
from dbbackup.http.guard import Job, RequestContext, serve
from dbbackup.http.types import HttpReply, HttpRequest
from dbbackup.pg import connect as db
from dbbackup.pg.backup_log import PgBackupLog
from dbbackup.redact import one_line, redact
from dbbackup.settings import timezone_from_env

log = logging.getLogger("dbbackup.console")
STATIC = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Cloud Run (which runs gen2 functions) refuses an HTTP/1 response whose Content-Length exceeds
# 32 MiB; without one the response goes chunked and has no size limit. Larger backups are
# therefore sent without it (the page knows the size from the row's file_size_bytes).
CONTENT_LENGTH_LIMIT = 32 * 1024 * 1024


@dataclass(frozen=True)
class PublicConfig:
    """What the page needs before anyone signs in (none of it secret: the anon key is public
    by Supabase's design, protected by row level security)."""

    supabase_url: str | None
    supabase_anon_key: str | None
    auth_mode: str
    timezone: str

    @property
    def supabase_origin(self) -> str | None:
        if not self.supabase_url:
            return None
        parts = urlsplit(self.supabase_url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def public_config(env: Mapping[str, str]) -> PublicConfig:
    zone = timezone_from_env(env).key
    url = trusted_url(env, "SUPABASE_URL")  # https only (http for a local fake), as every URL we trust
    return PublicConfig(
        supabase_url=url.rstrip("/") if url else None,
        supabase_anon_key=env.get("SUPABASE_ANON_KEY", "").strip() or None,
        auth_mode=auth_config_from_env(env).mode,
        timezone=zone,
    )


def security_headers(origin: str | None) -> dict[str, str]:
    connect = "'self'" + (f" {origin}" if origin else "")
    return {
        "Content-Security-Policy": (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src {connect}; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }


def _error(status: int, message: str, field: str | None = None) -> HttpReply:
    return HttpReply({"error": message} | ({"field": field} if field else {}), status)


# --- public routes --------------------------------------------------------------------------


def _file(name: str) -> HttpReply:
    """A file directly in console/static: looked up among the folder's entries, never by
    joining the request's text to a path, so no name reaches outside it."""
    kind = STATIC_TYPES.get(Path(name).suffix.lower())
    entries = {p.name: p for p in STATIC.iterdir() if p.is_file() and not p.is_symlink()} if STATIC.is_dir() else {}
    if kind is None or name not in entries:
        return _error(404, f"no such file: {name[:100]}")
    return HttpReply({}, 200, {"Cache-Control": "no-cache"}, stream=[entries[name].read_bytes()], content_type=kind)


def _page(req: HttpRequest, public: PublicConfig, params: dict[str, str]) -> HttpReply:
    return _file("index.html")


def _static(req: HttpRequest, public: PublicConfig, params: dict[str, str]) -> HttpReply:
    return _file(params["name"])


def _client_config(req: HttpRequest, public: PublicConfig, params: dict[str, str]) -> HttpReply:
    body = {
        "supabase_url": public.supabase_url,
        "supabase_anon_key": public.supabase_anon_key,
        "auth_mode": public.auth_mode,
        "timezone": public.timezone,
    }
    return HttpReply(body, 200, {"Cache-Control": "no-store"})


def _openapi(req: HttpRequest, public: PublicConfig, params: dict[str, str]) -> HttpReply:
    from dbbackup.console.openapi import document

    return HttpReply(document(), 200)


# --- manager routes (run inside http.guard.serve: authenticated, body checked) -----------------


def _me(req: HttpRequest, ctx: RequestContext) -> HttpReply:
    return HttpReply({"subject": ctx.caller.subject, "role": ctx.caller.role or ctx.caller.kind}, 200)


def _logs(req: HttpRequest, ctx: RequestContext) -> HttpReply:
    query = parse_query(req.query, paged=True)
    drive = ctx.settings.storage == "google_drive"
    return HttpReply(read_page(ctx.db.get(), query, ctx.settings.timezone, datetime.now(UTC), drive), 200)


def _logs_csv(req: HttpRequest, ctx: RequestContext) -> HttpReply:
    settings = ctx.settings
    query = parse_query(req.query, paged=False)
    # Its own connection: the request's is closed when this returns, the export reads on after.
    own = db.connect(settings.database_url, attempts=settings.connect_attempts, secrets=settings.secrets)
    export = CsvExport(own, query, settings.timezone, datetime.now(UTC), settings.storage == "google_drive")
    day = datetime.now(settings.timezone).date().isoformat()
    log.info("backup log exported as CSV by %s", ctx.caller.label)
    headers = {"Content-Disposition": f'attachment; filename="backup_logs_{day}.csv"'}
    return HttpReply({}, 200, headers, stream=export, content_type="text/csv; charset=utf-8")


class _Download:
    """A stored file's chunks; a storage failure mid-way is logged, then ends the response
    short of its Content-Length, so the browser sees a failed download, not a shorter file."""

    def __init__(self, chunks: Iterator[bytes], name: str) -> None:
        self.chunks, self.name = chunks, name

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.chunks
        except StorageError as exc:
            log.error("download of %s broke off: %s", self.name, exc)
            raise

    def close(self) -> None:
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()


def _attachment(name: str) -> str:
    safe = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in name)
    return f'attachment; filename="{safe}"'


def _download(req: HttpRequest, ctx: RequestContext, log_id: str) -> HttpReply:
    if not _UUID.match(log_id):
        return _error(400, "the backup id is not a UUID", "id")
    settings = ctx.settings
    row = PgBackupLog(ctx.db.get(), settings.database_url, settings.secrets).get(log_id)
    if row is None:
        return _error(404, f"no backup {log_id}")
    name = row.file_name or ""
    if row.status != "success" or row.deleted_at is not None or not row.google_drive_file_id:
        state = "deleted" if row.deleted_at is not None else row.status
        return _error(404, f"backup {log_id} has no file to download ({state})")
    storage = wiring.make_storage(settings)
    file_id = row.google_drive_file_id
    try:
        stored = storage.stat(file_id)
        chunks = storage.open(file_id)
    except StorageNotFound:
        log.warning("download of %s refused: the file is no longer in storage", name)
        return _error(404, f"backup {log_id}: the file is no longer in storage")
    except StorageError as exc:
        return _error(502, f"storage error: {one_line(redact(str(exc), settings.secrets))}")
    log.info("backup %s (%s) downloaded by %s", log_id, name, ctx.caller.label)
    headers = {"Content-Disposition": _attachment(name)}
    if stored.size <= CONTENT_LENGTH_LIMIT:
        headers["Content-Length"] = str(stored.size)
    return HttpReply({}, 200, headers, stream=_Download(chunks, name), content_type=naming.media_type(name))


def _backup_contents(req: HttpRequest, ctx: RequestContext, log_id: str) -> HttpReply:
    """One backup and what it holds (its manifest), for the console's contents dialog."""
    if not _UUID.match(log_id):
        return _error(400, "the backup id is not a UUID", "id")
    settings = ctx.settings
    row = PgBackupLog(ctx.db.get(), settings.database_url, settings.secrets).get(log_id)
    if row is None:
        return _error(404, f"no backup {log_id}")

    def at(value: datetime | None) -> str | None:
        return value.astimezone(settings.timezone).isoformat() if value else None

    body = {
        "id": row.id,
        "status": row.status,
        "file_name": row.file_name,
        "started_at": at(row.started_at),
        "manifest": row.manifest,
        "shrink_warnings": list(row.shrink_warnings or []),
        "verify_status": row.verify_status,
        "verified_at": at(row.verified_at),
        "verify_detail": row.verify_detail,
    }
    return HttpReply(body, 200)


def _config(req: HttpRequest, ctx: RequestContext) -> HttpReply:
    return HttpReply(read_config(ctx.db.get()), 200)


def _put_config(req: HttpRequest, ctx: RequestContext, key: str) -> HttpReply:
    if key not in SETTINGS:
        return _error(404, f"no setting {key[:100]!r}; settings: {', '.join(SETTINGS)}")
    return HttpReply(write_setting(ctx.db.get(), key, parse_value(req.body), ctx.caller.label), 200)


def _run_backup(req: HttpRequest, ctx: RequestContext) -> HttpReply:
    try:
        body = json.loads(req.body) if req.body.strip() else {}
    except (ValueError, UnicodeDecodeError, RecursionError):
        return _error(400, "the body is not valid JSON", "body")
    if body != {}:
        return _error(400, "the body must be empty or {}", "body")
    # Exactly the database_backup function's manual path: role check, rate limit, 409, triggered_by.
    return start_backup(ctx, "manual")


def _status(req: HttpRequest, ctx: RequestContext) -> HttpReply:
    reply = status_reply(ctx.settings)
    if reply.status == 200:
        reply.body["retention"] = retention_in_force(ctx.db.get(), ctx.settings)  # the console's, if set
    return reply


# --- routing --------------------------------------------------------------------------------

# A public route's handler takes (request, PublicConfig, path parameters); a manager route's takes
# (request, RequestContext, **path parameters). ``Route.public`` says which.
Handler = Callable[..., HttpReply]


@dataclass(frozen=True)
class Route:
    path: str  # an OpenAPI path template: {name} matches one segment
    methods: tuple[str, ...]
    handler: Handler
    public: bool = False

    def match(self, path: str) -> dict[str, str] | None:
        pattern = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        found = re.fullmatch(pattern, path)
        return found.groupdict() if found else None


ROUTES = (
    Route("/", ("GET",), _page, public=True),
    Route("/static/{name}", ("GET",), _static, public=True),
    Route("/api/client-config", ("GET",), _client_config, public=True),
    Route("/api/openapi.json", ("GET",), _openapi, public=True),
    Route("/api/me", ("GET",), _me),
    Route("/api/logs", ("GET",), _logs),
    Route("/api/logs.csv", ("GET",), _logs_csv),
    Route("/api/backups/{log_id}", ("GET",), _backup_contents),
    Route("/api/backups/{log_id}/download", ("GET",), _download),
    Route("/api/config", ("GET",), _config),
    Route("/api/config/schedule", ("GET", "PUT"), schedule_endpoint),  # before {key}: the first match wins
    Route("/api/config/{key}", ("PUT",), _put_config),
    Route("/api/backups", ("POST",), _run_backup),
    Route("/api/status", ("GET",), _status),
    Route("/api/restore-targets", ("GET",), restores.restore_targets),
    Route("/api/backups/{log_id}/restore", ("POST",), restores.start_restore),
    Route("/api/backups/{log_id}/verify", ("POST",), restores.verify_now),
    Route("/api/restores", ("GET",), restores.recent_restores),
    Route("/api/restores/{restore_id}", ("GET",), restores.restore_status),
    Route("/api/history", ("GET",), history),
    Route("/api/storage", ("GET",), storage_use),
)


def _manager_job(route: Route, params: dict[str, str]) -> Job:
    def job(req: HttpRequest, ctx: RequestContext) -> HttpReply:
        # Users reaching here are managers or admins (the guard checked user_profiles); the scheduler is not.
        require(ctx.caller, (USER,), "use the backup console")
        try:
            return route.handler(req, ctx, **params)
        except InvalidInput as exc:
            return _error(exc.http_status, str(exc), exc.field)

    return job


def _route(req: HttpRequest, env: Mapping[str, str], public: PublicConfig) -> HttpReply:
    path = req.path.rstrip("/") or "/"
    for route in ROUTES:
        params = route.match(path)
        if params is None:
            continue
        if not route.public:
            reply = serve(req, env, _manager_job(route, params), (*route.methods, "OPTIONS"))
            reply.headers.setdefault("Cache-Control", "no-store")  # backup logs and settings: never cached
            return reply
        if req.method not in route.methods:
            reply = _error(405, f"method not allowed; use {' or '.join(route.methods)}")
            reply.headers["Allow"] = ", ".join(route.methods)
            return reply
        return route.handler(req, public, params)
    return _error(404, f"no such page or API route: {path[:100]}")


def console_endpoint(req: HttpRequest, env: Mapping[str, str] | None = None) -> HttpReply:
    """``backup_console``: the page, its files and its API (docs/http-api.md)."""
    env = os.environ if env is None else env
    try:
        public = public_config(env)
    except ConfigError as exc:
        log.error("request refused, the function is misconfigured: %s", exc)
        reply = _error(500, one_line(redact(f"the function is misconfigured: {exc}")))
        reply.headers |= security_headers(None)
        return reply
    reply = _route(req, env, public)
    reply.headers |= security_headers(public.supabase_origin)
    return reply
