"""BACKUP_S3_* settings (``BACKUP_STORAGE=s3``), parsed without importing boto3.

Credentials: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (optionally
``AWS_SESSION_TOKEN``) from the environment ``Settings`` reads, which on the functions has every
``*_SECRET`` variable resolved from Secret Manager first (``AWS_SECRET_ACCESS_KEY_SECRET``).
When neither is set, boto3's own chain applies (instance role, ``~/.aws``, web identity).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from dbbackup.errors import ConfigError
from dbbackup.storage.object_keys import int_from_env, prefix_from_env

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # S3: every part but the last is at least 5 MiB
MAX_PART_SIZE = 5 * 1024 * MIB
DEFAULT_PART_SIZE = 8 * MIB  # 10,000 parts (S3's limit) of 8 MiB: backups up to 78 GiB; memory follows it
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class S3Config:
    bucket: str
    prefix: str | None = None  # None: the configured backup_folder_path (storage/object_keys.py)
    endpoint_url: str | None = None  # None: AWS itself
    region: str = DEFAULT_REGION
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    part_size: int = DEFAULT_PART_SIZE
    object_lock_days: int = 0  # 0: no per-object retention (the bucket's default, if any, still applies)
    max_attempts: int = 3  # botocore's standard retry mode, per request (a part is retried, not the dump)
    timeout_seconds: float = 60.0

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(v for v in (self.secret_access_key, self.session_token) if v)


def _endpoint(env: Mapping[str, str], variable: str) -> str | None:
    url = env.get(variable, "").strip().rstrip("/")
    if not url:
        return None
    parts = urlsplit(url)
    # A path is part of some endpoints (Supabase Storage: https://<ref>.supabase.co/storage/v1/s3);
    # requests then go path-style under it. A query or fragment is never part of one.
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"{variable}={url!r}: expected https://host[:port][/path] (the bucket is separate)")
    # Backups would cross the network in clear text: only a server on this machine (MinIO in a
    # test, the moto server of the test suite) may be reached without TLS.
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ConfigError(f"{variable}={url!r}: plain http is only allowed for 127.0.0.1/localhost")
    return url


def s3_config_from_env(env: Mapping[str, str]) -> S3Config:
    bucket = env.get("BACKUP_S3_BUCKET", "").strip()
    if not bucket:
        raise ConfigError("BACKUP_S3_BUCKET is not set (the bucket backups are written to)")
    if not 3 <= len(bucket) <= 63 or not all(c.isalnum() or c in ".-_" for c in bucket) or "/" in bucket:
        raise ConfigError(f"BACKUP_S3_BUCKET={bucket!r}: expected a bucket name (3-63 letters, digits, . - _)")
    key_id = env.get("AWS_ACCESS_KEY_ID", "").strip() or None
    secret = env.get("AWS_SECRET_ACCESS_KEY", "").strip() or None
    if (key_id is None) != (secret is None):
        missing = "AWS_SECRET_ACCESS_KEY" if secret is None else "AWS_ACCESS_KEY_ID"
        raise ConfigError(f"{missing} is not set: set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither")
    region = env.get("BACKUP_S3_REGION", "").strip() or env.get("AWS_REGION", "").strip() or DEFAULT_REGION
    if not all(c.isalnum() or c == "-" for c in region):
        raise ConfigError(f"BACKUP_S3_REGION={region!r}: expected a region name such as eu-west-1 or auto")
    return S3Config(
        bucket=bucket,
        prefix=prefix_from_env(env, "BACKUP_S3_PREFIX"),
        endpoint_url=_endpoint(env, "BACKUP_S3_ENDPOINT_URL"),
        region=region,
        access_key_id=key_id,
        secret_access_key=secret,
        session_token=(env.get("AWS_SESSION_TOKEN", "").strip() or None) if key_id else None,
        part_size=int_from_env(env, "BACKUP_S3_PART_SIZE", DEFAULT_PART_SIZE, MIN_PART_SIZE, MAX_PART_SIZE),
        object_lock_days=int_from_env(env, "BACKUP_S3_OBJECT_LOCK_DAYS", 0, 0, 36_500),
    )


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class SupabaseS3Config:
    """BACKUP_SUPABASE_STORAGE and SUPABASE_S3_*: the project's Storage, read (and restored)
    through its S3 endpoint (``storage/s3_objects.py``) with the S3 access keys the dashboard
    issues (Project Settings > Storage > S3 Access Keys)."""

    endpoint_url: str  # https://<project-ref>.supabase.co/storage/v1/s3
    region: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    buckets: tuple[str, ...] = ()  # BACKUP_STORAGE_BUCKETS; empty: every bucket
    max_attempts: int = 3
    timeout_seconds: float = 60.0

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.secret_access_key,)


def storage_enabled(env: Mapping[str, str]) -> bool:
    text = env.get("BACKUP_SUPABASE_STORAGE", "").strip().lower()
    if text not in TRUE_WORDS + FALSE_WORDS:
        raise ConfigError(f"BACKUP_SUPABASE_STORAGE={text!r}: expected true or false")
    return text in TRUE_WORDS


def supabase_s3_config_from_env(env: Mapping[str, str], endpoint: str | None = None) -> SupabaseS3Config:
    """``endpoint`` replaces SUPABASE_S3_ENDPOINT (``storage-restore --endpoint``)."""
    if endpoint is not None:
        env = {**env, "SUPABASE_S3_ENDPOINT": endpoint}
    url = _endpoint(env, "SUPABASE_S3_ENDPOINT")
    if url is None:
        raise ConfigError(
            "SUPABASE_S3_ENDPOINT is not set (https://<project-ref>.supabase.co/storage/v1/s3, the project's"
            " Storage S3 endpoint)"
        )
    region = env.get("SUPABASE_S3_REGION", "").strip()
    if not region or not all(c.isalnum() or c == "-" for c in region):
        raise ConfigError(
            f"SUPABASE_S3_REGION={region!r}: expected the project's region, as the dashboard shows it (eu-central-1...)"
        )
    key_id = env.get("SUPABASE_S3_ACCESS_KEY_ID", "").strip()
    secret = env.get("SUPABASE_S3_SECRET_ACCESS_KEY", "").strip()
    for name, value in (("SUPABASE_S3_ACCESS_KEY_ID", key_id), ("SUPABASE_S3_SECRET_ACCESS_KEY", secret)):
        if not value:
            raise ConfigError(f"{name} is not set (or its *_SECRET): the Storage S3 access key from the dashboard")
    buckets = tuple(b.strip() for b in env.get("BACKUP_STORAGE_BUCKETS", "").split(",") if b.strip())
    for bucket in buckets:
        if "/" in bucket or any(ord(c) < 32 for c in bucket):
            raise ConfigError(f"BACKUP_STORAGE_BUCKETS: {bucket!r} is not a bucket name")
    return SupabaseS3Config(
        endpoint_url=url, region=region, access_key_id=key_id, secret_access_key=secret, buckets=buckets
    )
