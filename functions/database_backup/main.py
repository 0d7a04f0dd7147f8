"""Cloud Functions entry point ``database_backup``: a thin adapter over ``dbbackup.http.endpoints``."""

from __future__ import annotations

import flask
import functions_framework

from dbbackup.http.endpoints import backup_endpoint
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
def database_backup(request: flask.Request) -> flask.Response:
    return response_of(backup_endpoint(request_of(request)))
