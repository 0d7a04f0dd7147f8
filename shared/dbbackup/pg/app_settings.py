"""The app's settings table ``invoice_configurations``: the backup's three settings, read by the
backup, the cleanup, the alerts and the console through the same functions, and written by the
console in one statement that also returns the old value."""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg

from dbbackup.core.ports import BackupConfig
from dbbackup.core.retention import COUNT_BOUNDS
from dbbackup.errors import ConfigError
from dbbackup.redact import one_line

log = logging.getLogger("dbbackup.alerts")
BACKUP_KEYS = ("backup_folder_path", "backup_notification_email", "backup_enabled")
# The console's schedule settings (migration 013); NULL: the deployment's own setting applies.
SCHEDULE_KEYS = (
    "backup_schedule_cron",
    "backup_schedule_time_zone",
    "backup_cleanup_cron",
    "backup_cleanup_time_zone",
    "backup_retention_days",
    "backup_keep_weekly",
    "backup_keep_monthly",
)
# The spec's default recipient (migration 002 inserts it): a new deployment's failure details must
# not go there, so BACKUP_NOTIFICATION_EMAIL (a required Terraform variable) replaces it.
SPEC_DEFAULT_RECIPIENT = "pega2023test@gmail.com"


def adopt_notification_email(conn: psycopg.Connection, address: str) -> bool:
    """Set ``backup_notification_email`` to ``address`` while it still holds the spec's default;
    an address a manager chose is never overwritten. True when it changed the row."""
    with conn.transaction():
        changed = conn.execute(
            "UPDATE public.invoice_configurations SET config_value = %s"
            " WHERE config_key = 'backup_notification_email' AND config_value = %s",
            (address, SPEC_DEFAULT_RECIPIENT),
        ).rowcount
    if changed:
        log.warning(
            "backup_notification_email was the spec's default %s; set to %s (BACKUP_NOTIFICATION_EMAIL)",
            SPEC_DEFAULT_RECIPIENT,
            address,
        )
    return bool(changed)


def as_bool(value: str | None) -> bool:
    if value is None:
        return True
    text = value.strip().lower()
    if text in ("true", "t", "1", "yes", "on"):
        return True
    if text in ("false", "f", "0", "no", "off"):
        return False
    raise ConfigError(f"invoice_configurations.backup_enabled={value!r} is not a boolean")


def stored_zone(key: str, text: str | None) -> ZoneInfo | None:
    if text is None or not text.strip():
        return None
    try:
        return ZoneInfo(text.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"invoice_configurations.{key}={text!r} is not an IANA time zone name") from None


def stored_count(key: str, text: str | None) -> int | None:
    if text is None or not text.strip():
        return None
    low, high = COUNT_BOUNDS[key.removeprefix("backup_")]
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise ConfigError(f"invoice_configurations.{key}={text!r}: expected a whole number from {low} to {high}")
    return int(text)


def read_settings(conn: psycopg.Connection, keys: tuple[str, ...]) -> dict[str, str | None]:
    """The stored text of ``keys`` (a key without a row is missing from the answer)."""
    try:
        return dict(
            conn.execute(
                "SELECT config_key, config_value FROM public.invoice_configurations WHERE config_key = ANY(%s)",
                (list(keys),),
            ).fetchall()
        )
    except psycopg.errors.UndefinedTable:
        raise ConfigError("invoice_configurations does not exist: run `dbbackup migrate`") from None


def read_backup_config(conn: psycopg.Connection) -> BackupConfig:
    rows = read_settings(conn, BACKUP_KEYS + SCHEDULE_KEYS)
    folder = rows.get("backup_folder_path")
    if not folder or not folder.strip():
        raise ConfigError("invoice_configurations.backup_folder_path is not set")
    return BackupConfig(
        folder_path=folder.strip(),
        notification_email=rows.get("backup_notification_email"),
        enabled=as_bool(rows.get("backup_enabled")),
        time_zone=stored_zone("backup_schedule_time_zone", rows.get("backup_schedule_time_zone")),
        retention_days=stored_count("backup_retention_days", rows.get("backup_retention_days")),
        keep_weekly=stored_count("backup_keep_weekly", rows.get("backup_keep_weekly")),
        keep_monthly=stored_count("backup_keep_monthly", rows.get("backup_keep_monthly")),
    )


def read_notification_email(conn: psycopg.Connection | None) -> str | None:
    """``backup_notification_email`` read now (a manager may have changed it since the run began);
    None when it cannot be read."""
    if conn is None:
        return None
    try:
        row = conn.execute(
            "SELECT config_value FROM public.invoice_configurations WHERE config_key = 'backup_notification_email'"
        ).fetchone()
    except Exception as exc:
        log.error("could not read backup_notification_email: %s", one_line(str(exc)))
        return None
    return row[0] if row else None


def write_backup_setting(conn: psycopg.Connection, key: str, stored: str) -> str | None:
    """Store one setting's text; the old text, read in the same statement (under the row's lock),
    so two managers' changes are logged truthfully. ConfigError when the row is missing."""
    row = conn.execute(
        "UPDATE public.invoice_configurations AS c SET config_value = %s"
        " FROM (SELECT config_key, config_value FROM public.invoice_configurations WHERE config_key = %s"
        " FOR UPDATE) AS old WHERE c.config_key = old.config_key RETURNING old.config_value",
        (stored, key),
    ).fetchone()
    if row is None:
        raise ConfigError(f"invoice_configurations has no {key} row: run `dbbackup migrate`")
    return None if row[0] is None else str(row[0])
