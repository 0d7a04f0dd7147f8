"""Who may call the functions (issue 6's authorisation matrix), through functions-framework's
own Flask app, with real signatures: Google-style ID tokens checked by google-auth against the
certs fake, Supabase tokens checked by PyJWT (HS256 legacy secret, ES256/RS256 from the JWKS
fake). Every key is generated at test time. A refused call starts nothing and writes nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import jwt
import psycopg
import pytest
from functions_framework import create_app

from fakes.auth_people import ADMIN, AUDIENCE, CLERK, MANAGER, OTHER_SA, SCHEDULER_SA, STRANGER, Secured
from fakes.jwks_fake import SupabaseJwksFake
from fakes.oidc_fake import GoogleCertsFake
from support.paths import ROOT

pytest_plugins = ["fakes.auth_fixtures"]

BACKUP = ROOT / "functions" / "database_backup" / "main.py"
CLEANUP = ROOT / "functions" / "cleanup_old_backups" / "main.py"
Token = Callable[[GoogleCertsFake, SupabaseJwksFake], str | None]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(supabase: SupabaseJwksFake, sub: str) -> str:
    """``alg: none``: a token anyone can write."""
    head = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{head}.{_b64(json.dumps(supabase.claims(sub)).encode())}."


def confused(supabase: SupabaseJwksFake, sub: str) -> str:
    """Algorithm confusion: HS256 'signed' with the project's public RSA key (public, from the
    JWKS) as the HMAC secret, naming that key's kid. PyJWT refuses to make one, so by hand."""
    from cryptography.hazmat.primitives import serialization

    public_pem = (
        supabase.private["rs-key-1"][1]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rs-key-1"}).encode())
    body = _b64(json.dumps(supabase.claims(sub)).encode())
    sig = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


def unpublished_kid(supabase: SupabaseJwksFake, sub: str) -> str:
    """Well formed ES256, signed with a key the project never published."""
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode(supabase.claims(sub), key, algorithm="ES256", headers={"kid": "never-published"})


def google_wrong_key(google: GoogleCertsFake) -> str:
    """Google-shaped, but signed by a key that is not among Google's certs (same kid)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    return google.mint(AUDIENCE, SCHEDULER_SA, private_key=pem)


TOKENS: dict[str, Token] = {
    "no token": lambda g, s: None,
    "malformed": lambda g, s: "not-a-jwt",
    "expired": lambda g, s: s.mint(MANAGER, expires_in=-3600),
    "alg none": lambda g, s: unsigned(s, MANAGER),
    "HS256 wrong secret": lambda g, s: s.mint(MANAGER, kid=None, secret="not-the-project-secret-0123456789"),
    "HS256 right secret wrong aud": lambda g, s: s.mint(MANAGER, kid=None, aud="anon"),
    "HS256 public key as secret": lambda g, s: confused(s, MANAGER),
    "unknown kid": lambda g, s: unpublished_kid(s, MANAGER),
    "wrong issuer": lambda g, s: s.mint(MANAGER, iss="https://other.supabase.co/auth/v1"),
    "non-manager": lambda g, s: s.mint(CLERK),
    "no profile": lambda g, s: s.mint(STRANGER),
    "manager ES256 via JWKS": lambda g, s: s.mint(MANAGER),
    "manager HS256 legacy": lambda g, s: s.mint(MANAGER, kid=None),
    "admin RS256 via JWKS": lambda g, s: s.mint(ADMIN, kid="rs-key-1"),
    "scheduler": lambda g, s: g.mint(AUDIENCE, SCHEDULER_SA),
    "scheduler wrong audience": lambda g, s: g.mint("https://some-other-function.a.run.app", SCHEDULER_SA),
    "scheduler expired": lambda g, s: g.mint(AUDIENCE, SCHEDULER_SA, expires_in=-3600),
    "scheduler email not verified": lambda g, s: g.mint(AUDIENCE, SCHEDULER_SA, verified=False),
    "scheduler signed by another key": lambda g, s: google_wrong_key(g),
    "another service account": lambda g, s: g.mint(AUDIENCE, OTHER_SA),
}

# What each caller gets on each path: the manual backup, the scheduled backup, the cleanup.
UNAUTHENTICATED = {
    "no token",
    "malformed",
    "expired",
    "alg none",
    "HS256 wrong secret",
    "HS256 right secret wrong aud",
    "HS256 public key as secret",
    "unknown kid",
    "wrong issuer",
    "scheduler wrong audience",
    "scheduler expired",
    "scheduler signed by another key",
}
FORBIDDEN_EVERYWHERE = {"non-manager", "no profile", "another service account", "scheduler email not verified"}
MANAGERS = {"manager ES256 via JWKS", "manager HS256 legacy", "admin RS256 via JWKS"}


def expected(name: str, path: str) -> int:
    if name in UNAUTHENTICATED:
        return 401
    if name in FORBIDDEN_EVERYWHERE:
        return 403
    if name in MANAGERS:
        return 200 if path == "manual" else 403
    assert name == "scheduler"
    return 403 if path == "manual" else 200


CASES = [(name, path) for name in TOKENS for path in ("manual", "scheduled", "cleanup")]


def headers_for(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token is not None else {}


def count_logs(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM backup_logs").fetchone()[0]  # type: ignore[index]


@pytest.mark.parametrize(("name", "path"), CASES, ids=[f"{n}->{p}" for n, p in CASES])
def test_authorisation_matrix(
    name: str, path: str, secured: Secured, google_certs: GoogleCertsFake, supabase: SupabaseJwksFake
) -> None:
    token = TOKENS[name](google_certs, supabase)
    if path == "cleanup":
        client = create_app("cleanup_old_backups", str(CLEANUP)).test_client()
        resp = client.post("/", json={}, headers=headers_for(token))
    else:
        client = create_app("database_backup", str(BACKUP)).test_client()
        resp = client.post("/", json={"trigger": path}, headers=headers_for(token))
    want = expected(name, path)
    assert resp.status_code == want, (name, path, resp.get_json())
    body: dict[str, Any] = resp.get_json()
    if want == 401:
        assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="dbbackup"')
    if want in (401, 403):
        assert set(body) == {"error"} and "\n" not in body["error"]
        assert token is None or token not in resp.get_data(as_text=True)
        assert count_logs(secured.url) == 0  # nothing started, nothing written
    elif path == "cleanup":
        assert body["status"] == "success"
    else:
        assert body["status"] == "success"
        with psycopg.connect(secured.url) as conn:
            row = conn.execute(
                "SELECT backup_type, triggered_by FROM backup_logs WHERE id = %s", (body["backup_log_id"],)
            ).fetchone()
        claims = jwt.decode(token, options={"verify_signature": False})  # type: ignore[arg-type]
        # triggered_by is the verified token's subject (the user's id, or the scheduler's e-mail).
        assert row == (("manual", claims["sub"]) if path == "manual" else ("automatic", SCHEDULER_SA))


def test_a_user_token_claiming_a_manager_role_is_still_refused(secured: Secured, supabase: SupabaseJwksFake) -> None:
    """Authorisation reads user_profiles; a role (or app_metadata) in the token counts for nothing."""
    token = supabase.mint(CLERK, role="manager", app_metadata={"role": "admin"}, user_metadata={"role": "admin"})
    client = create_app("database_backup", str(BACKUP)).test_client()
    resp = client.post("/", json={"trigger": "manual"}, headers=headers_for(token))
    assert resp.status_code == 403


def test_the_body_cannot_choose_triggered_by(secured: Secured, supabase: SupabaseJwksFake) -> None:
    client = create_app("database_backup", str(BACKUP)).test_client()
    resp = client.post(
        "/", json={"trigger": "manual", "triggered_by": ADMIN}, headers=headers_for(supabase.mint(MANAGER))
    )
    assert resp.status_code == 400 and count_logs(secured.url) == 0


def test_the_scheduler_audience_defaults_to_the_function_url(
    secured: Secured, monkeypatch: pytest.MonkeyPatch, google_certs: GoogleCertsFake
) -> None:
    monkeypatch.delenv("SCHEDULER_AUDIENCE")
    client = create_app("cleanup_old_backups", str(CLEANUP)).test_client()
    base = "https://cleanup-old-backups-test.a.run.app"
    ok = client.post("/", json={}, base_url=base, headers=headers_for(google_certs.mint(base, SCHEDULER_SA)))
    assert ok.status_code == 200, ok.get_json()
    other = client.post("/", json={}, base_url=base, headers=headers_for(google_certs.mint(AUDIENCE, SCHEDULER_SA)))
    assert other.status_code == 401


def test_status_needs_a_manager_or_the_scheduler(
    secured: Secured, google_certs: GoogleCertsFake, supabase: SupabaseJwksFake
) -> None:
    client = create_app("database_backup", str(BACKUP)).test_client()
    assert client.get("/status").status_code == 401
    assert client.get("/status", headers=headers_for(supabase.mint(CLERK))).status_code == 403
    assert client.get("/status", headers=headers_for(supabase.mint(MANAGER))).status_code == 200
    assert client.get("/status", headers=headers_for(google_certs.mint(AUDIENCE, SCHEDULER_SA))).status_code == 200


def test_a_rotated_signing_key_is_fetched_on_its_first_token(secured: Secured, supabase: SupabaseJwksFake) -> None:
    """The JWKS is cached; a token naming a kid not in the cache makes one refetch (after the
    cooldown PyJWKClient keeps against kid floods), and the new key is then accepted."""
    client = create_app("database_backup", str(BACKUP)).test_client()
    assert client.get("/status", headers=headers_for(supabase.mint(MANAGER))).status_code == 200
    before = supabase.fetches
    assert client.get("/status", headers=headers_for(supabase.mint(ADMIN))).status_code == 200
    assert supabase.fetches == before  # cached
    kid = supabase.rotate()
    from dbbackup.auth import supabase as auth_supabase

    auth_supabase._jwks_client(supabase.jwks_url).cooldown_duration = 0  # the test cannot wait 30 s
    assert client.get("/status", headers=headers_for(supabase.mint(MANAGER, kid=kid))).status_code == 200
    assert supabase.fetches == before + 1


def test_cors_allows_only_the_configured_origins(secured: Secured, supabase: SupabaseJwksFake) -> None:
    client = create_app("database_backup", str(BACKUP)).test_client()
    pre = {
        "Origin": "https://app.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    ok = client.options("/", headers=pre)
    assert ok.status_code == 204
    assert ok.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Authorization" in ok.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in ok.headers
    evil = client.options("/", headers=pre | {"Origin": "https://evil.example.net"})
    assert evil.status_code == 403 and "Access-Control-Allow-Origin" not in evil.headers
    resp = client.get("/status", headers={"Origin": "https://app.example.com"} | headers_for(supabase.mint(MANAGER)))
    assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    resp = client.get("/status", headers={"Origin": "https://evil.example.net"} | headers_for(supabase.mint(MANAGER)))
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert all(v != "*" for v in resp.headers.values())


def test_auth_disabled_must_be_explicit_and_is_refused_on_cloud_run(
    secured: Secured, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client = create_app("database_backup", str(BACKUP)).test_client()
    assert client.get("/status").status_code == 401  # the default is enforced
    monkeypatch.setenv("AUTH_MODE", "disabled")
    with caplog.at_level("WARNING"):
        assert client.get("/status").status_code == 200
    assert "AUTH_MODE=disabled" in caplog.text
    monkeypatch.setenv("K_SERVICE", "database-backup")
    resp = client.get("/status")
    assert resp.status_code == 500 and "K_SERVICE" in resp.get_json()["error"]


def test_every_refusal_is_logged_with_who_and_why_but_not_the_token(
    secured: Secured, supabase: SupabaseJwksFake, caplog: pytest.LogCaptureFixture
) -> None:
    client = create_app("database_backup", str(BACKUP)).test_client()
    clerk, expired = supabase.mint(CLERK), supabase.mint(MANAGER, expires_in=-60)
    with caplog.at_level("WARNING"):
        client.post("/", json={"trigger": "manual"}, headers=headers_for(clerk))
        client.post("/", json={"trigger": "manual"}, headers=headers_for(expired))
    assert f"refused POST / with 403: user {CLERK} has role user" in caplog.text
    assert "refused POST / with 401: invalid Supabase token: expired" in caplog.text
    assert clerk not in caplog.text and expired not in caplog.text
