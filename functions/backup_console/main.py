"""Cloud Functions entry point ``backup_console``: a thin adapter over ``dbbackup.console.api``
(the managers' page, its files and its API)."""

from __future__ import annotations

import flask
import functions_framework

from dbbackup.console.api import console_endpoint
from dbbackup.http.flask_app import (
    answer_every_request,
    configure_logging,
    limit_request_reading,
    request_of,
    response_of,
)

configure_logging()
answer_every_request()
limit_request_reading()


@functions_framework.http
def backup_console(request: flask.Request) -> flask.Response:
    return response_of(console_endpoint(request_of(request)))


def _serve_static(filename: str) -> flask.Response:
    return backup_console(flask.request)


if flask.has_app_context():
    # functions-framework's Flask app keeps Flask's default /static/<path> route (to a folder that
    # does not exist) ahead of the function's catch-all; the console's files live under /static/,
    # so that route is pointed at the function too (create_app loads this module in its context).
    flask.current_app.view_functions["static"] = _serve_static
