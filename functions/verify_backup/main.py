"""Cloud Functions entry point ``verify_backup``: a thin adapter over ``dbbackup.http.endpoints``
(the weekly restore drill)."""

from __future__ import annotations

import flask
import functions_framework

from dbbackup.http.endpoints import verify_endpoint
from dbbackup.http.flask_app import configure_logging, request_of, response_of

configure_logging()


@functions_framework.http
def verify_backup(request: flask.Request) -> flask.Response:
    return response_of(verify_endpoint(request_of(request)))
