"""What the two object stores (``s3``, ``gcs``) share: how an object's key is made from the
prefix, the folder path and the file name, and the parsing of their settings.

A bucket has no folders. A backup's key is ``<prefix>/<file name>`` where ``<prefix>`` is
``BACKUP_S3_PREFIX`` / ``BACKUP_GCS_PREFIX`` when set, else the configured ``backup_folder_path``
(the ``Folder`` the job resolved). A set prefix *replaces* the folder path rather than nesting
it: the bucket is the deployment's (Terraform's) and so is where in it backups go, so a manager
changing the folder path in the console moves the Drive copies but not the locked bucket's, and
retention keeps seeing every older copy under the one prefix.
"""

from __future__ import annotations

from collections.abc import Mapping

from dbbackup.core import folder_path
from dbbackup.errors import ConfigError, StorageError

MAX_KEY_BYTES = 1024  # S3 and GCS both limit an object name to 1024 bytes of UTF-8


def prefix_from_env(env: Mapping[str, str], variable: str) -> str | None:
    """The prefix without leading/trailing slashes, or None (use the folder path). Validated like
    a folder path: no empty, '.' or '..' segment, no control character."""
    text = env.get(variable, "").strip()
    if not text:
        return None
    try:
        segments = folder_path.split(text)
    except ConfigError as exc:
        raise ConfigError(f"{variable}={text!r}: {str(exc).replace('backup_folder_path', 'the prefix')}") from None
    if text.startswith("id:"):
        raise ConfigError(f"{variable}={text!r}: expected a path such as backups/production")
    return "/".join(segments)


def int_from_env(env: Mapping[str, str], variable: str, default: int, low: int, high: int) -> int:
    text = env.get(variable, "").strip()
    if not text:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise ConfigError(f"{variable}={text!r}: expected a whole number from {low} to {high}")
    return int(text)


def folder_prefix(prefix: str | None, path: str) -> str:
    """The key prefix of the folder ``path`` (a backup_folder_path, validated here as the
    contract asks even when a configured prefix replaces it)."""
    segments = folder_path.split(path)
    return prefix if prefix is not None else "/".join(segments)


def object_key(folder_id: str, name: str) -> str:
    if not name or "/" in name or name.startswith(".") or any(ord(c) < 32 for c in name):
        raise StorageError(f"invalid file name {name!r}")
    key = f"{folder_id}/{name}"
    if len(key.encode()) > MAX_KEY_BYTES:
        raise StorageError(f"object name {key[:60]!r}... is longer than {MAX_KEY_BYTES} bytes")
    return key


def content_type(name: str) -> str:
    # An .age file is ciphertext: a browser must download it, not try to gunzip it.
    return "application/gzip" if name.endswith(".gz") else "application/octet-stream"
