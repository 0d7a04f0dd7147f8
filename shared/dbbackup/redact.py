"""Keeping secrets out of every line we log, store or return."""

from __future__ import annotations

import re

_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<tail>@)", re.I)
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)", re.I)
MASK = "***"


def redact(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """Mask passwords in URLs and ``password=`` pairs, and every known secret value."""
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URL_PASSWORD.sub(lambda m: m["head"] + MASK + m["tail"], text)
    return _KV_PASSWORD.sub(lambda m: m["head"] + MASK, text)


def one_line(text: str, limit: int = 500) -> str:
    """Collapse a message to one line of bounded length for a log row or an answer."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
