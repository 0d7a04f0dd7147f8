"""Settings of the HTTP functions' security (docs/security.md), parsed without importing any
Google or JWT library so that ``Settings.from_env`` can name a bad variable at start.

Nothing here is required for the CLI: what a request needs is checked when the request needs it
(a missing verifier setting fails that request closed, never open)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from dbbackup.errors import ConfigError

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
AUTH_MODES = ("enforced", "disabled")
DEFAULT_MANUAL_INTERVAL_SECONDS = 300
DEFAULT_MAX_BODY_BYTES = 64 * 1024
MAX_BODY_LIMIT = 1024 * 1024  # the most MAX_BODY_BYTES may allow; what an adapter ever reads
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class AuthConfig:
    mode: str = "enforced"
    scheduler_audience: str | None = None  # None: the URL the request came to
    scheduler_service_account: str | None = None
    google_certs_url: str = GOOGLE_CERTS_URL
    supabase_jwt_secret: str | None = field(default=None, repr=False)
    supabase_jwks_url: str | None = None
    supabase_issuer: str | None = None
    allowed_origins: tuple[str, ...] = ()
    manual_interval_seconds: int = DEFAULT_MANUAL_INTERVAL_SECONDS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @property
    def enforced(self) -> bool:
        return self.mode != "disabled"

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.supabase_jwt_secret,) if self.supabase_jwt_secret else ()


def trusted_url(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip() or None
    if value is None:
        return None
    parts = urlsplit(value)
    # Keys fetched over plain http could be swapped by anyone on the path; only a local fake may.
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        raise ConfigError(f"{name}={value!r}: expected an https:// URL (http:// only for 127.0.0.1/localhost)")
    return value


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = env.get(name, "").strip() or str(default)
    if not text.isdigit() or not low <= int(text) <= high:
        raise ConfigError(f"{name}={text!r}: expected a whole number from {low} to {high}")
    return int(text)


def auth_config_from_env(env: Mapping[str, str]) -> AuthConfig:
    mode = env.get("AUTH_MODE", "").strip().lower() or "enforced"
    if mode not in AUTH_MODES:
        raise ConfigError(f"AUTH_MODE={mode!r}: expected one of {', '.join(AUTH_MODES)}")
    if mode == "disabled" and env.get("K_SERVICE"):
        # K_SERVICE is set by Cloud Run / Cloud Functions gen2: an open endpoint there is an exfiltration hole.
        raise ConfigError("AUTH_MODE=disabled is refused on Cloud Run/Functions (K_SERVICE is set)")
    account = env.get("SCHEDULER_SERVICE_ACCOUNT", "").strip() or None
    if account is not None and not _EMAIL.match(account):
        raise ConfigError(f"SCHEDULER_SERVICE_ACCOUNT={account!r} is not a service account e-mail")
    audience = env.get("SCHEDULER_AUDIENCE", "").strip() or None
    if account is not None and audience is None and env.get("K_SERVICE"):
        # Deployed, the audience must not be derived from the request's Host header: a token the
        # scheduler account got for another service could be replayed with a forged Host.
        raise ConfigError("SCHEDULER_AUDIENCE must be set (to this function's URL) when SCHEDULER_SERVICE_ACCOUNT is")
    origins = tuple(o.strip().rstrip("/") for o in env.get("ALLOWED_ORIGINS", "").split(",") if o.strip())
    for origin in origins:
        if not _ORIGIN.match(origin):
            raise ConfigError(f"ALLOWED_ORIGINS entry {origin!r}: expected scheme://host[:port] (no wildcard, no path)")
    return AuthConfig(
        mode=mode,
        scheduler_audience=audience,
        scheduler_service_account=account,
        google_certs_url=trusted_url(env, "GOOGLE_CERTS_URL") or GOOGLE_CERTS_URL,
        supabase_jwt_secret=env.get("SUPABASE_JWT_SECRET", "").strip() or None,
        supabase_jwks_url=trusted_url(env, "SUPABASE_JWKS_URL"),
        supabase_issuer=env.get("SUPABASE_JWT_ISSUER", "").strip().rstrip("/") or None,
        allowed_origins=origins,
        manual_interval_seconds=_int(
            env, "MANUAL_BACKUP_INTERVAL_SECONDS", DEFAULT_MANUAL_INTERVAL_SECONDS, 0, 7 * 24 * 3600
        ),
        max_body_bytes=_int(env, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, 2, MAX_BODY_LIMIT),
    )
