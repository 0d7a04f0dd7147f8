"""The one HTTP server every fake runs on: a ThreadingHTTPServer on 127.0.0.1 with a thread of
its own. Each request is logged as it arrives, offered to the armed faults, then to the fake's
``respond``, and answered; a fake subclasses ``FakeServer`` and holds only its protocol.

Faults are the one fault-injection mechanism: a ``Fault`` acts on the Nth request that matches
it (method, path prefix, optional predicate) and on ``times`` - 1 more. Its action may answer in
the protocol's place (an injected error), cut the connection (``Exchange.drop``), delay the
answer (``Exchange.delay``), or change the fake's state and let the request go on.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn, Self
from urllib.parse import parse_qs, urlsplit

DROPPED = -1  # the status logged for a request whose connection was cut without an answer


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(
        cls, status: int, obj: Any, headers: dict[str, str] | None = None, content_type: str = "application/json"
    ) -> Reply:
        return cls(status, json.dumps(obj).encode(), {"Content-Type": content_type, **(headers or {})})


class Refused(Exception):
    """Raised anywhere in a fake's handling to answer ``reply`` instead (the protocol's errors)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


class Dropped(Exception):
    """The connection was cut without an answer (``Exchange.drop``)."""


class Exchange:
    """One request as received, and what it got: ``status`` is set before the answer is
    written (a test may assert right after its client returns), ``DROPPED`` if it got none."""

    def __init__(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        self.method = method
        self.target = handler.path  # as sent, query included
        self.path = parts.path
        self.query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        self.headers: Message = handler.headers
        self.status = 0
        self.delay = 0.0  # seconds to wait between handling and answering
        self.data: bytes | None = None  # the body, once read
        self._handler = handler

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name) or default

    def body(self) -> bytes:
        """The body, read on first use: a fault may cut the connection part-way through it first."""
        if self.data is None:
            length = int(self.headers.get("Content-Length") or 0)
            self.data = self._handler.rfile.read(length) if length else b""
        return self.data

    def json(self) -> Any:
        """The body read so far as JSON (never reads: other threads read the exchanges); None
        if unread or not JSON."""
        try:
            return None if self.data is None else json.loads(self.data)
        except ValueError:
            return None

    def take(self, limit: int) -> bytes:
        """Read at most ``limit`` bytes of the body (a fault about to cut the connection mid-body)."""
        length = int(self.headers.get("Content-Length") or 0)
        self.data = self._handler.rfile.read(min(limit, length)) if length else b""
        return self.data

    def drop(self) -> NoReturn:
        """Cut the connection without an answer."""
        with contextlib.suppress(OSError):  # the client may have gone already; it is cut either way
            self._handler.connection.shutdown(socket.SHUT_RDWR)
        raise Dropped


FaultAction = Callable[[Exchange], Reply | None]


@dataclass
class Fault:
    """``act`` runs on the ``nth`` matching request and ``times`` - 1 more; a reply it returns
    is answered instead of the protocol's, None lets the request go on."""

    act: FaultAction
    nth: int = 1
    times: int = 1
    method: str | None = None
    path: str = "/"  # a prefix of the request's path
    when: Callable[[Exchange], bool] | None = None
    seen: int = 0

    def fires(self, exchange: Exchange) -> bool:
        if (self.method and exchange.method != self.method) or not exchange.path.startswith(self.path):
            return False
        if self.when is not None and not self.when(exchange):
            return False
        self.seen += 1
        return self.nth <= self.seen < self.nth + self.times


class FakeServer:
    """Binds at construction (so ``url`` is known), serves after ``start``. Subclasses set
    ``methods`` (others get http.server's 501), ``protocol_version`` and implement ``respond``."""

    methods: tuple[str, ...] = ("GET",)
    protocol_version = "HTTP/1.0"
    server_version = BaseHTTPRequestHandler.server_version
    poll_interval = 0.05  # shutdown() waits up to this long, once per fake

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.lock = threading.RLock()  # guards the exchanges, the faults and whatever state the fake adds
        self.exchanges: list[Exchange] = []
        self.faults: list[Fault] = []
        self.server = ThreadingHTTPServer((host, port), _handler_class(self))
        self._thread: threading.Thread | None = None

    def respond(self, exchange: Exchange) -> Reply:
        raise NotImplementedError

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": self.poll_interval},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread = None
        self.server.server_close()

    def serve_forever(self) -> None:
        """In the calling thread, until interrupted (the fakes' command-line mode)."""
        try:
            self.server.serve_forever(poll_interval=self.poll_interval)
        except KeyboardInterrupt:
            pass
        finally:
            self.server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults ----------------------------------------------------------------------------

    def arm(self, fault: Fault) -> Fault:
        with self.lock:
            self.faults.append(fault)
        return fault

    # -- one request -----------------------------------------------------------------------

    def _dispatch(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        exchange = Exchange(handler, method)
        with self.lock:
            self.exchanges.append(exchange)
            fired = [f for f in self.faults if f.fires(exchange)]
        try:
            reply = None
            for fault in fired:
                if (reply := fault.act(exchange)) is not None:
                    break
            if reply is None:
                reply = self.respond(exchange)
        except Refused as refused:
            reply = refused.reply
        except Dropped:
            exchange.status = DROPPED
            handler.close_connection = True
            return
        exchange.status = reply.status
        if exchange.delay:
            time.sleep(exchange.delay)
        exchange.body()  # never leave an unread body on a kept-alive connection
        try:
            handler.send_response(reply.status)
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            if "Content-Length" not in reply.headers:  # a HEAD answer gives the length it has no body for
                handler.send_header("Content-Length", str(len(reply.body)))
            handler.end_headers()
            handler.wfile.write(reply.body)
        except OSError:
            handler.close_connection = True  # the client gave up (a timeout): nobody to answer


def _handler_class(fake: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = fake.protocol_version
        server_version = fake.server_version

        def log_message(self, format: str, *args: Any) -> None:
            pass  # tests read the exchanges; stderr noise helps nobody

    for method in fake.methods:
        setattr(Handler, f"do_{method}", lambda self, m=method: fake._dispatch(self, m))
    return Handler
