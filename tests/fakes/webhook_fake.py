"""A Slack-style incoming webhook on 127.0.0.1, for the webhook notifier (``requests``).

What it does, per Slack's "Sending messages using incoming webhooks" and its error list:
- ``POST /services/<T>/<B>/<token>`` with ``Content-Type: application/json`` and a body holding a
  non-empty ``text``: answers ``200`` with the plain-text body ``ok``.
- A body that is not JSON or has no ``text``: ``400`` ``invalid_payload`` / ``no_text``.
- A path with another token: ``403`` ``invalid_token``; any other path: ``404`` ``no_service``.
- On demand (``fail_next``): ``429`` with ``Retry-After`` (CHOICE: 1 s), any other status with its
  Slack error word (CHOICE: ``rollup_error`` for a 5xx), or a cut connection (``DROPPED``).

Google Chat's space webhooks take the same ``{"text": ...}`` body (and answer with the created
message as JSON); Slack's answers are the stricter to check against.
"""

from __future__ import annotations

import json
import sys
from collections import deque

from ._http import DROPPED, Exchange, FakeServer, Fault, Reply

TOKEN = "XXXXwebhooktoken0123456789"
PATH = f"/services/T000/B000/{TOKEN}"


class FakeWebhook(FakeServer):
    methods = ("POST",)

    def __init__(self) -> None:
        super().__init__()
        self.failures: deque[int] = deque()
        self.arm(Fault(self._injected, times=sys.maxsize, when=lambda e: e.path == PATH))

    @property
    def hook_url(self) -> str:
        return self.url + PATH

    def fail_next(self, *statuses: int) -> None:
        """The next requests get these statuses (``DROPPED``: the connection is cut), in order."""
        self.failures.extend(statuses)

    @property
    def texts(self) -> list[str]:
        """The ``text`` of every accepted message."""
        with self.lock:
            done = [e for e in self.exchanges if e.status == 200]
        return [e.json()["text"] for e in done]

    @property
    def statuses(self) -> list[int]:
        with self.lock:
            return [e.status for e in self.exchanges]

    def _injected(self, exchange: Exchange) -> Reply | None:
        if not self.failures:
            return None
        status = self.failures.popleft()
        exchange.body()
        if status == DROPPED:
            exchange.drop()
        if status == 429:
            return Reply(429, b"rate_limited", {"Content-Type": "text/plain", "Retry-After": "1"})
        return _plain(status, "rollup_error" if status >= 500 else "invalid_payload")

    def respond(self, exchange: Exchange) -> Reply:
        body = exchange.body()
        if not exchange.path.startswith("/services/"):
            return _plain(404, "no_service")
        if exchange.path != PATH:
            return _plain(403, "invalid_token")
        if not exchange.header("Content-Type").startswith("application/json"):
            return _plain(400, "invalid_payload")
        try:
            data = json.loads(body)
        except ValueError:
            return _plain(400, "invalid_payload")
        if not isinstance(data, dict) or not isinstance(data.get("text"), str) or not data["text"].strip():
            return _plain(400, "no_text")
        return _plain(200, "ok")


def _plain(status: int, word: str) -> Reply:
    return Reply(status, word.encode(), {"Content-Type": "text/plain"})
