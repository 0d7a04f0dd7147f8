"""The one translation between Flask (what functions-framework hands a function) and the
framework-free ``http.types``, shared by the three ``functions/*/main.py``. Only these entry
points import it; the core never sees Flask."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

import flask
import werkzeug.exceptions

from dbbackup.auth.config import MAX_BODY_LIMIT
from dbbackup.http.types import HttpReply, HttpRequest
from dbbackup.redact import install_log_redaction

# An answer that is JSON and nothing else: never sniffed as a page, never framed, never cached.
JSON_ONLY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def configure_logging() -> None:
    """Plain lines for Cloud Logging, redacted from the first record on, whoever logs it (ours,
    Flask, google-auth)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    install_log_redaction()


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
