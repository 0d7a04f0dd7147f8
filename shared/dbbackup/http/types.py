"""The framework-free request and reply of every endpoint; ``http.flask_app`` translates Flask
to and from these, so nothing else knows which web framework runs us."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dbbackup.errors import BackupError


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


def error_reply(exc: BackupError, message: str | None = None) -> HttpReply:
    """The one translation of an error into an answer: its class says the status (``http_status``)
    and the ``status`` word (``answer``); ``message`` replaces ``str(exc)`` when the details are
    for the logs only."""
    return HttpReply({"error": message or str(exc), "status": exc.answer}, exc.http_status)
