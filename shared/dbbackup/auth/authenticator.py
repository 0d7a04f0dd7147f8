"""Who is calling, and may they: the framework-free core of the functions' security.

Two kinds of bearer token reach us (docs/security.md): Google-signed OIDC ID tokens from
Cloud Scheduler, and Supabase access tokens from the app's frontend. The verifiers that check
signatures live in adapters (``auth.google``, ``auth.supabase``) behind the small ``Verifier``
protocol; this module only routes a token to one, and turns the outcome into a ``Caller`` or an
``AuthError`` carrying the HTTP status (401/403) and the reason we log (never the token).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from dbbackup.auth.config import AuthConfig
from dbbackup.errors import AuthError, ConfigError, InvalidToken

GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
MANAGER_ROLES = ("manager", "admin")
SCHEDULER, USER, DEV = "scheduler", "user", "auth-disabled"


class Verifier(Protocol):
    def verify(self, token: str) -> Mapping[str, Any]:
        """The token's claims once its signature, expiry, audience and issuer are checked;
        InvalidToken otherwise (with a one-line reason, no token in it)."""
        ...


class RoleDirectory(Protocol):
    def role_of(self, user_id: str) -> str | None:
        """The user's ``user_profiles.role`` read with the service connection, None if no row."""
        ...


@dataclass(frozen=True)
class Caller:
    kind: str  # scheduler | user | auth-disabled
    subject: str  # the token's sub (users) or e-mail (scheduler); triggered_by in backup_logs
    role: str | None = None

    @property
    def label(self) -> str:
        return f"{self.kind} {self.subject}" + (f" ({self.role})" if self.role else "")


def bearer_token(headers: Mapping[str, str]) -> str:
    value = headers.get("authorization", "")
    scheme, _, token = value.strip().partition(" ")
    if not value:
        raise AuthError(401, "no Authorization header")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(401, "the Authorization header is not a Bearer token")
    return token.strip()


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload without checking anything: used only to pick a verifier, never to trust."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > 16_384:
        raise AuthError(401, "the token is not a JWT")
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: JSON nested thousands deep
        raise AuthError(401, "the token is not a JWT") from None
    if not isinstance(payload, dict):
        raise AuthError(401, "the token is not a JWT")
    return payload


@dataclass
class Authenticator:
    """Turns request headers into a Caller. Verifiers are built lazily by ``factory`` so a
    deployment that only takes scheduler calls never needs Supabase settings, and vice versa."""

    config: AuthConfig
    scheduler: Verifier | None
    users: Verifier | None
    roles: RoleDirectory

    def authenticate(self, headers: Mapping[str, str]) -> Caller:
        if not self.config.enforced:
            return Caller(DEV, DEV)
        token = bearer_token(headers)
        claims = unverified_claims(token)
        if claims.get("iss") in GOOGLE_ISSUERS:
            return self._scheduler(token)
        return self._user(token)

    def _scheduler(self, token: str) -> Caller:
        if self.scheduler is None or not self.config.scheduler_service_account:
            raise ConfigError("SCHEDULER_SERVICE_ACCOUNT is not set: no scheduler call can be accepted")
        claims = _verified(self.scheduler.verify, token, "Google ID token")
        email = str(claims.get("email", ""))
        if claims.get("email_verified") is not True:
            raise AuthError(403, f"service account {email or '(none)'}: email_verified is not true")
        if email != self.config.scheduler_service_account:
            # A real Google token of somebody else: authenticated, but not allowed (403, not 401).
            raise AuthError(403, f"service account {email or '(none)'} is not SCHEDULER_SERVICE_ACCOUNT")
        return Caller(SCHEDULER, email)

    def _user(self, token: str) -> Caller:
        if self.users is None:
            raise ConfigError("neither SUPABASE_JWT_SECRET nor SUPABASE_JWKS_URL is set: no user call can be accepted")
        claims = _verified(self.users.verify, token, "Supabase token")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > 255:
            raise AuthError(401, "invalid Supabase token: no user (sub)")
        # The token's own "role" claim says authenticated/anon/service_role, never manager:
        # the app's roles live in user_profiles, read here with our own connection.
        role = self.roles.role_of(sub)
        if role not in MANAGER_ROLES:
            raise AuthError(403, f"user {sub} has role {role or '(no user_profiles row)'}, not manager or admin")
        return Caller(USER, sub, role)


def require(caller: Caller, allowed: tuple[str, ...], action: str) -> None:
    """403 unless the caller's kind may do ``action`` (auth-disabled may do everything)."""
    if caller.kind != DEV and caller.kind not in allowed:
        who = "a manager" if caller.kind == USER else "the scheduler"
        raise AuthError(403, f"{who} may not {action}")


def _verified(verify: Callable[[str], Mapping[str, Any]], token: str, kind: str) -> Mapping[str, Any]:
    """The verified claims, or a 401 naming why."""
    try:
        return verify(token)
    except InvalidToken as exc:
        raise AuthError(401, f"invalid {kind}: {exc}") from None
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        # A token crafted to trip a library's parser is still just an invalid token, not a 500.
        raise AuthError(401, f"invalid {kind}: unreadable ({type(exc).__name__})") from None


def challenge(reason: str) -> str:
    """The RFC 6750 ``WWW-Authenticate`` value for a 401."""
    if reason.startswith("no Authorization"):
        return 'Bearer realm="dbbackup"'
    # The reason may quote parts of an attacker's token (kid, alg): printable ASCII only, no quotes.
    safe = "".join(c if " " <= c <= "~" and c not in '\\"' else "?" for c in reason)
    return f'Bearer realm="dbbackup", error="invalid_token", error_description="{safe}"'
