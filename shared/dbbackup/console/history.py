"""What the console's pictures are drawn from: the backup history of the last 30 or 90 days
(``GET /api/history?days=N``) and the space each storage target reports (``GET /api/storage``:
Drive's quota; the object stores tell none)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from dbbackup import wiring
from dbbackup.core.ports import HasQuota
from dbbackup.errors import BackupError, QueryError
from dbbackup.http.guard import RequestContext
from dbbackup.http.types import HttpReply, HttpRequest
from dbbackup.pg.history import attempts_since, window
from dbbackup.redact import one_line, redact

log = logging.getLogger("dbbackup.console")
DAYS = (30, 90)


def history(req: HttpRequest, ctx: RequestContext) -> HttpReply:
    try:
        given = dict(parse_qsl(req.query, keep_blank_values=True, strict_parsing=bool(req.query), max_num_fields=5))
    except ValueError:
        raise QueryError("query", "the query string is malformed") from None
    unknown = sorted(set(given) - {"days"})
    if unknown:
        raise QueryError(unknown[0][:40], f"unknown parameter {unknown[0][:40]!r}; accepted: days")
    text = given.get("days") or "30"
    if text not in {str(d) for d in DAYS}:
        raise QueryError("days", f"days must be one of {', '.join(map(str, DAYS))}")
    days = int(text)
    now = datetime.now(UTC)
    tz = ctx.settings.timezone
    rows = attempts_since(ctx.db.get(), window(now, days))
    points = [
        {
            "id": r["id"],
            "started_at": r["started_at"].astimezone(tz).isoformat(),
            "backup_type": r["backup_type"],
            "status": r["status"],
            "file_size_bytes": r["file_size_bytes"],
            "duration_seconds": None if r["duration_seconds"] is None else round(r["duration_seconds"], 1),
            "failure_reason": r["failure_reason"] or None,
        }
        for r in rows
    ]
    body = {
        "days": days,
        "since": window(now, days).astimezone(tz).isoformat(),
        "now": now.astimezone(tz).isoformat(),
        "timezone": tz.key,
        "attempts": points,
        "failed": sum(1 for p in points if p["status"] == "failed"),
    }
    return HttpReply(body, 200)


def storage_use(req: HttpRequest, ctx: RequestContext) -> HttpReply:
    settings = ctx.settings
    targets: list[dict[str, Any]] = []
    for name in settings.storage_targets:
        entry: dict[str, Any] = {"target": name, "available": False, "used_bytes": None, "limit_bytes": None}
        try:
            storage = wiring.storage_named(settings, name)
            if isinstance(storage, HasQuota):
                quota = storage.quota()
                entry |= {"available": True, "used_bytes": quota.used_bytes, "limit_bytes": quota.limit_bytes}
            else:
                entry["detail"] = "not available: this storage's API does not report space"
        except Exception as exc:  # a client that cannot even be built (credentials): one line, the page goes on
            text = str(exc) if isinstance(exc, BackupError) else type(exc).__name__
            reason = one_line(redact(text, settings.secrets), 300)
            log.warning("storage use of %s could not be read: %s", name, reason)
            entry["detail"] = f"could not be read: {reason}"
        targets.append(entry)
    return HttpReply({"targets": targets}, 200)
