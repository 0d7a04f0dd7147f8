"""Supabase Auth (GoTrue) on 127.0.0.1: the REST token endpoint a browser signs in with.

Speaks the subset of the documented protocol the managers' console uses (checked against
supabase/auth ``internal/api/token.go``, ``token_refresh.go``, ``apierrors/apierrors.go`` and
``errors.go``; "CHOICE" marks what this fake had to pick):

- ``POST /auth/v1/token?grant_type=password`` JSON ``{"email", "password"}`` -> 200
  ``{"access_token", "token_type": "bearer", "expires_in", "expires_at", "refresh_token", "user"}``.
  Unknown e-mail or wrong password: 400 ``{"code": 400, "error_code": "invalid_credentials",
  "msg": "Invalid login credentials"}`` (the same bytes for both, as GoTrue answers); no e-mail:
  400 ``validation_failed`` "missing email or phone".
- ``POST /auth/v1/token?grant_type=refresh_token`` JSON ``{"refresh_token"}`` -> a new access
  token and a new refresh token (rotation: the old one is spent). Unknown: 400
  ``refresh_token_not_found`` "Invalid Refresh Token: Refresh Token Not Found"; spent: 400
  ``refresh_token_already_used`` "Invalid Refresh Token: Already Used" (CHOICE: no reuse window).
- Any other grant: 400 ``unsupported_grant_type``; a body that is not JSON: 400 ``bad_json``.
- With the request header ``X-Supabase-Api-Version: 2024-01-01`` errors take the newer shape
  ``{"code": "<error_code>", "message": "..."}``.
- ``POST /auth/v1/logout?scope=local|global|others`` with the user's bearer token -> 204; it
  revokes the refresh tokens of that session (local), of all the user's sessions (global) or of
  the others.
- The API gateway in front of Auth wants the project's ``apikey`` header: none -> 401
  ``{"message": "No API key found in request"}``, a wrong one -> 401 ``{"message": "Invalid API key"}``.
- CORS, since the page calls it from another origin: ``OPTIONS`` preflight -> 204 with
  ``Access-Control-Allow-Origin`` echoing the origin, the methods, and the requested headers
  (apikey, authorization, content-type, x-client-info, x-supabase-api-version); every answer
  carries the allow-origin header too.

Access tokens are real: ``SupabaseJwksFake.mint`` signs them (ES256 by default) with Supabase's
claims, so the functions' verifier accepts them through the JWKS fake. CHOICE: the tokens' ``iss``
is the JWKS fake's issuer (the verifier is configured with it); on Supabase both share one origin.
``expires_in`` is settable (also while running) so a test can watch the page refresh.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._http import Exchange, FakeServer, Reply
from .auth_people import ADMIN, CLERK, MANAGER, STRANGER
from .jwks_fake import SupabaseJwksFake

TOKEN_PATH = "/auth/v1/token"
LOGOUT_PATH = "/auth/v1/logout"
ALLOWED_HEADERS = ("accept", "apikey", "authorization", "content-type", "x-client-info", "x-supabase-api-version")
NEW_ERRORS_VERSION = "2024-01-01"
NO_KEY_HINT = "No `apikey` request header or url param was found."
BAD_KEY_HINT = "Double check your Supabase `anon` or `service_role` API key."

# The people of tests/fixtures/supabase_app.sql, with passwords (test-only, obviously).
PASSWORD = "correct horse battery staple"
PEOPLE = {
    "manager@example.com": MANAGER,
    "admin@example.com": ADMIN,
    "clerk@example.com": CLERK,
    "stranger@example.com": STRANGER,  # signs in, but has no user_profiles row
}


@dataclass
class User:
    id: str
    email: str
    password: str
    created_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()))

    def as_json(self, now: str) -> dict[str, Any]:
        """GoTrue's user object (the fields a client reads; no password hash, as on Supabase)."""
        return {
            "id": self.id,
            "aud": "authenticated",
            "role": "authenticated",
            "email": self.email,
            "email_confirmed_at": self.created_at,
            "phone": "",
            "confirmed_at": self.created_at,
            "last_sign_in_at": now,
            "app_metadata": {"provider": "email", "providers": ["email"]},
            "user_metadata": {},
            "identities": [],
            "created_at": self.created_at,
            "updated_at": now,
            "is_anonymous": False,
        }


@dataclass
class RefreshToken:
    user: User
    session_id: str
    revoked: bool = False


class AuthError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class SupabaseAuthFake(FakeServer):
    """The token endpoint of a Supabase project whose tokens ``jwks`` signs."""

    methods = ("OPTIONS", "POST", "GET")
    protocol_version = "HTTP/1.1"

    def __init__(
        self,
        jwks: SupabaseJwksFake,
        *,
        people: dict[str, str] | None = None,
        password: str = PASSWORD,
        expires_in: int = 3600,
        kid: str | None = "es-key-1",
    ) -> None:
        import jwt

        super().__init__()
        self.jwks = jwks
        self.kid = kid
        self.expires_in = expires_in
        self.users = {email: User(sub, email, password) for email, sub in (people or PEOPLE).items()}
        # The project's anon key, as Supabase makes it: an HS256 JWT of the legacy secret, role anon.
        now = int(time.time())
        self.anon_key = jwt.encode(
            {"iss": "supabase", "ref": "fakeproject", "role": "anon", "iat": now, "exp": now + 10 * 365 * 86400},
            jwks.jwt_secret,
            algorithm="HS256",
        )
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.grants: list[str] = []  # grant_type of each successful token request, in order
        self.issued: list[str] = []  # every access and refresh token handed out (tests look for leaks)
        self.start()

    # ---- the protocol ----------------------------------------------------------------------

    def respond(self, exchange: Exchange) -> Reply:
        cors = _cors(exchange)
        if exchange.method == "OPTIONS":
            wanted = [h.strip().lower() for h in exchange.header("Access-Control-Request-Headers").split(",")]
            headers = cors | {
                "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
                "Access-Control-Allow-Headers": ", ".join(h for h in wanted if h in ALLOWED_HEADERS),
                "Access-Control-Max-Age": "300",
            }
            return _reply(204, None, headers)
        if exchange.method == "POST":
            headers = {k.lower(): v for k, v in exchange.headers.items()}
            status, payload = self.handle(exchange.target, headers, exchange.body())
            return _reply(status, payload, cors)
        return _reply(404, {"code": 404, "error_code": "not_found", "msg": "Not found"}, cors)

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        parts = urlsplit(path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        new_errors = headers.get("x-supabase-api-version", "") >= NEW_ERRORS_VERSION
        apikey = headers.get("apikey")
        if not apikey:
            return 401, {"message": "No API key found in request", "hint": NO_KEY_HINT}
        if apikey != self.anon_key:
            return 401, {"message": "Invalid API key", "hint": BAD_KEY_HINT}
        try:
            if parts.path == TOKEN_PATH:
                return 200, self._token(query.get("grant_type", ""), body)
            if parts.path == LOGOUT_PATH:
                self._logout(query.get("scope", "global"), headers.get("authorization", ""))
                return 204, None
            raise AuthError(404, "not_found", "Not found")
        except AuthError as e:
            if new_errors:
                return e.status, {"code": e.code, "message": e.message}
            return e.status, {"code": e.status, "error_code": e.code, "msg": e.message}

    def _json(self, body: bytes) -> dict[str, Any]:
        try:
            params = json.loads(body or b"{}")
        except ValueError as e:
            raise AuthError(400, "bad_json", f"Could not parse request body as JSON: {e}") from None
        if not isinstance(params, dict):
            raise AuthError(400, "bad_json", "Could not parse request body as JSON: not an object")
        return params

    def _token(self, grant: str, body: bytes) -> dict[str, Any]:
        if grant == "password":
            params = self._json(body)
            email = str(params.get("email") or "").strip().lower()
            if not email and not params.get("phone"):
                raise AuthError(400, "validation_failed", "missing email or phone")
            user = self.users.get(email)
            # Unknown user and wrong password answer alike, so the endpoint does not reveal who exists.
            if user is None or not secrets.compare_digest(str(params.get("password") or ""), user.password):
                raise AuthError(400, "invalid_credentials", "Invalid login credentials")
            answer = self._issue(user, str(uuid.uuid4()))
        elif grant == "refresh_token":
            params = self._json(body)
            presented = str(params.get("refresh_token") or "")
            if not presented:
                raise AuthError(400, "validation_failed", "refresh_token required")
            with self.lock:
                held = self.refresh_tokens.get(presented)
                if held is None:
                    raise AuthError(400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found")
                if held.revoked:
                    raise AuthError(400, "refresh_token_already_used", "Invalid Refresh Token: Already Used")
                held.revoked = True
            answer = self._issue(held.user, held.session_id)
        else:
            raise AuthError(400, "invalid_credentials", "unsupported_grant_type")
        self.grants.append(grant)
        return answer

    def _issue(self, user: User, session_id: str) -> dict[str, Any]:
        import jwt

        expires_in = self.expires_in
        access = self.jwks.mint(
            user.id,
            kid=self.kid,
            expires_in=expires_in,
            email=user.email,
            session_id=session_id,
            app_metadata={"provider": "email", "providers": ["email"]},
            user_metadata={},
            amr=[{"method": "password", "timestamp": int(time.time())}],
        )
        expires_at = jwt.decode(access, options={"verify_signature": False})["exp"]
        refresh = secrets.token_urlsafe(12)
        with self.lock:
            self.refresh_tokens[refresh] = RefreshToken(user, session_id)
            self.issued += [access, refresh]
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": expires_in,
            "expires_at": expires_at,
            "refresh_token": refresh,
            "user": user.as_json(now),
        }

    def _logout(self, scope: str, authorization: str) -> None:
        import jwt

        token = authorization[7:] if authorization.lower().startswith("bearer ") else ""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            if kid is None:  # a legacy HS256 token
                claims = jwt.decode(token, self.jwks.jwt_secret, algorithms=["HS256"], audience="authenticated")
            else:
                alg, key = self.jwks.private[kid]
                claims = jwt.decode(token, key.public_key(), algorithms=[alg], audience="authenticated")
        except Exception as e:  # any bad token: GoTrue's 401 bad_jwt
            raise AuthError(401, "bad_jwt", f"invalid JWT: unable to parse or verify signature, {e}") from None
        if scope not in ("global", "local", "others"):
            raise AuthError(400, "validation_failed", "Unsupported logout scope")
        with self.lock:
            for held in self.refresh_tokens.values():
                if held.user.id != claims["sub"]:
                    continue
                same = held.session_id == claims.get("session_id")
                if scope == "global" or (scope == "local" and same) or (scope == "others" and not same):
                    held.revoked = True

    # ---- for tests ---------------------------------------------------------------------------

    @property
    def requests(self) -> list[tuple[str, str]]:
        with self.lock:
            return [(e.method, e.target) for e in self.exchanges]

    def count(self, grant: str) -> int:
        return self.grants.count(grant)


def _cors(exchange: Exchange) -> dict[str, str]:
    origin = exchange.headers.get("Origin")
    if not origin:
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }


def _reply(status: int, payload: Any, headers: dict[str, str]) -> Reply:
    if payload is None:
        return Reply(status, b"", headers)
    return Reply.json(status, payload, headers)
