"""The webhook notifier (ALERT_WEBHOOK_URL): every alert as ``POST <url>`` with the JSON body
``{"text": "<subject>\\n\\n<text>"}``, the message format Slack incoming webhooks and Google Chat
space webhooks accept (and a Teams workflow started by "When a Teams webhook request is
received"). Any 2xx is success.

The URL carries the channel's token in its path, so no message here contains it: requests'
exceptions (whose text holds the URL) become ``NotifyError`` naming only the exception type.
"""

from __future__ import annotations

import logging

import requests

from dbbackup.core.ports import Email
from dbbackup.errors import NotifyError

TIMEOUT_SECONDS = 10  # an alert must not keep a dying function alive for long
# Worth another try: rate limited or the service's own trouble. Other 4xx will fail again.
RETRYABLE = {408, 429, 500, 502, 503, 504}

# urllib3 logs every request line at DEBUG, the URL's path (the webhook's token) included: a
# DEBUG root logger would put it in the logs. Its INFO and above carry no URL path.
logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)


def payload(email: Email) -> dict[str, str]:
    return {"text": f"{email.subject}\n\n{email.text}"}


class WebhookNotifier:
    name = "webhook"

    def __init__(self, url: str, session: requests.Session | None = None) -> None:
        self.url = url
        self.session = session or requests.Session()

    def send(self, to: str, email: Email) -> None:
        try:
            # No redirects: a 3xx to another host would carry the alert where nobody configured it.
            response = self.session.post(self.url, json=payload(email), timeout=TIMEOUT_SECONDS, allow_redirects=False)
        except requests.Timeout:
            raise NotifyError(f"webhook did not answer within {TIMEOUT_SECONDS} s", True) from None
        except requests.RequestException as exc:
            raise NotifyError(f"webhook unreachable ({type(exc).__name__})", True) from None
        if not 200 <= response.status_code < 300:
            raise NotifyError(
                f"webhook answered {response.status_code} {response.reason or ''}".rstrip(),
                response.status_code in RETRYABLE,
            )
