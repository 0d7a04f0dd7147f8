"""Google's OAuth2 certs endpoint for Cloud Scheduler's OIDC ID tokens, on 127.0.0.1.

``GET /oauth2/v1/certs`` answers what ``https://www.googleapis.com/oauth2/v1/certs`` does: a
JSON object of key id -> X.509 certificate (PEM), the v1 format google-auth's ``verify_token``
reads. ``mint`` signs ID tokens the way Google does (RS256, header ``kid``) with claims as Cloud
Scheduler's carry them: iss, aud (the target URI), azp, sub, email, email_verified, iat, exp.
The RSA keys are generated when the fake starts; nothing is committed.
"""

from __future__ import annotations

import time
from typing import Any

from ._http import Exchange, FakeServer, Reply
from .certs import self_signed

ISSUER = "https://accounts.google.com"


def _rsa_key_and_cert() -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = self_signed(key, "fake-google-oauth2")
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return pem, cert.public_bytes(serialization.Encoding.PEM).decode()


class GoogleCertsFake(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.keys: dict[str, tuple[str, str]] = {"google-kid-1": _rsa_key_and_cert()}
        self.start()

    def respond(self, exchange: Exchange) -> Reply:
        if exchange.path == "/oauth2/v1/certs":
            return Reply.json(200, {kid: cert for kid, (_, cert) in self.keys.items()})
        return Reply.json(404, {"error": "not found"})

    @property
    def certs_url(self) -> str:
        return f"{self.url}/oauth2/v1/certs"

    def mint(self, audience: str, email: str, *, expires_in: int = 3600, verified: bool = True, **extra: Any) -> str:
        """A Google-style ID token signed with the served key (``kid`` names it)."""
        from google.auth import crypt, jwt

        kid = extra.pop("kid", "google-kid-1")
        pem = extra.pop("private_key", None) or self.keys["google-kid-1"][0]
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": audience,
            "azp": "112233445566778899000",
            "sub": "112233445566778899000",
            "email": email,
            "email_verified": verified,
            "iat": now,
            "exp": now + expires_in,
            **extra,
        }
        return jwt.encode(crypt.RSASigner.from_string(pem, key_id=kid), claims).decode()
