"""A SendGrid v3 Mail Send fake on 127.0.0.1, for the real ``sendgrid`` client.

What it does, per SendGrid's API reference (checked against the docs, not from memory):
- ``POST /v3/mail/send`` with ``Authorization: Bearer <key>`` and a JSON body holding
  ``personalizations[].to[].email``, ``from.email``, ``subject`` and ``content[]`` of
  ``{type, value}``: answers ``202 Accepted`` with an empty body and an ``X-Message-Id`` header.
- A wrong or missing key: ``401`` with ``{"errors": [{"message": "The provided authorization
  grant is invalid, expired, or revoked", "field": null, "help": null}]}``.
- A body missing a required part: ``400`` with an ``errors`` entry naming the field.
- On demand (``fail_next``): ``413`` as a proxy's HTML page (it is not JSON in real life),
  ``429`` with the ``X-RateLimit-*`` headers, and any 5xx with a JSON ``errors`` body.

Every request is recorded (path, headers, parsed JSON), accepted or not.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from ._http import Exchange, FakeServer, Fault, Reply

INVALID_KEY = "The provided authorization grant is invalid, expired, or revoked"
MAIL_SEND = "/v3/mail/send"


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    status: int


@dataclass
class SentMail:
    """An accepted message, flattened for assertions."""

    to: list[str]
    sender: str
    subject: str
    text: str
    html: str


class FakeSendGrid(FakeServer):
    methods = ("POST",)

    def __init__(self, api_key: str = "SG.fake-test-key.0123456789") -> None:
        super().__init__()
        self.api_key = api_key
        self.failures: deque[int] = deque()
        # Only a request SendGrid would accept can fail on demand: a wrong path or key is answered first.
        self.arm(Fault(self._injected, times=sys.maxsize, when=self._acceptable))

    def fail_next(self, *statuses: int) -> None:
        """The next requests get these statuses, in order, before the fake accepts again."""
        self.failures.extend(statuses)

    @property
    def requests(self) -> list[Received]:
        with self.lock:
            log = list(self.exchanges)
        return [Received(e.method, e.target, dict(e.headers.items()), e.json(), e.status) for e in log]

    @property
    def sent(self) -> list[SentMail]:
        mails = []
        for r in self.requests:
            if r.status != 202 or r.body is None:
                continue
            content = {c["type"]: c["value"] for c in r.body["content"]}
            mails.append(
                SentMail(
                    to=[t["email"] for p in r.body["personalizations"] for t in p["to"]],
                    sender=r.body["from"]["email"],
                    subject=r.body["subject"],
                    text=content.get("text/plain", ""),
                    html=content.get("text/html", ""),
                )
            )
        return mails

    def _acceptable(self, exchange: Exchange) -> bool:
        return exchange.target == MAIL_SEND and exchange.headers.get("Authorization") == f"Bearer {self.api_key}"

    def _injected(self, exchange: Exchange) -> Reply | None:
        if not self.failures:
            return None
        status = self.failures.popleft()
        if status == 413:
            html = b"<html><head><title>413 Request Entity Too Large</title></head></html>"
            return Reply(413, html, {"Content-Type": "text/html"})
        if status == 429:
            headers = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1"}
            return Reply.json(429, {"errors": [{"message": "too many requests", "field": None}]}, headers)
        return _errors(status, "simulated failure")

    def respond(self, exchange: Exchange) -> Reply:
        body = exchange.body()
        if exchange.target != MAIL_SEND:
            return _errors(404, "Not Found")
        if exchange.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _errors(401, INVALID_KEY)
        try:
            problem = _validate(json.loads(body))
        except ValueError:
            problem = _validate(None)
        if problem:
            return _errors(400, *problem)
        return Reply(202, b"", {"X-Message-Id": uuid.uuid4().hex})


def _errors(status: int, message: str, field_name: str | None = None) -> Reply:
    return Reply.json(status, {"errors": [{"message": message, "field": field_name, "help": None}]})


def _validate(body: Any) -> tuple[str, str] | None:
    """The Mail Send checks our messages could trip: (message, field) or None."""
    if not isinstance(body, dict):
        return "Bad Request", "body"
    personalizations = body.get("personalizations")
    if not personalizations or not all(p.get("to") for p in personalizations):
        return "The personalizations field is required and must have at least one personalization.", "personalizations"
    for p in personalizations:
        for to in p["to"]:
            if "@" not in str(to.get("email", "")):
                return "Does not contain a valid address.", "personalizations.0.to"
    if "@" not in str((body.get("from") or {}).get("email", "")):
        return "The from email does not contain a valid address.", "from.email"
    if not body.get("subject"):
        return "The subject is required.", "subject"
    content = body.get("content") or []
    if not content or not all(c.get("type") and c.get("value") for c in content):
        return "The content value must be a string at least one character in length.", "content.0.value"
    if content[0]["type"] != "text/plain" and any(c["type"] == "text/plain" for c in content):
        return "If present, text/plain content must be first.", "content.0.type"
    return None
