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
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

INVALID_KEY = "The provided authorization grant is invalid, expired, or revoked"


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


@dataclass
class FakeSendGrid:
    api_key: str = "SG.fake-test-key.0123456789"
    requests: list[Received] = field(default_factory=list)
    failures: deque[int] = field(default_factory=deque)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def fail_next(self, *statuses: int) -> None:
        """The next requests get these statuses, in order, before the fake accepts again."""
        self.failures.extend(statuses)

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

    def start(self) -> FakeSendGrid:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                # Recorded before the client can see the answer: a test asserts right after send().
                self.record.status = status
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _errors(self, status: int, message: str, field_name: str | None = None) -> None:
                body = json.dumps({"errors": [{"message": message, "field": field_name, "help": None}]}).encode()
                self._answer(status, body, {"Content-Type": "application/json"})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                self.record = Received("POST", self.path, dict(self.headers.items()), body, 0)
                fake.requests.append(self.record)
                self._handle(body)

            def _handle(self, body: Any) -> int:
                if self.path != "/v3/mail/send":
                    self._errors(404, "Not Found")
                    return 404
                if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    self._errors(401, INVALID_KEY)
                    return 401
                if fake.failures:
                    status = fake.failures.popleft()
                    if status == 413:
                        html = b"<html><head><title>413 Request Entity Too Large</title></head></html>"
                        self._answer(413, html, {"Content-Type": "text/html"})
                    elif status == 429:
                        headers = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1"}
                        body_429 = json.dumps({"errors": [{"message": "too many requests", "field": None}]}).encode()
                        self._answer(429, body_429, {"Content-Type": "application/json", **headers})
                    else:
                        self._errors(status, "simulated failure")
                    return status
                problem = _validate(body)
                if problem:
                    self._errors(400, *problem)
                    return 400
                self._answer(202, b"", {"X-Message-Id": uuid.uuid4().hex})
                return 202

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


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
