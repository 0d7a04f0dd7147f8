"""Cloud Functions entry point ``database_backup``: a thin adapter over ``dbbackup.service``."""

from __future__ import annotations

import logging

import flask
import functions_framework

from dbbackup.service import handle_backup

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


@functions_framework.http
def database_backup(request: flask.Request) -> flask.Response:
    body, status = handle_backup(request.method, request.get_data(cache=False), path=request.path)
    return flask.make_response(flask.jsonify(body), status)
