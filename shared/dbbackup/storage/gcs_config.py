"""BACKUP_GCS_* settings (``BACKUP_STORAGE=gcs``), parsed without importing google-cloud-storage.

Credentials are the function's own service account (Application Default Credentials); no key is
configured. ``STORAGE_EMULATOR_HOST`` (the client library's own variable) points the backend at
an emulator and sends no credentials at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from dbbackup.errors import ConfigError
from dbbackup.storage.object_keys import int_from_env, prefix_from_env

UPLOAD_GRANULE = 256 * 1024  # GCS: every chunk of a resumable upload but the last is a multiple of 256 KiB
DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024  # as Drive's: memory follows it (three targets stay under 150 MB, make bench)
MAX_CHUNK_SIZE = 1024 * 1024 * 1024


@dataclass(frozen=True)
class GcsConfig:
    bucket: str
    prefix: str | None = None  # None: the configured backup_folder_path (storage/object_keys.py)
    chunk_size: int = DEFAULT_CHUNK_SIZE
    emulator_host: str | None = None  # STORAGE_EMULATOR_HOST: anonymous, plain http allowed
    project: str | None = None  # only for messages and the emulator; the bucket names the project
    timeout_seconds: float = 60.0  # one request
    retry_seconds: float = 120.0  # how long a failing request (a chunk) is retried with backoff

    @property
    def secrets(self) -> tuple[str, ...]:
        return ()  # no key: the runtime service account's tokens never pass through the settings


def gcs_config_from_env(env: Mapping[str, str]) -> GcsConfig:
    bucket = env.get("BACKUP_GCS_BUCKET", "").strip()
    if not bucket:
        raise ConfigError("BACKUP_GCS_BUCKET is not set (the bucket backups are written to)")
    if bucket.startswith("gs://") or not 3 <= len(bucket) <= 222 or not all(c.isalnum() or c in ".-_" for c in bucket):
        raise ConfigError(f"BACKUP_GCS_BUCKET={bucket!r}: expected a bucket name (letters, digits, . - _; no gs://)")
    chunk = int_from_env(env, "BACKUP_GCS_CHUNK_SIZE", DEFAULT_CHUNK_SIZE, UPLOAD_GRANULE, MAX_CHUNK_SIZE)
    if chunk % UPLOAD_GRANULE:
        raise ConfigError(f"BACKUP_GCS_CHUNK_SIZE={chunk}: must be a multiple of 262144 (256 KiB)")
    emulator = env.get("STORAGE_EMULATOR_HOST", "").strip().rstrip("/") or None
    if emulator is not None:
        if "://" not in emulator:
            emulator = f"http://{emulator}"
        if not urlsplit(emulator).hostname:
            raise ConfigError(f"STORAGE_EMULATOR_HOST={emulator!r}: expected host:port or http://host:port")
    return GcsConfig(
        bucket=bucket,
        prefix=prefix_from_env(env, "BACKUP_GCS_PREFIX"),
        chunk_size=chunk,
        emulator_host=emulator,
        project=env.get("GOOGLE_CLOUD_PROJECT", "").strip() or None,
    )
