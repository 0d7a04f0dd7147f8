"""The notifier without a mail service: an alert is written to the log, in full, and nothing else."""

from __future__ import annotations

from dbbackup.core.alerts import log_alert
from dbbackup.core.ports import Email


class LogNotifier:
    name = "log"

    def send(self, to: str, email: Email) -> None:
        log_alert(to, email)
