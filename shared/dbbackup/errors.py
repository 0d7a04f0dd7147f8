"""The error vocabulary shared by the CLI and the HTTP functions.

Every error's ``str()`` is one line a person can act on and never contains a secret; the CLI
maps these classes to exit codes and the functions to HTTP statuses, each in one place.
"""

from __future__ import annotations


class BackupError(Exception):
    """Base class: something the operator must hear about in one readable line."""


class ConfigError(BackupError):
    """The deployment is misconfigured (env vars, binaries, settings). CLI exit 2."""


class UsageError(BackupError):
    """The caller asked for something malformed. CLI exit 2, HTTP 400."""


class LockBusy(BackupError):
    """Another backup holds the per-database lock. HTTP 409."""


class DatabaseUnavailable(BackupError):
    """The database could not be reached (after retries)."""


class BackupFailed(BackupError):
    """The backup ran and failed; its log row says why. CLI exit 1, HTTP 500."""

    def __init__(self, reason: str, log_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.log_id = log_id


class StorageError(BackupError):
    """A storage backend operation failed."""


class StorageNotFound(StorageError):
    """The file or folder does not exist in storage."""


class StorageExists(StorageError):
    """A file of that name already exists; backups never overwrite one another."""
