"""Keeping secrets out of every line we log, store or return."""

from __future__ import annotations

import re

_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<tail>@)", re.I)
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)", re.I)
MASK = "***"
# Credentials recognised by their shape, whoever's they are (a token in an exception text, a key
# pasted into the wrong variable): bearer tokens, JWTs (three base64url parts, header "eyJ"),
# PEM private keys (also JSON-escaped, with literal \n), SendGrid keys (SG.<id>.<secret>), age
# identities (AGE-SECRET-KEY-1…).
_BEARER = re.compile(r"(?P<head>\bbearer\s+)[A-Za-z0-9._~+/=-]+", re.I)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S)
_SENDGRID = re.compile(r"\bSG\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
_AGE_IDENTITY = re.compile(r"AGE-SECRET-KEY-1[0-9A-Za-z]+")
_PGPASSWORD = re.compile(r"(?P<head>\bPGPASSWORD\s*[=:]\s*)\S+")


def redact(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """Mask passwords in URLs, ``password=`` and ``PGPASSWORD=`` pairs, bearer tokens, JWTs, private
    keys, SendGrid keys, and every known secret value. The one redaction function: logs (through
    ``install_log_redaction``), failure reasons, answers and e-mails all go through it."""
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _PRIVATE_KEY.sub(MASK, text)
    text = _JWT.sub(MASK, text)
    text = _BEARER.sub(lambda m: m["head"] + MASK, text)
    text = _SENDGRID.sub(MASK, text)
    text = _AGE_IDENTITY.sub(MASK, text)
    text = _PGPASSWORD.sub(lambda m: m["head"] + MASK, text)
    text = _URL_PASSWORD.sub(lambda m: m["head"] + MASK + m["tail"], text)
    return _KV_PASSWORD.sub(lambda m: m["head"] + MASK, text)


def one_line(text: str, limit: int = 500) -> str:
    """Collapse a message to one line of bounded length for a log row or an answer."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# C0 and C1 control characters (CR, LF, ESC, NUL...), DEL, and lone surrogates: as text in a
# log line they could end it and forge the next, or drive the terminal that shows it.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` with each control character written as an escape (``\\r``, ``\\x1b``): a log line
    stays one line whatever a request put in it. Tabs stay."""
    return _CONTROL.sub(lambda m: m[0].encode("unicode_escape", "backslashreplace").decode("ascii"), text)


_known: set[str] = set()


def remember_secrets(secrets: tuple[str, ...] | list[str]) -> None:
    """Add values every later log record is redacted with (the instance's settings' secrets)."""
    _known.update(s for s in secrets if s and len(s) >= 3)


def known_secrets() -> tuple[str, ...]:
    """The values ``remember_secrets`` was given."""
    return tuple(_known)


def install_log_redaction() -> None:
    """Redact every log record at creation, whatever logger or handler it goes to (a handler
    filter would miss handlers added later, such as a test's capture). Idempotent."""
    import logging

    current = logging.getLogRecordFactory()
    if getattr(current, "dbbackup_redacting", False):
        return

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = current(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken %-format must not lose the record; log it unformatted
            message = str(record.msg)
        record.msg, record.args = printable(redact(message, tuple(_known))), None
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks are formatted later from exc_info; keep the type and a redacted line instead.
            exc = record.exc_info[1]
            record.msg += f" [{type(exc).__name__}: {printable(one_line(redact(str(exc), tuple(_known))))}]"
            record.exc_info = None
        return record

    setattr(factory, "dbbackup_redacting", True)  # noqa: B010 - a marker on a function object
    logging.setLogRecordFactory(factory)
