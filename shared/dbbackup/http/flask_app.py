"""The one translation between Flask (what functions-framework hands a function) and the
framework-free ``http.types``, shared by the three ``functions/*/main.py``. Only these entry
points import it; the core never sees Flask."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any, cast

import flask
import werkzeug.exceptions

from dbbackup import structured_log
from dbbackup.auth.config import MAX_BODY_LIMIT
from dbbackup.http.types import HttpReply, HttpRequest

# An answer that is JSON and nothing else: never sniffed as a page, never framed, never cached.
JSON_ONLY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


log = logging.getLogger("dbbackup.http")


def configure_logging() -> None:
    """JSON lines for Cloud Logging (plain ones with LOG_FORMAT=text or off Cloud Run), redacted
    from the first record on, whoever logs it (ours, Flask, google-auth)."""
    structured_log.configure(logging.INFO)


def answer_every_request() -> None:
    """Leave no request to Flask's own HTML pages. Its router cannot match a path holding a line
    break (``/x%0Ay``), and it refuses /favicon.ico and /robots.txt itself: those requests go to
    the function like any other path, whose routing answers them in JSON. An exception that
    escaped anyway is a JSON 500 (its redacted one-line record is in the log), not
    functions-framework's text page. Call it while functions-framework loads the source (in its
    app's context); calling it again changes nothing."""
    if not flask.has_app_context():
        return
    app = flask.current_app

    def not_routed(exc: werkzeug.exceptions.NotFound) -> flask.Response:
        # functions-framework's view of the deployed target (one source serves three functions).
        # Its view returns what the function returned: a Response (response_of).
        view = cast(Callable[..., flask.Response], app.view_functions["run"])
        return view(path="")

    def crashed(exc: werkzeug.exceptions.InternalServerError) -> flask.Response:
        response = flask.make_response(flask.jsonify({"error": "internal error", "status": "failed"}), 500)
        response.headers.update(JSON_ONLY_HEADERS)
        return response

    app.register_error_handler(werkzeug.exceptions.NotFound, not_routed)
    app.register_error_handler(werkzeug.exceptions.InternalServerError, crashed)


# How long one request may take to arrive (its line, headers and body), from its first byte.
# Ours are small (a body is at most MAX_BODY_BYTES), so 30 s is generous for any real client.
REQUEST_READ_TIMEOUT_SECONDS = 30.0


class _ReadDeadline:
    """A connection's socket whose reads for one request share one deadline. A client that
    trickles its request (one byte a second, each read answered in time) would otherwise hold a
    server thread for as long as it likes, and a handful of them hold every thread. The deadline
    starts at a request's first read and ends with its answer's first write, so a keep-alive
    connection's next request gets a fresh one and a long download is never cut."""

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self._sock, self._seconds = sock, seconds
        self._deadline: float | None = None

    def recv(self, size: int, *flags: int) -> bytes:
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self._seconds
        remaining = self._deadline - now
        previous = self._sock.gettimeout()
        try:
            if remaining <= 0:
                raise TimeoutError
            self._sock.settimeout(remaining)
            return self._sock.recv(size, *flags)
        except TimeoutError:
            # As if the client had gone: the server closes the connection and frees the thread.
            log.warning("a request took longer than %s s to arrive; connection closed", self._seconds)
            return b""
        finally:
            with contextlib.suppress(OSError):
                self._sock.settimeout(previous)

    def sendall(self, data: bytes, *flags: int) -> None:
        self._deadline = None
        self._sock.sendall(data, *flags)

    def send(self, data: bytes, *flags: int) -> int:
        self._deadline = None
        return self._sock.send(data, *flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def limit_request_reading(seconds: float | None = None) -> None:
    """Give every connection of the server functions-framework runs the functions under
    (gunicorn's threaded worker: locally and deployed) a read deadline per request
    (``REQUEST_READ_TIMEOUT_SECONDS``, default 30 s). gunicorn has no setting for it: its only
    guard waits for a connection's first byte. Called in the process that loads the function,
    before the worker is forked; idempotent; without gunicorn (functions-framework --debug runs
    werkzeug's server, a thread per connection) there is nothing to do."""
    try:
        from gunicorn.workers import gthread
    except ImportError:  # pragma: no cover - functions-framework depends on it
        return
    if seconds is None:
        seconds = float(os.environ.get("REQUEST_READ_TIMEOUT_SECONDS") or REQUEST_READ_TIMEOUT_SECONDS)
    original = gthread.TConn.init
    if getattr(original, "dbbackup_read_deadline", False):
        return

    def init(conn: Any) -> None:
        if not conn.initialized and not conn.cfg.is_ssl and not isinstance(conn.sock, _ReadDeadline):
            conn.sock = _ReadDeadline(conn.sock, seconds)
        original(conn)

    setattr(init, "dbbackup_read_deadline", True)  # noqa: B010 - a marker on a function object
    gthread.TConn.init = init


def request_of(request: flask.Request) -> HttpRequest:
    # Never more than the largest allowed body plus one byte (so the guard can answer 413).
    body = request.stream.read(MAX_BODY_LIMIT + 1)
    query = request.query_string.decode("latin-1")  # percent-decoded (and checked) by the core
    return HttpRequest.of(request.method, request.path, dict(request.headers), body, query)


def response_of(reply: HttpReply) -> flask.Response:
    response = _streamed(reply) if reply.stream is not None else flask.make_response(flask.jsonify(reply.body))
    response.status_code = reply.status
    response.headers.update(reply.headers)
    return response


def _streamed(reply: HttpReply) -> flask.Response:
    stream = reply.stream
    assert stream is not None
    if isinstance(stream, list | tuple):
        return flask.Response(stream, content_type=reply.content_type)  # in memory: Content-Length is set
    response = flask.Response(flask.stream_with_context(iter(stream)), content_type=reply.content_type)
    close = getattr(stream, "close", None)
    if close is not None:
        # Runs however the response ends, also when the client left before the first chunk (a
        # generator never started would not run its own cleanup): the export's connection goes.
        response.call_on_close(close)
    return response
