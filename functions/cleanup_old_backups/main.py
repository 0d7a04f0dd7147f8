"""Cloud Functions entry point ``cleanup_old_backups``: a thin adapter over ``dbbackup.gateway``."""

from __future__ import annotations

import logging

import flask
import functions_framework

from dbbackup.auth_config import MAX_BODY_LIMIT
from dbbackup.gateway import HttpRequest, cleanup_endpoint
from dbbackup.redact import install_log_redaction

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
install_log_redaction()  # from the first record on, whatever logs it (ours, Flask, google-auth)


@functions_framework.http
def cleanup_old_backups(request: flask.Request) -> flask.Response:
    reply = cleanup_endpoint(HttpRequest.of(request.method, request.path, dict(request.headers), _read_body(request)))
    response = flask.make_response(flask.jsonify(reply.body), reply.status)
    response.headers.update(reply.headers)
    return response


def _read_body(request: flask.Request) -> bytes:
    """Never more than the largest allowed body plus one byte (so the gateway can answer 413)."""
    return request.stream.read(MAX_BODY_LIMIT + 1)
