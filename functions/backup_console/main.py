"""Cloud Functions entry point ``backup_console``: a thin adapter over ``dbbackup.console_api``
(the managers' page, its files and its API)."""

from __future__ import annotations

import logging

import flask
import functions_framework

from dbbackup.auth_config import MAX_BODY_LIMIT
from dbbackup.console_api import console_endpoint
from dbbackup.gateway import HttpReply, HttpRequest
from dbbackup.redact import install_log_redaction

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
install_log_redaction()  # from the first record on, whatever logs it (ours, Flask, google-auth)


@functions_framework.http
def backup_console(request: flask.Request) -> flask.Response:
    query = request.query_string.decode("latin-1")  # percent-decoded (and checked) by the core
    req = HttpRequest.of(request.method, request.path, dict(request.headers), _read_body(request), query)
    reply = console_endpoint(req)
    response = _streamed(reply) if reply.stream is not None else flask.make_response(flask.jsonify(reply.body))
    response.status_code = reply.status
    response.headers.update(reply.headers)
    return response


def _serve_static(filename: str) -> flask.Response:
    return backup_console(flask.request)


if flask.has_app_context():
    # functions-framework's Flask app keeps Flask's default /static/<path> route (to a folder that
    # does not exist) ahead of the function's catch-all; the console's files live under /static/,
    # so that route is pointed at the function too (create_app loads this module in its context).
    flask.current_app.view_functions["static"] = _serve_static


def _streamed(reply: HttpReply) -> flask.Response:
    stream = reply.stream
    assert stream is not None
    if isinstance(stream, list | tuple):
        return flask.Response(stream, content_type=reply.content_type)  # in memory: Content-Length is set
    response = flask.Response(flask.stream_with_context(stream), content_type=reply.content_type)
    close = getattr(stream, "close", None)
    if close is not None:
        # Runs however the response ends, also when the client left before the first chunk (a
        # generator never started would not run its own cleanup): the export's connection goes.
        response.call_on_close(close)
    return response


def _read_body(request: flask.Request) -> bytes:
    """Never more than the largest allowed body plus one byte (so the gateway can answer 413)."""
    return request.stream.read(MAX_BODY_LIMIT + 1)
