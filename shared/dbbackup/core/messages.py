"""The alert e-mails' content: subject, text and HTML of each kind, with the spec's exact texts.
Pure functions of what happened; ``core.alerts`` delivers them."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from dbbackup.core.ports import Email

PREFIX = "[Database Backup]"
CLOSING = (
    "Please check the backup system and run a manual backup once the problem is fixed.",
    "This is an automated message from the Database Backup System. Please do not reply.",
)


def _local(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment.astimezone(tz)


def human_size(size: int | None) -> str:
    if size is None:
        return "unknown"
    value, unit = float(size), "bytes"
    for next_unit in ("KB", "MB", "GB", "TB"):
        if value < 1024:
            break
        value, unit = value / 1024, next_unit
    return f"{size:,} bytes" if unit == "bytes" else f"{value:,.1f} {unit} ({size:,} bytes)"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _render(
    kind: str, severity: str, subject: str, intro: str, fields: list[tuple[str, str]], notes: list[str]
) -> Email:
    text_lines = [intro, "", *(f"{label}: {value}" for label, value in fields)]
    if notes:
        text_lines += ["", *notes]
    text_lines += ["", *CLOSING]
    rows = "".join(
        f'<tr><th align="left" style="padding:2px 12px 2px 0">{html.escape(label)}</th>'
        f"<td>{html.escape(value)}</td></tr>"
        for label, value in fields
    )
    paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in notes)
    closing = "".join(f"<p>{html.escape(line)}</p>" for line in CLOSING)
    body = (
        f"<!DOCTYPE html><html><body><p>{html.escape(intro)}</p>"
        f'<table cellspacing="0">{rows}</table>{paragraphs}{closing}</body></html>'
    )
    return Email(kind, severity, subject, "\n".join(text_lines) + "\n", body)


@dataclass(frozen=True)
class BackupFailure:
    """What the spec's failure e-mail reports. ``backup_id`` / ``file_name`` are None when the
    run failed before it had a row (configuration, credentials, database unreachable)."""

    when: datetime
    backup_type: str  # automatic | manual
    reason: str
    file_name: str | None
    expected_size: int | None  # the last successful backup's size: what this one should be near
    drive_path: str | None
    backup_id: str | None
    consecutive: int = 1
    last_success: datetime | None = None


def backup_failure_email(failure: BackupFailure, tz: ZoneInfo, environment: str) -> Email:
    local = _local(failure.when, tz)
    subject = f"{PREFIX} Backup Failed - {local:%Y-%m-%d}"
    if failure.consecutive >= 2:
        subject += f" ({failure.consecutive} failures in a row)"
    not_started = "none (the backup could not start)"
    fields = [
        ("Date and time", f"{local:%Y-%m-%d %H:%M:%S} {tz.key}"),
        ("Type", failure.backup_type.capitalize()),
        ("Status", "Failed"),
        ("Failure details", failure.reason),
        ("File name", failure.file_name or not_started),
        (
            "Expected size",
            f"about {human_size(failure.expected_size)} (the last successful backup)"
            if failure.expected_size is not None
            else "unknown (no earlier successful backup)",
        ),
        ("Drive path", failure.drive_path or not_started),
        ("Environment", environment),
        ("Backup ID", failure.backup_id or not_started),
    ]
    notes = []
    if failure.consecutive >= 2:
        since = (
            f"the last successful backup was on {_local(failure.last_success, tz):%Y-%m-%d %H:%M} {tz.key}"
            if failure.last_success
            else "no backup has succeeded yet"
        )
        notes.append(f"This is the {_ordinal(failure.consecutive)} failed backup in a row; {since}.")
    return _render("backup_failed", "error", subject, "A database backup has failed.", fields, notes)


def cleanup_failure_email(
    when: datetime, tz: ZoneInfo, environment: str, folder: str, failures: list[tuple[str, str]], summary: str
) -> Email:
    local = _local(when, tz)
    details = "; ".join(f"{name}: {reason}" for name, reason in failures)
    fields = [
        ("Date and time", f"{local:%Y-%m-%d %H:%M:%S} {tz.key}"),
        ("Type", "Retention cleanup"),
        ("Status", "Failed"),
        ("Failure details", details),
        ("Files not deleted", ", ".join(name for name, _ in failures) or "none"),
        ("Drive path", folder),
        ("Environment", environment),
        ("Summary", summary),
    ]
    notes = ["Files that could not be deleted are still in the folder; the next cleanup tries again."]
    return _render(
        "cleanup_failed",
        "error",
        f"{PREFIX} Cleanup Failed - {local:%Y-%m-%d}",
        "The retention cleanup failed.",
        fields,
        notes,
    )


def missed_run_email(
    now: datetime,
    tz: ZoneInfo,
    environment: str,
    last_success: datetime | None,
    max_age_hours: int,
    consecutive_failures: int,
    last_failure: str | None,
    folder: str,
) -> Email:
    local = _local(now, tz)
    if last_success is None:
        subject = f"{PREFIX} No Successful Backup Recorded - {local:%Y-%m-%d}"
        since, age = "never", "n/a"
        intro = "No successful database backup has ever been recorded."
    else:
        since_local = _local(last_success, tz)
        subject = f"{PREFIX} No Successful Backup Since {since_local:%Y-%m-%d %H:%M} - {local:%Y-%m-%d}"
        since = f"{since_local:%Y-%m-%d %H:%M:%S} {tz.key}"
        age = f"{(now - last_success).total_seconds() / 3600:,.1f} hours"
        intro = f"No successful database backup since {since_local:%Y-%m-%d %H:%M} {tz.key}."
    fields = [
        ("Date and time", f"{local:%Y-%m-%d %H:%M:%S} {tz.key}"),
        ("Type", "Backup health check"),
        ("Status", "Missed backup"),
        ("Last successful backup", since),
        ("Age", age),
        ("Allowed age", f"{max_age_hours} hours (BACKUP_MAX_AGE_HOURS)"),
        ("Failures since", str(consecutive_failures)),
        ("Last failure", last_failure or "none recorded"),
        ("Drive path", folder),
        ("Environment", environment),
    ]
    notes = ["If there are no failures either, the scheduler has probably stopped calling the backup function."]
    return _render("missed_run", "error", subject, intro, fields, notes)


def size_warning_email(
    when: datetime,
    tz: ZoneInfo,
    environment: str,
    *,
    backup_id: str,
    file_name: str,
    drive_path: str,
    size: int,
    previous_size: int,
    threshold_percent: int,
) -> Email:
    local = _local(when, tz)
    percent = 100 * size / previous_size if previous_size else 0.0
    fields = [
        ("Date and time", f"{local:%Y-%m-%d %H:%M:%S} {tz.key}"),
        ("Type", "Backup size check"),
        ("Status", "Succeeded, but much smaller than the previous backup"),
        ("File name", file_name),
        ("Size", human_size(size)),
        ("Previous successful backup", human_size(previous_size)),
        ("Change", f"{percent:.1f} % of the previous size (warning below {threshold_percent} %)"),
        ("Drive path", drive_path),
        ("Environment", environment),
        ("Backup ID", backup_id),
    ]
    notes = [
        "A sudden drop usually means data was deleted or a table was emptied: check before the old backups expire."
    ]
    return _render(
        "size_warning",
        "warning",
        f"{PREFIX} Backup Size Warning - {local:%Y-%m-%d}",
        "A database backup succeeded but is much smaller than the previous one.",
        fields,
        notes,
    )
