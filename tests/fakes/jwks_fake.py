"""A Supabase project's token signing, on 127.0.0.1: the JWKS endpoint and the tokens.

``GET /auth/v1/.well-known/jwks.json`` answers ``{"keys": [...]}`` with the public keys of the
project's asymmetric signing keys (ES256 on P-256, and RS256), each with ``kid``, ``alg`` and
``use: sig``; the legacy HS256 secret never appears there, as on Supabase. ``mint`` makes
access tokens with Supabase's claims (iss = <project>/auth/v1, aud = authenticated, role =
authenticated, sub, email, session_id, aal, exp, iat). Keys are generated at start; ``rotate``
adds a new ES256 key, as a signing-key rotation does. Every JWKS fetch is counted.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from typing import Any

from ._http import Exchange, FakeServer, Reply

JWKS_PATH = "/auth/v1/.well-known/jwks.json"


class SupabaseJwksFake(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        self.jwt_secret = "legacy-" + secrets.token_urlsafe(32)  # the project's legacy HS256 secret
        self.private: dict[str, tuple[str, Any]] = {
            "es-key-1": ("ES256", ec.generate_private_key(ec.SECP256R1())),
            "rs-key-1": ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        }
        self.published = set(self.private)
        self.start()

    def respond(self, exchange: Exchange) -> Reply:
        if exchange.path != JWKS_PATH:
            return Reply.json(404, {"message": "not found"})
        return Reply.json(200, {"keys": [self.public_jwk(kid) for kid in sorted(self.published)]})

    def public_jwk(self, kid: str) -> dict[str, Any]:
        from jwt.algorithms import ECAlgorithm, RSAAlgorithm

        alg, key = self.private[kid]
        algo = ECAlgorithm if alg == "ES256" else RSAAlgorithm
        jwk = json.loads(algo.to_jwk(key.public_key()))
        return jwk | {"kid": kid, "alg": alg, "use": "sig", "key_ops": ["verify"]}

    @property
    def base(self) -> str:
        return self.url

    @property
    def jwks_url(self) -> str:
        return self.url + JWKS_PATH

    @property
    def issuer(self) -> str:
        return self.url + "/auth/v1"

    @property
    def fetches(self) -> int:
        return sum(1 for e in self.exchanges if e.target.startswith(JWKS_PATH))

    def rotate(self) -> str:
        """A new ES256 key, published: tokens signed with it name a kid the verifier has not seen."""
        from cryptography.hazmat.primitives.asymmetric import ec

        kid = f"es-key-{uuid.uuid4().hex[:6]}"
        self.private[kid] = ("ES256", ec.generate_private_key(ec.SECP256R1()))
        self.published.add(kid)
        return kid

    def claims(self, sub: str, *, expires_in: int = 3600, **extra: Any) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.issuer,
            "aud": "authenticated",
            "exp": now + expires_in,
            "iat": now,
            "sub": sub,
            "email": f"{sub[-4:]}@example.com",
            "phone": "",
            "role": "authenticated",
            "aal": "aal1",
            "session_id": str(uuid.uuid4()),
            "is_anonymous": False,
            **extra,
        }

    def mint(self, sub: str, *, kid: str | None = "es-key-1", secret: str | None = None, **extra: Any) -> str:
        """An access token: signed with the asymmetric key ``kid``, or HS256 with ``secret``
        (the project's legacy secret when ``kid`` is None and no secret is given)."""
        import jwt

        claims = self.claims(sub, **extra)
        if kid is None or secret is not None:
            return jwt.encode(claims, secret or self.jwt_secret, algorithm="HS256")
        alg, key = self.private[kid]
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})
