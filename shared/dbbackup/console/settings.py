"""The three backup settings in ``invoice_configurations`` as managers read and change them:
each new value validated by the same checks the backup and the alerts apply when they read it,
written in one statement that also returns the old value, and recorded (who, when, old -> new)
in the service log."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from dbbackup.core import folder_path
from dbbackup.core.alerts import is_email
from dbbackup.errors import ConfigError, SettingError
from dbbackup.pg.app_settings import as_bool, read_backup_config, write_backup_setting

log = logging.getLogger("dbbackup.console")
MAX_EMAIL = 254  # RFC 5321's limit on a forward path


def _folder(value: Any) -> str:
    if not isinstance(value, str):
        raise SettingError("backup_folder_path must be a string such as MyDrive/DatabaseBackups")
    try:
        folder_path.split(value)
    except ConfigError as exc:
        raise SettingError(str(exc)) from None
    return value


def _email(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_EMAIL or not is_email(value):
        raise SettingError("backup_notification_email must be an e-mail address such as ops@example.com")
    return value.strip()


def _enabled(value: Any) -> str:
    if not isinstance(value, bool):
        raise SettingError("backup_enabled must be true or false (a JSON boolean)")
    return "true" if value else "false"


@dataclass(frozen=True)
class Setting:
    key: str
    check: Callable[[Any], str]  # the stored text of a valid value; SettingError otherwise
    shown: Callable[[str | None], Any]  # the stored text as the API shows it


def _shown_bool(text: str | None) -> Any:
    try:
        return as_bool(text)
    except ConfigError:
        return text  # a hand-written value we cannot read: shown as it is, so it can be fixed


SETTINGS = {
    s.key: s
    for s in (
        Setting("backup_folder_path", _folder, lambda text: text),
        Setting("backup_notification_email", _email, lambda text: text),
        Setting("backup_enabled", _enabled, _shown_bool),
    )
}


def read_config(conn: psycopg.Connection) -> dict[str, Any]:
    """The three settings through the reader the backup itself uses (so both agree)."""
    config = read_backup_config(conn)
    return {
        "backup_folder_path": config.folder_path,
        "backup_notification_email": config.notification_email,
        "backup_enabled": config.enabled,
    }


def parse_value(body: bytes) -> Any:
    """The ``value`` of a ``{"value": ...}`` body."""
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise SettingError("the body is not valid JSON", "body") from None
    if not isinstance(data, dict) or "value" not in data:
        raise SettingError('the body must be a JSON object like {"value": ...}', "body")
    unknown = sorted(set(data) - {"value"})
    if unknown:
        raise SettingError(f"unknown field(s): {', '.join(unknown)[:200]}", unknown[0][:40])
    return data["value"]


def write_setting(conn: psycopg.Connection, key: str, value: Any, who: str) -> dict[str, Any]:
    """Validate and store one setting; ``{"key", "value", "previous"}``. The old value is read in
    the same statement (under the row's lock), so two managers' changes are logged truthfully."""
    setting = SETTINGS[key]
    stored = setting.check(value)
    old = write_backup_setting(conn, key, stored)
    previous, current = setting.shown(old), setting.shown(stored)
    at = datetime.now(UTC).isoformat(timespec="seconds")
    log.info("setting %s changed by %s at %s: %s -> %s", key, who, at, json.dumps(previous), json.dumps(current))
    return {"key": key, "value": current, "previous": previous}
