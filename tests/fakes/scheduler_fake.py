"""Cloud Scheduler v1's ``GetJob`` and ``UpdateJob`` over REST, on 127.0.0.1, for the real
google-cloud-scheduler client (``transport="rest"``, ``api_endpoint`` pointed here).

``GET /v1/projects/P/locations/L/jobs/J`` answers the Job (camelCase JSON: ``name``,
``schedule``, ``timeZone``, ``state``, ...). ``PATCH`` of the same path with a Job body and
``updateMask`` (comma-separated camelCase field paths) changes those fields and answers the
whole job. An unknown job answers 404 ``NOT_FOUND``; a schedule that is not five unix-cron
fields, or a zone that is not an IANA name, answers 400 ``INVALID_ARGUMENT`` (the client raises
``NotFound`` / ``InvalidArgument``). Every request is in ``exchanges``; faults come from the base.
"""

from __future__ import annotations

import json
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._http import Exchange, FakeServer, Fault, Reply

_JOB = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+/jobs/[^/:]+)$")
# The camelCase field paths of an update mask, as the REST transport sends them.
_FIELDS = {"schedule": "schedule", "timeZone": "timeZone", "time_zone": "timeZone"}


def error(status: int, code: str, message: str) -> Reply:
    return Reply.json(status, {"error": {"code": status, "message": message, "status": code}})


class SchedulerFake(FakeServer):
    methods = ("GET", "PATCH")

    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[str, dict[str, object]] = {}
        self.start()

    def add(self, name: str, schedule: str, time_zone: str = "UTC") -> str:
        """A job as Terraform creates it (HTTP target and all); returns its resource name."""
        with self.lock:
            self.jobs[name] = {
                "name": name,
                "schedule": schedule,
                "timeZone": time_zone,
                "state": "ENABLED",
                "httpTarget": {"uri": "https://example.invalid/", "httpMethod": "POST"},
                "attemptDeadline": "1800s",
            }
        return name

    def refuse(self, status: int, code: str, method: str | None = None, times: int = 1) -> Fault:
        """The next ``times`` requests (of ``method``) answered with an API error (403, 404, 503...)."""
        return self.arm(Fault(lambda e: error(status, code, f"injected {code}"), method=method, times=times))

    @property
    def patches(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.method == "PATCH"]

    def respond(self, exchange: Exchange) -> Reply:
        match = _JOB.match(exchange.path)
        if not match:
            return error(404, "NOT_FOUND", "Not Found")
        name = match.group(1)
        with self.lock:
            job = self.jobs.get(name)
            if job is None:
                return error(404, "NOT_FOUND", f"Job not found: {name}.")
            if exchange.method == "GET":
                return Reply.json(200, job)
            try:
                body = json.loads(exchange.body() or b"{}")
            except ValueError:
                return error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
            mask = [m for m in exchange.query.get("updateMask", "").split(",") if m]
            if not mask:
                # CHOICE: the API updates every field given when the mask is empty; the client
                # under test always sends one, so the fake refuses a request without it.
                return error(400, "INVALID_ARGUMENT", "update_mask is required by this fake")
            changed = dict(job)
            for path in mask:
                if path not in _FIELDS:
                    return error(400, "INVALID_ARGUMENT", f"field {path} may not be updated by this fake")
                key = _FIELDS[path]
                changed[key] = body.get(key, body.get(path, ""))
            if len(str(changed["schedule"]).split()) != 5:
                return error(400, "INVALID_ARGUMENT", "Schedule or time zone is invalid.")
            try:
                ZoneInfo(str(changed["timeZone"]))
            except (ZoneInfoNotFoundError, ValueError):
                return error(400, "INVALID_ARGUMENT", "Schedule or time zone is invalid.")
            self.jobs[name] = changed
            return Reply.json(200, changed)
