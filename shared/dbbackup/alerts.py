"""Alert e-mails: their content, the ``Notifier`` interface, and the delivery policy.

The core only builds ``Email`` values and hands them to ``Alerter.deliver``, which never raises:
an alert that cannot be sent is logged, and whatever failed keeps its own outcome. The SendGrid
client lives in ``alerts_sendgrid`` and is imported only when a key is configured, so nothing
else here knows SendGrid exists.

Every subject, text and HTML part is redacted with the settings' secrets before it leaves (the
failure reasons are already redacted where they are made; this is the second lock on the door).
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from .redact import one_line, redact

if TYPE_CHECKING:
    from .settings import Settings

log = logging.getLogger("dbbackup.alerts")

PREFIX = "[Database Backup]"
CLOSING = (
    "Please check the backup system and run a manual backup once the problem is fixed.",
    "This is an automated message from the Database Backup System. Please do not reply.",
)
# Deliberately simple: one @, no spaces, a dot in the domain. SendGrid does the real validation;
# this only catches the typo in invoice_configurations before it silently swallows alerts.
_EMAIL = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\".]{2,}$")


def is_email(value: str) -> bool:
    return bool(_EMAIL.match(value.strip()))


@dataclass(frozen=True)
class Email:
    kind: str  # backup_failed | cleanup_failed | missed_run | size_warning
    severity: str  # error | warning
    subject: str
    text: str
    html: str


class NotifyError(Exception):
    """Sending failed. ``retryable``: a later attempt may succeed (rate limit, outage)."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Notifier(Protocol):
    name: str

    def send(self, to: str, email: Email) -> None:
        """Deliver ``email`` to ``to`` or raise NotifyError."""
        ...


class LogNotifier:
    """Without SENDGRID_API_KEY an alert is written to the log, in full, and nothing else."""

    name = "log"

    def send(self, to: str, email: Email) -> None:
        level = logging.ERROR if email.severity == "error" else logging.WARNING
        log.log(
            level, "ALERT (log only, no SENDGRID_API_KEY) to %s: %s | %s", to, email.subject, one_line(email.text, 4000)
        )


@dataclass(frozen=True)
class Delivery:
    sent: bool
    via: str
    to: str | None
    attempts: int
    error: str | None = None


def make_notifier(settings: Settings) -> Notifier:
    if not settings.sendgrid_api_key:
        return LogNotifier()
    from .alerts_sendgrid import SendGridNotifier  # the only place the SendGrid package is imported

    assert settings.alert_from_email  # Settings refuses a key without a sender
    return SendGridNotifier(settings.sendgrid_api_key, settings.alert_from_email, host=settings.sendgrid_host)


class Alerter:
    """Picks the recipient, retries briefly, logs what it could not do; never raises."""

    def __init__(
        self,
        settings: Settings,
        notifier: Notifier | None = None,
        sleep: Callable[[float], None] = time.sleep,
        delays: Sequence[float] = (1.0, 2.0),
    ) -> None:
        self.settings = settings
        self._notifier = notifier
        self.sleep = sleep
        self.delays = tuple(delays)

    @property
    def notifier(self) -> Notifier:
        if self._notifier is None:
            self._notifier = make_notifier(self.settings)
        return self._notifier

    def recipient(self, configured: str | None) -> str | None:
        """``backup_notification_email`` when it is an address, else ALERT_FALLBACK_EMAIL."""
        value = (configured or "").strip()
        if value and is_email(value):
            return value
        fallback = self.settings.alert_fallback_email
        if value:
            log.error(
                "invoice_configurations.backup_notification_email=%r is not a valid e-mail address; %s",
                value,
                f"sending the alert to ALERT_FALLBACK_EMAIL ({fallback})"
                if fallback
                else "no ALERT_FALLBACK_EMAIL set",
            )
        elif not fallback:
            log.error(
                "no alert recipient: backup_notification_email is not set (or unreadable) and no ALERT_FALLBACK_EMAIL"
            )
        return fallback

    def deliver(self, email: Email, configured_recipient: str | None) -> Delivery:
        try:
            return self._deliver(email, configured_recipient)
        except Exception as exc:  # an alert must never become the failure
            error = one_line(redact(f"{type(exc).__name__}: {exc}", self.settings.secrets))
            log.error("alert %r could not be sent: %s", email.subject, error)
            return Delivery(False, "error", None, 0, error)

    def _deliver(self, email: Email, configured_recipient: str | None) -> Delivery:
        secrets = self.settings.secrets
        email = Email(
            email.kind,
            email.severity,
            redact(email.subject, secrets),
            redact(email.text, secrets),
            redact(email.html, secrets),
        )
        to = self.recipient(configured_recipient)
        notifier = self.notifier
        if to is None:
            LogNotifier().send("(nobody)", email)
            return Delivery(False, "log", None, 0, "no valid recipient")
        attempts = 0
        while True:
            attempts += 1
            try:
                notifier.send(to, email)
            except NotifyError as exc:
                error = one_line(redact(str(exc), secrets))
                if exc.retryable and attempts <= len(self.delays):
                    log.warning("alert to %s failed (attempt %d): %s; retrying", to, attempts, error)
                    self.sleep(self.delays[attempts - 1])
                    continue
                log.error("alert %r to %s NOT sent after %d attempt(s): %s", email.subject, to, attempts, error)
                LogNotifier().send(to, email)  # at least the content reaches the log
                return Delivery(False, notifier.name, to, attempts, error)
            if notifier.name != "log":
                log.info("alert %r sent to %s via %s", email.subject, to, notifier.name)
            return Delivery(notifier.name != "log", notifier.name, to, attempts)


def configured_recipient(conn: Any) -> str | None:
    """``backup_notification_email`` read now (a manager may have changed it since the run began);
    None when it cannot be read."""
    try:
        row = conn.execute(
            "SELECT config_value FROM public.invoice_configurations WHERE config_key = 'backup_notification_email'"
        ).fetchone()
    except Exception as exc:
        log.error("could not read backup_notification_email: %s", one_line(str(exc)))
        return None
    return row[0] if row else None


# --- content ---------------------------------------------------------------------------------


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
