"""Secrets: read from Secret Manager by name at cold start (the real google-cloud-secret-manager
client, REST transport, against the local fake), cached for the instance; and the one redaction
function's patterns for credentials it recognises by shape."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from functions_framework import create_app

from dbbackup.errors import ConfigError
from dbbackup.redact import MASK, redact
from dbbackup.secret_manager import resolve_secrets
from fakes.secretmanager_fake import SecretManagerFake
from support.paths import ROOT

BACKUP = ROOT / "functions" / "database_backup" / "main.py"


@pytest.fixture
def gsm() -> Iterator[SecretManagerFake]:
    fake = SecretManagerFake()
    yield fake
    fake.stop()


def unique(name: str) -> str:
    """Secret names differ per test: the cache is per process, as it is per instance."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def test_secret_variables_are_read_once_through_the_real_client(gsm: SecretManagerFake) -> None:
    db_name = gsm.add(unique("database-url"), "postgresql://app:s3cr3t@db.example.com/postgres\n")
    sg_name = gsm.add(unique("sendgrid"), "SG.abcdefghij.klmnopqrstuv")
    env = {"DATABASE_URL_SECRET": db_name, "SENDGRID_API_KEY_SECRET": sg_name, "SECRET_MANAGER_ENDPOINT": gsm.endpoint}
    resolved = resolve_secrets(env)
    assert resolved["DATABASE_URL"] == "postgresql://app:s3cr3t@db.example.com/postgres"  # trailing newline gone
    assert resolved["SENDGRID_API_KEY"] == "SG.abcdefghij.klmnopqrstuv"
    assert sorted(gsm.accesses) == sorted(f"/v1/{n}:access" for n in (db_name, sg_name))
    resolve_secrets(env)
    assert len(gsm.accesses) == 2  # cached for the instance


def test_latest_resolves_to_the_newest_version(gsm: SecretManagerFake) -> None:
    name = unique("jwt")
    gsm.add(name, "old-secret-value")
    gsm.add(name, "new-secret-value")
    env = {
        "SUPABASE_JWT_SECRET_SECRET": f"projects/{gsm.project}/secrets/{name}/versions/latest",
        "SECRET_MANAGER_ENDPOINT": gsm.endpoint,
    }
    assert resolve_secrets(env)["SUPABASE_JWT_SECRET"] == "new-secret-value"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL_SECRET": "projects/test-project/secrets/missing/versions/1"}, "could not be read: NotFound"),
        ({"DATABASE_URL_SECRET": "db-password"}, "expected projects/PROJECT/secrets/NAME/versions/VERSION"),
        ({"DATABASE_URL_SECRET": "projects/p/secrets/s/versions/1", "DATABASE_URL": "x"}, "set only one"),
    ],
)
def test_a_bad_secret_reference_is_one_line_naming_it(
    gsm: SecretManagerFake, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        resolve_secrets(env | {"SECRET_MANAGER_ENDPOINT": gsm.endpoint})
    assert "\n" not in str(info.value)


def test_the_function_reads_its_database_url_from_secret_manager(
    gsm: SecretManagerFake, migrated_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("K_SERVICE", raising=False)
    monkeypatch.setenv("DATABASE_URL_SECRET", gsm.add(unique("database-url"), migrated_url))
    monkeypatch.setenv("SECRET_MANAGER_ENDPOINT", gsm.endpoint)
    monkeypatch.setenv("BACKUP_LOCAL_ROOT", str(tmp_path))
    monkeypatch.setenv("AUTH_MODE", "disabled")
    client = create_app("database_backup", str(BACKUP)).test_client()
    resp = client.post("/", json={"trigger": "manual"})
    assert resp.status_code == 200 and resp.get_json()["status"] == "success"
    assert client.post("/", json={"trigger": "manual"}).status_code == 200
    assert len(gsm.accesses) == 1


def test_a_missing_secret_is_a_500_without_traceback(gsm: SecretManagerFake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL_SECRET", f"projects/{gsm.project}/secrets/{unique('gone')}/versions/1")
    monkeypatch.setenv("SECRET_MANAGER_ENDPOINT", gsm.endpoint)
    resp = create_app("database_backup", str(BACKUP)).test_client().post("/", json={"trigger": "scheduled"})
    assert resp.status_code == 500
    text = resp.get_data(as_text=True)
    assert "NotFound" in resp.get_json()["error"] and "Traceback" not in text


PEM_BEGIN = "-----BEGIN " + "PRIVATE KEY-----"
PEM_END = "-----END " + "PRIVATE KEY-----"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer ya29.a0AfH6SMBx-token_value", "ya29.a0AfH6SMBx-token_value"),
        ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl rejected", "c2lnbmF0dXJl"),
        (
            # A PEM frame around placeholder text, assembled here so no key-shaped literal is committed.
            '{"private_key": "' + PEM_BEGIN + "\\nMIIEvQIBADANBg\\n" + PEM_END + '\\n"}',
            "MIIEvQIBADANBg",
        ),
        ("key SG.AbCdEfGhIjKl.MnOpQrStUvWxYz0123 refused", "SG.AbCdEfGhIjKl.MnOpQrStUvWxYz0123"),
        ("PGPASSWORD=hunter22 pg_dump", "hunter22"),
        ("postgresql://app:pa55word@db:5432/x", "pa55word"),
        ("host=db password='p w' user=app", "p w"),
    ],
)
def test_redaction_recognises_credentials_by_shape(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out and MASK in out


def test_the_jwt_secret_is_a_known_secret_and_never_in_repr() -> None:
    from dbbackup.settings import Settings

    settings = Settings.from_env(
        {"DATABASE_URL": "postgresql://x@localhost/x", "SUPABASE_JWT_SECRET": "jwt-s3cret-value"}
    )
    assert "jwt-s3cret-value" in settings.secrets
    assert "jwt-s3cret-value" not in repr(settings) and "jwt-s3cret-value" not in repr(settings.auth)
