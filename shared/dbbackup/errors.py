"""The one error tree. Every error's ``str()`` is one line a person can act on and never
contains a secret. What a class means to a caller is data on the class: ``exit_code`` for the
CLI, ``http_status`` and ``answer`` (the JSON answer's ``status`` word) for the functions; the
CLI and the HTTP layer each read it in one place instead of keeping their own mapping.
"""

from __future__ import annotations

from datetime import datetime


class BackupError(Exception):
    """Base class: something the operator must hear about in one readable line."""

    exit_code: int = 1
    http_status: int = 500
    answer: str = "failed"  # the ``status`` word of the JSON answer
    cli_label: str = "failed"  # dbbackup: <label>: <message>


class ConfigError(BackupError):
    """The deployment is misconfigured (env vars, binaries, settings)."""

    exit_code = 2
    cli_label = "error"


class UsageError(BackupError):
    """The caller asked for something malformed."""

    exit_code = 2
    http_status = 400
    cli_label = "error"


class InvalidInput(UsageError):
    """A request value the API does not accept; ``field`` names it (the 400 answer's ``field``)."""

    def __init__(self, message: str, field: str = "value") -> None:
        super().__init__(message)
        self.field = field


class SettingError(InvalidInput):
    """A console setting's value (or body) that the setting does not accept."""


class QueryError(InvalidInput):
    """A console log filter the whitelists refuse."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field)


class LockBusy(BackupError):
    """Another backup (or cleanup) holds the per-database lock."""

    http_status = 409
    answer = "busy"
    cli_label = "busy"


class DatabaseUnavailable(BackupError):
    """The database could not be reached (after retries)."""


class DatabaseError(BackupError):
    """A statement failed (permission, lost connection, missing table): the driver's error as
    one redacted line, so nothing above the SQL layer sees the driver's exception types."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"database error: {detail}")
        self.detail = detail


class BackupFailed(BackupError):
    """The backup ran and failed; its log row says why."""

    def __init__(self, reason: str, log_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.log_id = log_id


class RestoreFailed(BackupFailed):
    """psql stopped on an SQL error (or the file was incomplete); the target was rolled back."""


class StorageError(BackupError):
    """A storage backend operation failed."""

    http_status = 502


class StorageNotFound(StorageError):
    """The file or folder does not exist in storage."""

    http_status = 404


class StorageExists(StorageError):
    """A file of that name already exists; backups never overwrite one another."""


class StorageRetained(StorageError):
    """The file may not be deleted yet: a bucket retention policy (GCS) or an Object Lock (S3)
    holds it until ``until``. Expected for a retention-locked copy, so a cleanup reports it
    rather than alerting on it as a malfunction."""

    http_status = 409

    def __init__(self, message: str, until: datetime | None = None) -> None:
        super().__init__(message)
        self.until = until


class NotifyError(BackupError):
    """Sending an alert failed. ``retryable``: a later attempt may succeed (rate limit, outage)."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class SchedulerError(BackupError):
    """Cloud Scheduler refused or could not answer a read or an update of a backup job."""

    http_status = 502


class InvalidToken(BackupError):
    """Raised by a token verifier: not a token we accept (signature, expiry, audience...)."""

    http_status = 401


class AuthError(BackupError):
    """A refused request: 401 (who are you?) or 403 (not you); ``str()`` is the reason we log
    (never the token). The status is per instance: the same check can end either way."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.http_status = status

    @property
    def status(self) -> int:
        return self.http_status
