"""The OpenAPI 3.1 document of the console's API, as data (served at ``/api/openapi.json``).
The log parameters are built from the validator's own whitelists; tests/test_console_openapi.py
keeps the paths and methods equal to the router's."""

from __future__ import annotations

from typing import Any

from dbbackup.console.logs import CHOICES, FIRST_DATE, LAST_DATE, MAX_PAGE, MAX_PER_PAGE
from dbbackup.console.openapi_schedule import paths as schedule_paths
from dbbackup.console.settings import SETTINGS
from dbbackup.pg.log_query import DEFAULT_PER_PAGE

_STR, _INT, _BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
_TIME = {"type": "string", "format": "date-time"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_DESCRIPTIONS = {
    "status": "backup status to show",
    "type": "automatic (scheduled) or manual backups",
    "range": "a window ending now; not with from/to",
    "sort": "the column to sort by",
    "order": "sort direction (default desc: newest / largest first)",
}


def _filters() -> list[dict[str, Any]]:
    choice = [
        {
            "name": name,
            "in": "query",
            "description": _DESCRIPTIONS[name],
            "schema": {"type": "string", "enum": list(options), "default": options[0]},
        }
        for name, options in CHOICES.items()
    ]
    dates = [
        {
            "name": name,
            "in": "query",
            "description": (
                f"first/last day ({name}), inclusive, YYYY-MM-DD in BACKUP_TIMEZONE, from {FIRST_DATE}"
                f" to {LAST_DATE}; not with range"
            ),
            "schema": {"type": "string", "format": "date"},
        }
        for name in ("from", "to")
    ]
    return choice + dates


_PAGING = [
    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1}},
    {
        "name": "per_page",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE, "default": DEFAULT_PER_PAGE},
    },
]

_LOG_ID = {"name": "log_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}

_AUTH_ERRORS = {
    "401": _error("no token, or an invalid or expired one (with WWW-Authenticate)"),
    "403": _error("not a manager or admin (user_profiles.role), or a scheduler token"),
    "500": _error("misconfigured, or the database cannot be reached"),
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": _STR, "field": {**_STR, "description": "the parameter or field at fault"}},
    },
    "ClientConfig": {
        "type": "object",
        "properties": {
            "supabase_url": _nullable(_STR),
            "supabase_anon_key": _nullable(_STR),
            "auth_mode": {"type": "string", "enum": ["enforced", "disabled"]},
            "timezone": _STR,
        },
    },
    "Me": {
        "type": "object",
        "properties": {"subject": _STR, "role": {"type": "string", "enum": ["manager", "admin", "auth-disabled"]}},
    },
    "Row": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "started_at": _TIME,
            "completed_at": _nullable(_TIME),
            "backup_type": {"type": "string", "enum": ["automatic", "manual"]},
            "status": {"type": "string", "enum": ["success", "failed", "in_progress"]},
            "file_name": _STR,
            "file_size_bytes": _nullable(_INT),
            "file_size_human": _nullable(_STR),
            "google_drive_file_id": _nullable(_STR),
            "google_drive_path": _nullable(_STR),
            "drive_url": {**_nullable(_STR), "description": "with BACKUP_STORAGE=google_drive and a file id"},
            "failure_reason": {**_nullable(_STR), "description": "failed rows only"},
            "triggered_by": _nullable(_STR),
            "deleted_at": _nullable(_TIME),
            "deleted": _BOOL,
            "downloadable": {**_BOOL, "description": "success and not deleted"},
            "encrypted": {**_BOOL, "description": "an age-encrypted backup (.sql.gz.age)"},
            "copies": {
                "type": "array",
                "description": "one per BACKUP_STORAGE target the attempt wrote (backup_copies), in order",
                "items": {
                    "type": "object",
                    "properties": {
                        "target": {"type": "string", "enum": ["local", "google_drive", "gcs", "s3"]},
                        "status": {"type": "string", "enum": ["success", "failed"]},
                        "deleted": _BOOL,
                    },
                },
            },
            "decrypt_command": {
                **_nullable(_STR),
                "description": "encrypted backups: the one-line command that decrypts and restores the download",
            },
        },
    },
    "LogPage": {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": _ref("Row")},
            "total": _INT,
            "page": _INT,
            "per_page": _INT,
            "pages": {**_INT, "minimum": 1},
            "sort": _STR,
            "order": _STR,
        },
    },
    "Config": {
        "type": "object",
        "properties": {
            "backup_folder_path": _STR,
            "backup_notification_email": _nullable(_STR),
            "backup_enabled": _BOOL,
        },
    },
    "SettingValue": {"type": "object", "required": ["value"], "properties": {"value": {}}},
    "SettingChange": {"type": "object", "properties": {"key": _STR, "value": {}, "previous": {}}},
    "BackupResult": {
        "type": "object",
        "properties": {
            "backup_log_id": _STR,
            "status": {"const": "success"},
            "file_name": _STR,
            "file_size_bytes": _INT,
            "path": _STR,
            "file_id": _STR,
            "md5": _STR,
            "seconds": {"type": "number"},
        },
    },
    "BackupFailed": {
        "type": "object",
        "properties": {"backup_log_id": _STR, "status": {"const": "failed"}, "failure_reason": _STR},
    },
    "RestoreTargets": {
        "type": "object",
        "properties": {
            "targets": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": _STR,
                        "replace": {**_BOOL, "description": "the restore clears the target's schemas first"},
                        "is_source": {
                            **_nullable(_BOOL),
                            "description": "the backed-up database itself (null: unreachable)",
                        },
                        "reachable": _BOOL,
                    },
                },
            },
            "can_decrypt": {**_BOOL, "description": "an identity for encrypted backups is configured"},
            "decrypt_problem": {**_STR, "description": "why encrypted backups cannot be restored here"},
        },
    },
    "RestoreRequest": {
        "type": "object",
        "required": ["target", "confirm"],
        "properties": {"target": _STR, "confirm": {**_STR, "description": "the target's name, typed again"}},
        "additionalProperties": False,
    },
    "RestoreResult": {
        "type": "object",
        "properties": {
            "restore_id": {"type": "string", "format": "uuid"},
            "status": {"type": "string", "enum": ["success", "failed"]},
            "target": _STR,
            "seconds": {"type": "number"},
            "tables": _nullable(_INT),
            "rows": _nullable(_INT),
            "reason": {**_STR, "description": "failed only"},
        },
    },
    "Restore": {
        "type": "object",
        "properties": {
            "restore_id": {"type": "string", "format": "uuid"},
            "backup_id": _nullable(_STR),
            "file_name": _nullable(_STR),
            "target": _STR,
            "replace": _BOOL,
            "requested_by": _nullable(_STR),
            "status": {"type": "string", "enum": ["in_progress", "success", "failed"]},
            "started_at": _TIME,
            "completed_at": _nullable(_TIME),
            "seconds": {"type": ["number", "null"]},
            "progress": {
                "type": "object",
                "properties": {"bytes_read": _nullable(_INT), "total_bytes": _nullable(_INT)},
            },
            "tables": _nullable(_INT),
            "rows": _nullable(_INT),
            "reason": _nullable(_STR),
        },
    },
    "VerifyResult": {
        "type": "object",
        "properties": {
            "verify_status": {"type": "string", "enum": ["passed", "failed", "skipped"]},
            "detail": _STR,
            "backup_log_id": _nullable(_STR),
            "file_name": _nullable(_STR),
            "restored_into": _nullable(_STR),
            "tables": {"type": "object", "description": "table -> {expected, restored} rows"},
            "seconds": {"type": "number"},
        },
    },
    "Health": {
        "type": "object",
        "description": "dbbackup.core.health.Health",
        "properties": {
            "healthy": _BOOL,
            "last_success_at": _nullable(_TIME),
            "consecutive_failures": _INT,
            "success_rate_7d": {"type": ["number", "null"]},
            "success_rate_30d": {"type": ["number", "null"]},
        },
        "additionalProperties": True,
    },
}


def _public_file(kind: str, description: str) -> dict[str, Any]:
    return {
        "get": {
            "summary": description,
            "security": [],
            "responses": {
                "200": {"description": description, "content": {kind: {}}},
                "404": _error("no such file"),
            },
        }
    }


def document() -> dict[str, Any]:
    filters = _filters()
    setting_keys = list(SETTINGS)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dbbackup managers' console",
            "version": "1",
            "description": "The API of the backup_console function. Paths are relative to the function's URL.",
        },
        "servers": [{"url": "..", "description": "the function's URL (this document is at <url>/api/openapi.json)"}],
        "security": [{"supabase": []}],
        "paths": {
            "/": _public_file("text/html", "the console page"),
            "/static/{name}": {
                "get": {
                    **_public_file("application/octet-stream", "a file of the page (.js, .css, .svg, .png, .ico)")[
                        "get"
                    ],
                    "parameters": [{"name": "name", "in": "path", "required": True, "schema": _STR}],
                }
            },
            "/api/client-config": {
                "get": {
                    "summary": "what the page needs to sign in",
                    "security": [],
                    "responses": {"200": _json(_ref("ClientConfig"), "public settings")},
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "this document",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
                }
            },
            "/api/me": {"get": {"summary": "who is signed in", "responses": {"200": _json(_ref("Me"), "the caller")}}},
            "/api/logs": {
                "get": {
                    "summary": "one page of backup_logs (soft-deleted rows included, marked deleted)",
                    "parameters": filters + _PAGING,
                    "responses": {
                        "200": _json(_ref("LogPage"), "a page (empty items past the last page)"),
                        "400": _error("unknown, malformed or repeated parameter"),
                        **_AUTH_ERRORS,
                    },
                }
            },
            "/api/logs.csv": {
                "get": {
                    "summary": "every matching row as CSV, streamed (cells starting = + - @ tab CR get a leading ')",
                    "parameters": filters,
                    "responses": {
                        "200": {"description": "text/csv, as an attachment", "content": {"text/csv": {}}},
                        "400": _error("unknown, malformed or repeated parameter"),
                        **_AUTH_ERRORS,
                    },
                }
            },
            "/api/backups/{log_id}": {
                "get": {
                    "summary": "one backup: its row, its manifest (rows and bytes per table), shrink warnings, drill",
                    "parameters": [
                        {
                            "name": "log_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "format": "uuid"},
                        }
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["id", "status", "file_name", "manifest"],
                                "properties": {
                                    "id": {"type": "string", "format": "uuid"},
                                    "status": {"type": "string"},
                                    "file_name": {"type": "string"},
                                    "started_at": _nullable({"type": "string", "format": "date-time"}),
                                    "manifest": _nullable({"type": "object"}),
                                    "shrink_warnings": {"type": "array", "items": {"type": "string"}},
                                    "verify_status": _nullable({"type": "string"}),
                                    "verified_at": _nullable({"type": "string", "format": "date-time"}),
                                    "verify_detail": _nullable({"type": "string"}),
                                },
                            },
                            "the backup and its contents",
                        ),
                        "400": _error("not a UUID"),
                        "404": _error("no such row"),
                        **_AUTH_ERRORS,
                    },
                }
            },
            "/api/backups/{log_id}/download": {
                "get": {
                    "summary": "the backup file, streamed from storage (Content-Length, attachment)",
                    "parameters": [
                        {
                            "name": "log_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "format": "uuid"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "the .sql.gz file, or the .sql.gz.age file of an encrypted backup",
                            "content": {"application/gzip": {}, "application/octet-stream": {}},
                        },
                        "400": _error("not a UUID"),
                        "404": _error("no such row; failed, in progress or deleted; or gone from storage"),
                        "502": _error("storage could not be read"),
                        **_AUTH_ERRORS,
                    },
                }
            },
            "/api/config": {
                "get": {
                    "summary": "the backup settings",
                    "responses": {"200": _json(_ref("Config"), "settings"), **_AUTH_ERRORS},
                }
            },
            "/api/config/{key}": {
                "put": {
                    "summary": "change one setting (logged: who, when, old -> new)",
                    "parameters": [
                        {
                            "name": "key",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "enum": setting_keys},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("SettingValue")}},
                    },
                    "responses": {
                        "200": _json(_ref("SettingChange"), "changed"),
                        "400": _error("invalid value (field: value) or body"),
                        "404": _error("no such setting"),
                        "415": _error("the body is not application/json"),
                        **_AUTH_ERRORS,
                    },
                }
            },
            "/api/backups": {
                "post": {
                    "summary": "Run Backup Now (the manual path of database_backup), synchronously",
                    "requestBody": {"required": False, "content": {"application/json": {"schema": {"type": "object"}}}},
                    "responses": {
                        "200": _json(_ref("BackupResult"), "the backup succeeded"),
                        "400": _error("a body other than empty or {}"),
                        "409": _error("a backup is running"),
                        "429": _error("rate limited (Retry-After header)"),
                        "500": _json({"oneOf": [_ref("BackupFailed"), _ref("Error")]}, "failed, or could not start"),
                        "401": _AUTH_ERRORS["401"],
                        "403": _AUTH_ERRORS["403"],
                    },
                }
            },
            "/api/restore-targets": {
                "get": {
                    "summary": "where a backup may be restored: RESTORE_TARGETS' names (never URLs)",
                    "responses": {"200": _json(_ref("RestoreTargets"), "the targets"), **_AUTH_ERRORS},
                }
            },
            "/api/backups/{log_id}/restore": {
                "post": {
                    "summary": "restore the backup into a configured target, synchronously (a restore_logs row)",
                    "parameters": [_LOG_ID],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("RestoreRequest")}},
                    },
                    "responses": {
                        "200": _json(_ref("RestoreResult"), "restored"),
                        "400": _error("not a UUID, a bad body, or confirm is not the target's name; nothing written"),
                        "404": _error("no such backup, or no such target (field: target); nothing written"),
                        "409": _json(
                            {"oneOf": [_ref("RestoreResult"), _ref("Error")]},
                            "refused: a restore into that target is running; the backup is not restorable (failed,"
                            " missing in storage, encrypted and the console has no identity); or the target is not"
                            " empty (a failed restore_logs row)",
                        ),
                        "429": _error("rate limited (Retry-After header)"),
                        "500": _json({"oneOf": [_ref("RestoreResult"), _ref("Error")]}, "the restore failed"),
                        "401": _AUTH_ERRORS["401"],
                        "403": _AUTH_ERRORS["403"],
                    },
                }
            },
            "/api/restores": {
                "get": {
                    "summary": "the newest 20 restores (restore_logs), newest first",
                    "responses": {
                        "200": _json(
                            {"type": "object", "properties": {"items": {"type": "array", "items": _ref("Restore")}}},
                            "restores",
                        ),
                        **_AUTH_ERRORS,
                    },
                }
            },
            "/api/restores/{restore_id}": {
                "get": {
                    "summary": "one restore: status, progress, counts, failure reason",
                    "parameters": [
                        {
                            "name": "restore_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "format": "uuid"},
                        }
                    ],
                    "responses": {
                        "200": _json(_ref("Restore"), "the restore"),
                        "400": _error("not a UUID"),
                        "404": _error("no such restore"),
                        **_AUTH_ERRORS,
                    },
                }
            },
            "/api/backups/{log_id}/verify": {
                "post": {
                    "summary": "Verify now: the restore drill of this backup, recorded on its row",
                    "parameters": [_LOG_ID],
                    "requestBody": {"required": False, "content": {"application/json": {"schema": {"type": "object"}}}},
                    "responses": {
                        "200": _json(_ref("VerifyResult"), "the drill's verdict (passed, failed or skipped)"),
                        "400": _error("not a UUID, or a body other than empty or {}"),
                        "404": _error("no such backup"),
                        "409": _error("the backup is failed, in progress or deleted"),
                        "429": _error("rate limited (Retry-After header)"),
                        **_AUTH_ERRORS,
                    },
                }
            },
            "/api/status": {
                "get": {
                    "summary": "backup health (monitoring figures)",
                    "responses": {"200": _json(_ref("Health"), "health"), **_AUTH_ERRORS},
                }
            },
            **schedule_paths(),
        },
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "supabase": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "a Supabase access token of a user whose user_profiles.role is manager or admin",
                }
            },
        },
    }
