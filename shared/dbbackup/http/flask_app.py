"""The one translation between Flask (what functions-framework hands a function) and the
framework-free ``http.types``, shared by the three ``functions/*/main.py``. Only these entry
points import it; the core never sees Flask."""

from __future__ import annotations

import logging

import flask

from dbbackup import structured_log
from dbbackup.auth.config import MAX_BODY_LIMIT
from dbbackup.http.types import HttpReply, HttpRequest


def configure_logging() -> None:
    """JSON lines for Cloud Logging (plain ones with LOG_FORMAT=text or off Cloud Run), redacted
    from the first record on, whoever logs it (ours, Flask, google-auth)."""
    structured_log.configure(logging.INFO)


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
