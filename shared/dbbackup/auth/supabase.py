"""Supabase access tokens, verified with PyJWT: HS256 with the project's legacy JWT secret, or
ES256/RS256 with the project's JWKS (new signing keys). PyJWT is imported only when needed."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from dbbackup.errors import InvalidToken

ASYMMETRIC = ("ES256", "RS256")
AUDIENCE = "authenticated"
LEEWAY_SECONDS = 10
JWKS_CACHE_SECONDS = 600  # Supabase's edge caches the JWKS for 10 minutes too

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def _jwks_client(url: str) -> Any:
    """One PyJWKClient per URL and instance: it caches the key set and refetches it once
    (with a cooldown) when a token names a kid it does not know, i.e. after a key rotation."""
    import jwt

    with _clients_lock:
        if url not in _clients:
            _clients[url] = jwt.PyJWKClient(url, cache_jwk_set=True, lifespan=JWKS_CACHE_SECONDS, timeout=10)
        return _clients[url]


class SupabaseVerifier:
    def __init__(self, secret: str | None, jwks_url: str | None, issuer: str | None) -> None:
        self.secret = secret
        self.jwks_url = jwks_url
        self.issuer = issuer

    def verify(self, token: str) -> Mapping[str, Any]:
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed header") from None
        alg = header.get("alg")
        # The algorithm picks the key source, and each key source accepts exactly one family:
        # a token saying HS256 is only ever checked with the shared secret, so a public key from
        # the JWKS can never be used as an HMAC secret (algorithm confusion); "none" matches nothing.
        if alg == "HS256":
            if not self.secret:
                raise InvalidToken("HS256 tokens are not accepted (SUPABASE_JWT_SECRET is not set)")
            key: Any = self.secret
        elif alg in ASYMMETRIC:
            if not self.jwks_url:
                raise InvalidToken(f"{alg} tokens are not accepted (SUPABASE_JWKS_URL is not set)")
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid:
                raise InvalidToken("no kid in the header")
            try:
                jwk = _jwks_client(self.jwks_url).get_signing_key(kid)
            except jwt.PyJWKClientConnectionError:
                raise InvalidToken("the JWKS could not be fetched") from None
            except jwt.PyJWKClientError:
                raise InvalidToken("unknown signing key (kid)") from None
            if jwk.algorithm_name != alg:
                raise InvalidToken(f"the key {kid} is not an {alg} key")
            key = jwk.key
        else:
            raise InvalidToken(f"algorithm {alg!r} is not accepted")
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=AUDIENCE,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "sub", "aud"] + (["iss"] if self.issuer else [])},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("wrong audience (expected authenticated)") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("wrong issuer") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("bad signature") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
