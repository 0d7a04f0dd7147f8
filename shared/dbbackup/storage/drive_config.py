"""GOOGLE_DRIVE_* settings, parsed and validated without importing any Google library.

Kept apart from ``drive.py`` so that ``Settings.from_env`` can reject a bad deployment with a
message naming the variable, while local runs never import google-api-python-client.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dbbackup.errors import ConfigError

GOOGLE_ROOT_URL = "https://www.googleapis.com/"
UPLOAD_GRANULE = 256 * 1024  # Drive: every chunk but the last is a multiple of 256 KiB
DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024
MAX_CHUNK_SIZE = 1024 * 1024 * 1024
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
SERVICE_ACCOUNT = "service_account"
AUTHORIZED_USER = "authorized_user"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class DriveConfig:
    """Everything the Drive backend needs. ``credentials_info`` holds private keys or refresh
    tokens, so it never appears in repr."""

    credentials_info: dict[str, str] = field(repr=False)
    subject: str | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    root_url: str = GOOGLE_ROOT_URL
    max_attempts: int = 3
    retry_delay_seconds: float = 1.0
    timeout_seconds: float = 120.0

    @property
    def kind(self) -> str:
        return self.credentials_info["type"]

    @property
    def principal(self) -> str:
        """Who acts on Drive, for messages: the service account e-mail (and the user it
        impersonates), or 'the OAuth user'."""
        if self.kind == SERVICE_ACCOUNT:
            email = self.credentials_info.get("client_email", "?")
            return f"service account {email}" + (f" acting as {self.subject}" if self.subject else "")
        return "the OAuth user of GOOGLE_DRIVE_CREDENTIALS"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never be printed. A PEM key also appears JSON-escaped ("\\n") in
        error bodies that echo a request, so both spellings are listed."""
        info = self.credentials_info
        values: list[str] = []
        for key in ("private_key", "client_secret", "refresh_token"):
            value = info.get(key)
            if value:
                values += [value, json.dumps(value)[1:-1]]
                # Redaction matches whole strings; also mask each long line of a PEM key.
                values += [line for line in value.splitlines() if len(line) >= 16 and "-----" not in line]
        return tuple(values)


def _check_url(variable: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"{variable}={url!r}: expected an https:// URL")
    # A bearer token sent over plain http can be read by anyone on the path: only a server on
    # this machine (the test fake, a person's local fake) may be reached without TLS.
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ConfigError(f"{variable}={url!r}: plain http is only allowed for 127.0.0.1/localhost")
    return url


def _int(env: Mapping[str, str], variable: str, default: int, low: int, high: int) -> int:
    text = env.get(variable, "").strip()
    if not text:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise ConfigError(f"{variable}={text!r}: expected a whole number from {low} to {high}")
    return int(text)


def _float(env: Mapping[str, str], variable: str, default: float, low: float, high: float) -> float:
    text = env.get(variable, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # also false for nan
        raise ConfigError(f"{variable}={text!r}: expected a number of seconds from {low:g} to {high:g}")
    return value


def load_credentials(text: str) -> dict[str, str]:
    """GOOGLE_DRIVE_CREDENTIALS is the JSON itself or a path to it. Messages never quote the
    content: it is a private key or a refresh token."""
    text = text.strip().lstrip("\ufeff").strip()  # a JSON file saved with a UTF-8 BOM is still JSON
    if not text:
        raise ConfigError(
            "GOOGLE_DRIVE_CREDENTIALS is not set (a service account key or an OAuth authorized-user JSON,"
            " as JSON text or a file path)"
        )
    if not text.startswith("{"):
        path = Path(text).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            # Never quote the value: what is not JSON may still be credentials pasted wrongly.
            raise ConfigError(
                "GOOGLE_DRIVE_CREDENTIALS is neither JSON text nor the path of a readable file"
                f" ({exc.strerror or type(exc).__name__})"
            ) from None
    try:
        info = json.loads(text)
    except ValueError:
        raise ConfigError("GOOGLE_DRIVE_CREDENTIALS is not valid JSON") from None
    if not isinstance(info, dict):
        raise ConfigError("GOOGLE_DRIVE_CREDENTIALS is not a JSON object")
    kind = info.get("type")
    required = {
        SERVICE_ACCOUNT: ("client_email", "private_key", "token_uri"),
        AUTHORIZED_USER: ("client_id", "client_secret", "refresh_token"),
    }.get(kind if isinstance(kind, str) else "")
    if required is None:
        raise ConfigError(
            f"GOOGLE_DRIVE_CREDENTIALS has type {kind!r}: expected 'service_account' (a service account key)"
            " or 'authorized_user' (OAuth client id/secret + refresh token)"
        )
    missing = [key for key in required if not isinstance(info.get(key), str) or not info[key]]
    if missing:
        raise ConfigError(f"GOOGLE_DRIVE_CREDENTIALS ({kind}) lacks {', '.join(missing)}")
    if "token_uri" in info:
        _check_url("GOOGLE_DRIVE_CREDENTIALS token_uri", str(info["token_uri"]))
    return info


def drive_config_from_env(env: Mapping[str, str]) -> DriveConfig:
    info = load_credentials(env.get("GOOGLE_DRIVE_CREDENTIALS", ""))
    subject = env.get("GOOGLE_DRIVE_SUBJECT", "").strip() or None
    if subject is not None:
        if info["type"] != SERVICE_ACCOUNT:
            raise ConfigError("GOOGLE_DRIVE_SUBJECT (domain-wide delegation) needs a service account key")
        if not _EMAIL.match(subject):
            raise ConfigError(f"GOOGLE_DRIVE_SUBJECT={subject!r}: expected the e-mail of the user to act as")
    chunk = _int(env, "GOOGLE_DRIVE_CHUNK_SIZE", DEFAULT_CHUNK_SIZE, UPLOAD_GRANULE, MAX_CHUNK_SIZE)
    if chunk % UPLOAD_GRANULE:
        raise ConfigError(f"GOOGLE_DRIVE_CHUNK_SIZE={chunk}: must be a multiple of 262144 (256 KiB)")
    root = env.get("GOOGLE_DRIVE_ROOT_URL", "").strip() or GOOGLE_ROOT_URL
    root = _check_url("GOOGLE_DRIVE_ROOT_URL", root.rstrip("/") + "/")
    return DriveConfig(
        credentials_info=info,
        subject=subject,
        chunk_size=chunk,
        root_url=root,
        max_attempts=_int(env, "GOOGLE_DRIVE_MAX_ATTEMPTS", 3, 1, 10),
        retry_delay_seconds=_float(env, "GOOGLE_DRIVE_RETRY_DELAY_SECONDS", 1.0, 0.0, 60.0),
        timeout_seconds=_float(env, "GOOGLE_DRIVE_TIMEOUT_SECONDS", 120.0, 0.1, 3600.0),
    )
