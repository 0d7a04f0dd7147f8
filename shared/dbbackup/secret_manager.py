"""Secrets from Google Secret Manager, read by name at cold start and cached for the instance.

For each variable in ``SECRET_VARIABLES`` a deployment either sets the value itself (Cloud
Functions can mount a secret as an env var) or sets ``<VARIABLE>_SECRET`` to a version's
resource name, ``projects/P/secrets/S/versions/V``; then the value is read here through
google-cloud-secret-manager (REST transport, so ``SECRET_MANAGER_ENDPOINT`` can point it at a
local fake). The library is imported only when a ``*_SECRET`` variable is set."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from dbbackup.errors import ConfigError

SECRET_VARIABLES = (
    "DATABASE_URL",
    "GOOGLE_DRIVE_CREDENTIALS",
    "SENDGRID_API_KEY",
    "SUPABASE_JWT_SECRET",
    "ALERT_WEBHOOK_URL",
    # The S3 backend's credentials (storage/s3_config.py): AWS_SECRET_ACCESS_KEY_SECRET, and the
    # key id alongside it so one rotation changes both in one place.
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "VERIFY_DATABASE_URL",
    # The console's restore targets (restore/targets.py): URLs with passwords.
    "RESTORE_TARGETS",
)
_NAME = re.compile(r"^projects/[^/\s]+/secrets/[A-Za-z0-9_-]{1,255}/versions/([0-9]+|latest)$")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")

Fetch = Callable[[str], str]
_cache: dict[str, str] = {}
_lock = threading.Lock()


def secret_manager_fetch(endpoint: str | None) -> Fetch:
    """A fetch function over the real client. With a loopback ``endpoint`` (a fake) it sends no
    credentials; otherwise it uses the function's service account (Application Default Credentials)."""

    def fetch(name: str) -> str:
        from google.api_core import exceptions as gexc
        from google.api_core.client_options import ClientOptions
        from google.cloud import secretmanager

        options = ClientOptions(api_endpoint=endpoint) if endpoint else None
        credentials = None
        if endpoint and urlsplit(endpoint).hostname in _LOOPBACK:
            from google.auth.credentials import AnonymousCredentials

            credentials = AnonymousCredentials()
        try:
            client = secretmanager.SecretManagerServiceClient(
                credentials=credentials, transport="rest", client_options=options
            )
            response = client.access_secret_version(request={"name": name}, timeout=30)
        except gexc.GoogleAPICallError as exc:
            # The status names what to fix (NotFound, PermissionDenied); the message may carry a URL only.
            raise ConfigError(f"secret {name} could not be read: {type(exc).__name__}") from None
        except Exception as exc:  # credentials missing, transport errors: one line, no traceback
            raise ConfigError(f"secret {name} could not be read: {type(exc).__name__}") from None
        try:
            return response.payload.data.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"secret {name} is not UTF-8 text") from None

    return fetch


def resolve_secrets(
    env: Mapping[str, str], fetch: Fetch | None = None, variables: tuple[str, ...] = SECRET_VARIABLES
) -> dict[str, str]:
    """``env`` with every ``<VARIABLE>_SECRET`` of ``variables`` replaced by the secret's value
    under ``<VARIABLE>``. Each version is read once per instance (cached by resource name)."""
    wanted = {var: env[f"{var}_SECRET"].strip() for var in variables if env.get(f"{var}_SECRET", "").strip()}
    if not wanted:
        return dict(env)
    out = dict(env)
    endpoint = env.get("SECRET_MANAGER_ENDPOINT", "").strip() or None
    fetch = fetch or secret_manager_fetch(endpoint)
    for var, name in wanted.items():
        if env.get(var, "").strip():
            raise ConfigError(f"both {var} and {var}_SECRET are set: set only one")
        if not _NAME.match(name):
            raise ConfigError(f"{var}_SECRET={name!r}: expected projects/PROJECT/secrets/NAME/versions/VERSION")
        with _lock:
            if name not in _cache:
                # A trailing newline is what `echo value | gcloud secrets create --data-file=-` stores.
                _cache[name] = fetch(name).rstrip("\r\n")
            out[var] = _cache[name]
    return out
