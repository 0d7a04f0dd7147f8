"""Cloud Scheduler's OIDC ID tokens, verified with google-auth against Google's certs (or the
certs URL a test serves). google-auth is imported only when a scheduler token arrives."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dbbackup.auth.authenticator import GOOGLE_ISSUERS
from dbbackup.errors import InvalidToken

CLOCK_SKEW_SECONDS = 10


class GoogleIdTokenVerifier:
    def __init__(self, audiences: list[str], certs_url: str) -> None:
        self.audiences = audiences
        self.certs_url = certs_url

    def verify(self, token: str) -> Mapping[str, Any]:
        import google.auth.exceptions
        import google.auth.transport.requests
        from google.oauth2 import id_token

        try:
            # verify_token (not verify_oauth2_token) because that one hard-codes Google's certs URL.
            claims = id_token.verify_token(
                token,
                google.auth.transport.requests.Request(),
                audience=self.audiences,
                certs_url=self.certs_url,
                clock_skew_in_seconds=CLOCK_SKEW_SECONDS,
            )
        except google.auth.exceptions.TransportError:
            raise InvalidToken("Google's certificates could not be fetched") from None
        except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
            # InvalidValue / MalformedError are ValueErrors; their text names the failed check, not the
            # token. The audience we expect is not echoed to a caller who could not produce it.
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InvalidToken("wrong audience" if "audience" in text else text[:200]) from None
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise InvalidToken("issuer is not accounts.google.com")
        return claims
