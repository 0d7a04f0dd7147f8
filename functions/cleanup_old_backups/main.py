"""Cloud Functions entry point ``cleanup_old_backups``: a thin adapter over ``dbbackup.service``."""

from __future__ import annotations

import logging

import flask
import functions_framework

from dbbackup.service import handle_cleanup

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


@functions_framework.http
def cleanup_old_backups(request: flask.Request) -> flask.Response:
    body, status = handle_cleanup(request.method, request.get_data(cache=False))
    return flask.make_response(flask.jsonify(body), status)
