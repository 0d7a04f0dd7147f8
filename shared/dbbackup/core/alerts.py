"""The alert delivery policy: who gets an alert, how often we try, and that trying never fails.

The jobs build ``Email`` values (``core.messages``) and hand them to ``Alerter.deliver``, which
never raises: an alert that cannot be sent is logged, and whatever failed keeps its own outcome.
Which service sends it is a ``Notifier`` chosen in ``wiring``.

Every subject, text and HTML part is redacted with the settings' secrets before it leaves (the
failure reasons are already redacted where they are made; this is the second lock on the door).
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dbbackup.core.ports import Email, Notifier
from dbbackup.errors import NotifyError
from dbbackup.redact import one_line, redact

log = logging.getLogger("dbbackup.alerts")

# Deliberately simple: one @, no spaces, a dot in the domain. SendGrid does the real validation;
# this only catches the typo in invoice_configurations before it silently swallows alerts.
_EMAIL = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\".]{2,}$")


WEBHOOK = "the webhook"  # what the log names as the recipient of ALERT_WEBHOOK_URL (never the URL: it holds a token)


def is_email(value: str) -> bool:
    # Control characters (NUL among them: PostgreSQL text cannot hold it) and lone surrogates
    # are never part of an address.
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in value.strip()):
        return False
    return bool(_EMAIL.match(value.strip()))


def log_alert(to: str, email: Email, why: str = "no SENDGRID_API_KEY") -> None:
    """An alert's full content in the log: where it goes when there is no notifier, no recipient,
    or delivery failed; ``why`` says which (a rejected key is not a missing one)."""
    level = logging.ERROR if email.severity == "error" else logging.WARNING
    log.log(level, "ALERT (log only, %s) to %s: %s | %s", why, to, email.subject, one_line(email.text, 4000))


@dataclass(frozen=True)
class Delivery:
    sent: bool
    via: str
    to: str | None
    attempts: int
    error: str | None = None


class Alerter:
    """Picks the recipient, retries briefly, logs what it could not do; never raises.

    ``webhook`` is a second channel (ALERT_WEBHOOK_URL) that gets every alert the e-mail gets,
    with the same redaction and retries, whether or not the e-mail could be sent; it has no
    recipient of its own (its URL says where)."""

    def __init__(
        self,
        notifier: Notifier,
        *,
        fallback: str | None = None,
        secrets: tuple[str, ...] = (),
        sleep: Callable[[float], None] = time.sleep,
        delays: Sequence[float] = (1.0, 2.0),
        webhook: Notifier | None = None,
    ) -> None:
        self.notifier = notifier
        self.fallback = fallback
        self.secrets = secrets
        self.sleep = sleep
        self.delays = tuple(delays)
        self.webhook = webhook

    def recipient(self, configured: str | None) -> str | None:
        """``backup_notification_email`` when it is an address, else ALERT_FALLBACK_EMAIL."""
        value = (configured or "").strip()
        if value and is_email(value):
            return value
        fallback = self.fallback
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
        """The e-mail's delivery (the webhook's, when configured, is logged)."""
        email = self._redacted(email)
        delivery = self._guarded(lambda: self._deliver(email, configured_recipient), email)
        if self.webhook is not None:
            webhook = self.webhook
            self._guarded(lambda: self._attempts(webhook, WEBHOOK, email), email)
        return delivery

    def _redacted(self, email: Email) -> Email:
        secrets = self.secrets
        return Email(
            email.kind,
            email.severity,
            redact(email.subject, secrets),
            redact(email.text, secrets),
            redact(email.html, secrets),
        )

    def _guarded(self, send: Callable[[], Delivery], email: Email) -> Delivery:
        try:
            return send()
        except Exception as exc:  # an alert must never become the failure
            error = one_line(redact(f"{type(exc).__name__}: {exc}", self.secrets))
            log.error("alert %r could not be sent: %s", email.subject, error)
            return Delivery(False, "error", None, 0, error)

    def _deliver(self, email: Email, configured_recipient: str | None) -> Delivery:
        to = self.recipient(configured_recipient)
        if to is None:
            log_alert("(nobody)", email, "no valid recipient")
            return Delivery(False, "log", None, 0, "no valid recipient")
        return self._attempts(self.notifier, to, email)

    def _attempts(self, notifier: Notifier, to: str, email: Email) -> Delivery:
        secrets = self.secrets
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
                log_alert(to, email, f"{notifier.name} did not deliver it")  # at least the content is logged
                return Delivery(False, notifier.name, to, attempts, error)
            if notifier.name != "log":
                log.info("alert %r sent to %s via %s", email.subject, to, notifier.name)
            return Delivery(notifier.name != "log", notifier.name, to, attempts)
