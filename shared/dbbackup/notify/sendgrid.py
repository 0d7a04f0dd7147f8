"""The SendGrid notifier: the only module that imports the ``sendgrid`` package.

``POST {host}/v3/mail/send`` with a text and an HTML part; 202 is success. SendGrid's errors
(``python_http_client.exceptions.HTTPError`` subclasses, ``urllib.error.URLError`` for a refused
connection, timeouts) become ``NotifyError`` here, so nothing else imports SendGrid's exceptions.
"""

from __future__ import annotations

import json
import logging
import urllib.error

import python_http_client.exceptions as sg_errors
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Mail

from dbbackup.core.ports import Email
from dbbackup.errors import NotifyError
from dbbackup.redact import one_line

DEFAULT_HOST = "https://api.sendgrid.com"
TIMEOUT_SECONDS = 10  # an alert must not keep a dying function alive for long
# Worth another try: rate limited or SendGrid's own trouble. 400/401/403/413 will fail again.
RETRYABLE = {429, 500, 502, 503, 504}

# python_http_client logs every request's headers at DEBUG, the Authorization bearer key included:
# a DEBUG root logger would put SENDGRID_API_KEY in the logs. Its INFO and above carry no headers.
logging.getLogger("python_http_client.client").setLevel(logging.INFO)


class SendGridNotifier:
    name = "sendgrid"

    def __init__(self, api_key: str, from_email: str, host: str | None = None) -> None:
        self.from_email = from_email
        self.client = SendGridAPIClient(api_key=api_key, host=host or DEFAULT_HOST)
        # There is no constructor argument for it; the attribute reaches every request.
        self.client.client.timeout = TIMEOUT_SECONDS

    def send(self, to: str, email: Email) -> None:
        message = Mail(
            from_email=self.from_email,
            to_emails=to,
            subject=email.subject,
            plain_text_content=email.text,
            html_content=email.html,
        )
        try:
            response = self.client.send(message)
        except sg_errors.HTTPError as exc:
            raise NotifyError(
                f"SendGrid answered {exc.status_code}: {_messages(exc)}", exc.status_code in RETRYABLE
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NotifyError(f"SendGrid unreachable: {one_line(str(reason))}", True) from None
        if response.status_code != 202:
            raise NotifyError(
                f"SendGrid answered {response.status_code} (expected 202)", response.status_code in RETRYABLE
            )


def _messages(exc: sg_errors.HTTPError) -> str:
    """The ``errors[].message`` texts; a 413 can come from a proxy as HTML, not JSON."""
    try:
        data = json.loads(exc.body or b"{}")
        texts = [str(e.get("message")) for e in data.get("errors", []) if isinstance(e, dict)]
    except (ValueError, AttributeError, TypeError):
        texts = []
    return one_line("; ".join(texts) or getattr(exc, "reason", "") or "no details", 300)
