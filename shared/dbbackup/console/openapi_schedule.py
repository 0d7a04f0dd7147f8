"""The OpenAPI paths of the schedule settings, the history and the storage use (issue 20),
merged into ``console.openapi.document``."""

from __future__ import annotations

from typing import Any

from dbbackup.console.history import DAYS
from dbbackup.core.retention import COUNT_BOUNDS

_ERROR = {"$ref": "#/components/schemas/Error"}
_AUTH = {
    "401": {
        "description": "no token, or an invalid or expired one",
        "content": {"application/json": {"schema": _ERROR}},
    },
    "403": {"description": "not a manager or admin", "content": {"application/json": {"schema": _ERROR}}},
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


_JOB_IN = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "cron": {"type": "string", "description": "unix-cron, five fields (minute hour day month weekday)"},
        "time_zone": {"type": "string", "description": "IANA time zone name, e.g. Europe/Berlin"},
    },
}
_JOB_OUT = {
    "type": "object",
    "required": ["cron", "time_zone", "next_run"],
    "properties": {
        "cron": {"type": "string"},
        "time_zone": {"type": "string"},
        "next_run": _nullable("string", format="date-time"),
        "job": {"type": "string", "description": "the Cloud Scheduler job (when one is configured)"},
    },
}
_COUNTS = {name: {"type": "integer", "minimum": low, "maximum": high} for name, (low, high) in COUNT_BOUNDS.items()}
SCHEDULE = {
    "type": "object",
    "required": ["backup", "cleanup", "retention", "applied", "scheduler", "detail"],
    "properties": {
        "backup": _JOB_OUT,
        "cleanup": _JOB_OUT,
        "retention": {"type": "object", "properties": {**_COUNTS, "keep_min": {"type": "integer"}}},
        "applied": {"type": "boolean", "description": "the schedule is the Cloud Scheduler jobs' own"},
        "scheduler": _nullable("string", enum=["cloud_scheduler", None]),
        "detail": _nullable("string", description="why the schedule is not applied"),
        "changed": {"type": "array", "items": {"type": "string"}, "description": "(PUT) what this change set"},
    },
}


def paths() -> dict[str, Any]:
    return {
        "/api/config/schedule": {
            "get": {
                "summary": "when the backup and the cleanup run (their Scheduler jobs), their next run, retention",
                "responses": {"200": _json(SCHEDULE, "the settings"), "502": _json(_ERROR, "Scheduler error"), **_AUTH},
            },
            "put": {
                "summary": "change any part: applied to the Cloud Scheduler job first, then recorded (logged)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "minProperties": 1,
                                "properties": {
                                    "backup": _JOB_IN,
                                    "cleanup": _JOB_IN,
                                    "retention": {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "minProperties": 1,
                                        "properties": _COUNTS,
                                    },
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(SCHEDULE, "changed (applied: false where no Scheduler is configured)"),
                    "400": _json(_ERROR, "an invalid value; field names it (e.g. backup.cron)"),
                    "502": _json(_ERROR, "Cloud Scheduler refused the update (nothing of that job recorded)"),
                    **_AUTH,
                },
            },
        },
        "/api/history": {
            "get": {
                "summary": "every backup attempt of the last days, oldest first (the console's chart)",
                "parameters": [
                    {
                        "name": "days",
                        "in": "query",
                        "schema": {"type": "integer", "enum": list(DAYS), "default": DAYS[0]},
                    }
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "days": {"type": "integer"},
                                "since": {"type": "string", "format": "date-time"},
                                "now": {"type": "string", "format": "date-time"},
                                "timezone": {"type": "string"},
                                "failed": {"type": "integer"},
                                "attempts": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "id": {"type": "string", "format": "uuid"},
                                            "started_at": {"type": "string", "format": "date-time"},
                                            "backup_type": {"type": "string"},
                                            "status": {"type": "string"},
                                            "file_size_bytes": _nullable("integer"),
                                            "duration_seconds": _nullable("number"),
                                            "failure_reason": _nullable("string"),
                                        },
                                    },
                                },
                            },
                        },
                        "the attempts",
                    ),
                    "400": _json(_ERROR, "days is not 30 or 90, or an unknown parameter"),
                    **_AUTH,
                },
            }
        },
        "/api/storage": {
            "get": {
                "summary": "space used per storage target, where its API tells it (Drive's quota)",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "targets": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "target": {"type": "string"},
                                            "available": {"type": "boolean"},
                                            "used_bytes": _nullable("integer"),
                                            "limit_bytes": _nullable("integer", description="null: unlimited"),
                                            "detail": {"type": "string"},
                                        },
                                    },
                                }
                            },
                        },
                        "one entry per BACKUP_STORAGE target",
                    ),
                    **_AUTH,
                },
            }
        },
    }
