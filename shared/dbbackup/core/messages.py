"""The alert e-mails' content: subject, text and HTML of each kind, with the spec's exact texts.
Pure functions of what happened; ``core.alerts`` delivers them."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from dbbackup.core.ports import Email

PREFIX = "[Database Backup]"
# The spec's letterhead (section 10.2): the closing lines of every alert; the portal's name is
# ALERT_ORGANIZATION.
DEFAULT_ORGANIZATION = "Aamodha Operations Portal"
CLOSING = "Please investigate and ensure backups are functioning correctly."


def closing_lines(organization: str) -> tuple[str, ...]:
    return (CLOSING, "", "---", f"This is an automated message from {organization}.")


def _local(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment.astimezone(tz)


def _when(moment: datetime, tz: ZoneInfo) -> str:
    return f"{_local(moment, tz):%Y-%m-%d %H:%M:%S} {tz.key}"


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


@dataclass(frozen=True)
class Section:
    """A heading and its content: paragraphs (``lines``) or ``- Label: value`` items (``items``)."""

    heading: str
    lines: tuple[str, ...] = ()
    items: tuple[tuple[str, str], ...] = ()


def _render(
    kind: str,
    severity: str,
    subject: str,
    title: str,
    head: list[tuple[str, str]],
    sections: list[Section],
    organization: str,
) -> Email:
    """The spec's layout for every kind: a title, ``Label: value`` lines, headed sections, the
    closing lines; the HTML part says the same in the same order."""
    text = [title, "", *(f"{label}: {value}" for label, value in head)]
    for section in sections:
        text += ["", f"{section.heading}:", *section.lines, *(f"- {label}: {value}" for label, value in section.items)]
    text += ["", *closing_lines(organization)]
    e = html.escape
    parts = [f"<!DOCTYPE html><html><body><h2>{e(title)}</h2>"]
    parts.append("".join(f"<p><b>{e(label)}:</b> {e(value)}</p>" for label, value in head))
    for section in sections:
        parts.append(f"<h3>{e(section.heading)}:</h3>")
        parts.append("".join(f"<p>{e(line)}</p>" for line in section.lines))
        if section.items:
            items = "".join(f"<li><b>{e(label)}:</b> {e(value)}</li>" for label, value in section.items)
            parts.append(f"<ul>{items}</ul>")
    parts.append(f"<p>{e(CLOSING)}</p><hr><p>{e(closing_lines(organization)[-1])}</p></body></html>")
    return Email(kind, severity, subject, "\n".join(text) + "\n", "".join(parts))


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


def backup_failure_email(
    failure: BackupFailure, tz: ZoneInfo, environment: str, organization: str = DEFAULT_ORGANIZATION
) -> Email:
    """The spec's failure e-mail (section 10.2), line for line; from the second failure in a row
    a line under the details says so."""
    local = _local(failure.when, tz)
    subject = f"{PREFIX} Backup Failed - {local:%Y-%m-%d}"
    if failure.consecutive >= 2:
        subject += f" ({failure.consecutive} failures in a row)"
    not_started = "none (the backup could not start)"
    details = [failure.reason]
    if failure.consecutive >= 2:
        since = (
            f"the last successful backup was on {_local(failure.last_success, tz):%Y-%m-%d %H:%M} {tz.key}"
            if failure.last_success
            else "no backup has succeeded yet"
        )
        details.append(f"This is the {_ordinal(failure.consecutive)} failed backup in a row; {since}.")
    expected = (
        f"about {human_size(failure.expected_size)} (the last successful backup)"
        if failure.expected_size is not None
        else "unknown (no earlier successful backup)"
    )
    return _render(
        "backup_failed",
        "error",
        subject,
        "Database Backup Failure Alert",
        [("Date & Time", _when(failure.when, tz)), ("Backup Type", failure.backup_type), ("Status", "Failed")],
        [
            Section("Failure Details", tuple(details)),
            Section(
                "File Information",
                items=(
                    ("File Name", failure.file_name or not_started),
                    ("Expected Size", expected),
                    ("Google Drive Path", failure.drive_path or not_started),
                ),
            ),
            Section(
                "System Information",
                items=(("Environment", environment), ("Backup ID", failure.backup_id or not_started)),
            ),
        ],
        organization,
    )


def cleanup_failure_email(
    when: datetime,
    tz: ZoneInfo,
    environment: str,
    folder: str,
    failures: list[tuple[str, str]],
    summary: str,
    organization: str = DEFAULT_ORGANIZATION,
) -> Email:
    local = _local(when, tz)
    details = [f"{name}: {reason}" for name, reason in failures]
    details.append("Files that could not be deleted are still in the folder; the next cleanup tries again.")
    return _render(
        "cleanup_failed",
        "error",
        f"{PREFIX} Cleanup Failed - {local:%Y-%m-%d}",
        "Database Backup Cleanup Failure Alert",
        [("Date & Time", _when(when, tz)), ("Task", "retention cleanup"), ("Status", "Failed")],
        [
            Section("Failure Details", tuple(details)),
            Section(
                "File Information",
                items=(
                    ("Files Not Deleted", ", ".join(name for name, _ in failures) or "none"),
                    ("Google Drive Path", folder),
                ),
            ),
            Section("System Information", items=(("Environment", environment), ("Summary", summary))),
        ],
        organization,
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
    organization: str = DEFAULT_ORGANIZATION,
) -> Email:
    local = _local(now, tz)
    if last_success is None:
        subject = f"{PREFIX} No Successful Backup Recorded - {local:%Y-%m-%d}"
        since, age = "never", "n/a"
        intro = "No successful database backup has ever been recorded."
    else:
        since_local = _local(last_success, tz)
        subject = f"{PREFIX} No Successful Backup Since {since_local:%Y-%m-%d %H:%M} - {local:%Y-%m-%d}"
        since = _when(last_success, tz)
        age = f"{(now - last_success).total_seconds() / 3600:,.1f} hours"
        intro = f"No successful database backup since {since_local:%Y-%m-%d %H:%M} {tz.key}."
    note = "If there are no failures either, the scheduler has probably stopped calling the backup function."
    return _render(
        "missed_run",
        "error",
        subject,
        "Database Backup Missed Run Alert",
        [("Date & Time", _when(now, tz)), ("Task", "backup health check"), ("Status", "Missed backup")],
        [
            Section("Failure Details", (intro, note)),
            Section(
                "Backup History",
                items=(
                    ("Last Successful Backup", since),
                    ("Age", age),
                    ("Allowed Age", f"{max_age_hours} hours (BACKUP_MAX_AGE_HOURS)"),
                    ("Failures Since", str(consecutive_failures)),
                    ("Last Failure", last_failure or "none recorded"),
                ),
            ),
            Section("File Information", items=(("Google Drive Path", folder),)),
            Section("System Information", items=(("Environment", environment),)),
        ],
        organization,
    )


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
    organization: str = DEFAULT_ORGANIZATION,
) -> Email:
    local = _local(when, tz)
    percent = 100 * size / previous_size if previous_size else 0.0
    return _render(
        "size_warning",
        "warning",
        f"{PREFIX} Backup Size Warning - {local:%Y-%m-%d}",
        "Database Backup Size Warning",
        [
            ("Date & Time", _when(when, tz)),
            ("Task", "backup size check"),
            ("Status", "Succeeded, but much smaller than the previous backup"),
        ],
        [
            Section(
                "Warning Details",
                (
                    f"{percent:.1f} % of the previous size (warning below {threshold_percent} %).",
                    "A sudden drop usually means data was deleted or a table was emptied:"
                    " check before the old backups expire.",
                ),
            ),
            Section(
                "File Information",
                items=(
                    ("File Name", file_name),
                    ("Size", human_size(size)),
                    ("Previous Successful Backup", human_size(previous_size)),
                    ("Google Drive Path", drive_path),
                ),
            ),
            Section("System Information", items=(("Environment", environment), ("Backup ID", backup_id))),
        ],
        organization,
    )


def shrink_warning_email(
    when: datetime,
    tz: ZoneInfo,
    environment: str,
    *,
    backup_id: str,
    file_name: str,
    previous_file_name: str,
    lines: list[str],
    threshold_percent: int,
    min_rows: int,
    organization: str = DEFAULT_ORGANIZATION,
) -> Email:
    """One e-mail per backup, every table concerned listed."""
    local = _local(when, tz)
    count = f"{len(lines)} table{'s' if len(lines) != 1 else ''}"
    return _render(
        "shrink_warning",
        "warning",
        f"{PREFIX} Table Shrink Warning ({count}) - {local:%Y-%m-%d}",
        "Database Backup Table Shrink Warning",
        [
            ("Date & Time", _when(when, tz)),
            ("Task", "backup contents check"),
            ("Status", f"Succeeded, but {count} shrank since the previous backup"),
        ],
        [
            Section("Tables", tuple(lines)),
            Section(
                "Warning Details",
                (
                    "A table that disappeared, was emptied, or lost more than"
                    f" {threshold_percent} % of its rows (having had at least {min_rows:,}).",
                    "If this was not intended, restore the previous backup before it expires.",
                ),
            ),
            Section(
                "File Information",
                items=(("File Name", file_name), ("Previous Successful Backup", previous_file_name)),
            ),
            Section("System Information", items=(("Environment", environment), ("Backup ID", backup_id))),
        ],
        organization,
    )


def drill_failure_email(
    when: datetime,
    tz: ZoneInfo,
    environment: str,
    *,
    backup_id: str,
    file_name: str,
    target: str,
    detail: str,
    organization: str = DEFAULT_ORGANIZATION,
    task: str = "weekly restore drill (verify_backup)",
) -> Email:
    """The restore drill (weekly, or a manager's "Verify now") found a backup that does not
    restore as recorded."""
    local = _local(when, tz)
    return _render(
        "drill_failed",
        "error",
        f"{PREFIX} Restore Drill Failed - {local:%Y-%m-%d}",
        "Database Backup Restore Drill Failed",
        [
            ("Date & Time", _when(when, tz)),
            ("Task", task),
            ("Status", "Failed: the backup did not restore as recorded"),
        ],
        [
            Section("Failure Details", (detail,)),
            Section(
                "What To Do",
                (
                    "Run `dbbackup verify <id> --restore-test` on this backup, and take a new backup now:"
                    " until one passes, the backups may not be usable.",
                ),
            ),
            Section("File Information", items=(("File Name", file_name), ("Restored Into", target))),
            Section("System Information", items=(("Environment", environment), ("Backup ID", backup_id))),
        ],
        organization,
    )


def restore_failure_email(
    when: datetime,
    tz: ZoneInfo,
    environment: str,
    *,
    restore_id: str,
    backup_id: str,
    file_name: str,
    target: str,
    requested_by: str,
    detail: str,
    organization: str = DEFAULT_ORGANIZATION,
) -> Email:
    """A restore a manager started from the console failed (the target is named, never its URL)."""
    local = _local(when, tz)
    return _render(
        "restore_failed",
        "error",
        f"{PREFIX} Restore Failed - {local:%Y-%m-%d}",
        "Database Backup Restore Failed",
        [
            ("Date & Time", _when(when, tz)),
            ("Task", "restore from the backup console"),
            ("Status", f"Failed: nothing was restored into {target}"),
        ],
        [
            Section("Failure Details", (detail,)),
            Section(
                "What To Do",
                (
                    "Read the reason above; the target was left as it was (the restore runs in one"
                    " transaction). Fix the cause and start the restore again, or restore with"
                    " `dbbackup restore <id> --target URL`.",
                ),
            ),
            Section(
                "Restore Information",
                items=(("File Name", file_name), ("Restore Target", target), ("Requested By", requested_by)),
            ),
            Section(
                "System Information",
                items=(("Environment", environment), ("Backup ID", backup_id), ("Restore ID", restore_id)),
            ),
        ],
        organization,
    )
