"""What the core needs from the world, as small protocols with written contracts: storage, the
backup log, the dump, a notifier. Adapters (``storage/``, ``pg/``, ``dump/``, ``notify/``)
implement them; ``wiring`` picks which. Nothing here imports a driver, an SDK or a framework.

Errors: an adapter turns its library's errors into the tree of ``dbbackup.errors`` inside itself
(``StorageNotFound``, ``DatabaseError``, ``NotifyError``...), so the core never sees a
library's exception types.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from dbbackup.core.seek_index import Index

# --- storage ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Folder:
    """A resolved folder: ``id`` is the backend's handle, ``path`` the human-readable path."""

    id: str
    path: str


@dataclass(frozen=True)
class StoredFile:
    id: str
    name: str
    size: int
    path: str
    modified: datetime | None = None
    md5: str | None = None


class Storage(Protocol):
    def ensure_folder(self, path: str) -> Folder:
        """Resolve ``path`` (a validated backup_folder_path), creating missing folders.
        Idempotent."""
        ...

    def list(self, folder: Folder) -> list[StoredFile]:
        """Complete files directly in ``folder`` (never in-progress uploads)."""
        ...

    def put(self, folder: Folder, name: str, chunks: Iterable[bytes]) -> StoredFile:
        """Store the bytes of ``chunks`` as ``name`` in ``folder``.

        All or nothing: the file becomes visible only after ``chunks`` is exhausted without
        raising; if iterating raises (the dump failed) or the write fails, nothing is left
        behind and the exception propagates. Raises StorageExists rather than overwrite."""
        ...

    def discard_incomplete(self, folder: Folder) -> int:
        """Remove what writes killed mid-way left in ``folder`` (never visible to ``list``); the
        number removed. Call only holding the backup lock: then no write can be in flight."""
        ...

    def open(self, file_id: str) -> Iterator[bytes]:
        """The file's bytes, streamed in chunks. Raises StorageNotFound."""
        ...

    def open_range(self, file_id: str, offset: int, length: int) -> Iterator[bytes]:
        """``length`` bytes of the file from ``offset``, streamed in chunks (a seekable backup's
        members, ``core.seek_index``). Raises StorageNotFound; StorageError when the file ends
        before ``offset + length``."""
        ...

    def stat(self, file_id: str) -> StoredFile:
        """Raises StorageNotFound when the file does not exist."""
        ...

    def delete(self, file_id: str) -> None:
        """Remove the file. Raises StorageNotFound when it does not exist."""
        ...

    def subfolder(self, folder: Folder, name: str, create: bool = True) -> Folder:
        """The folder ``name`` (one segment) inside ``folder``, created when missing. Idempotent.
        Its files are not among ``list(folder)``'s. ``create=False`` (a restore, a dry run) never
        creates it: StorageNotFound when a backend with real folders has none of that name."""
        ...


@dataclass(frozen=True)
class Target:
    """A named storage a backup is written to (``BACKUP_STORAGE`` lists them; the first is the
    primary: its copy fills ``backup_logs``' own columns)."""

    name: str  # local | google_drive | gcs | s3
    storage: Storage


@dataclass(frozen=True)
class Copy:
    """One target's copy of one backup attempt (a ``backup_copies`` row)."""

    target: str
    status: str  # success | failed
    file_id: str | None = None
    path: str | None = None
    size: int | None = None
    md5: str | None = None
    reason: str | None = None


# --- Supabase Storage's objects (core.storage_objects) ---------------------------------------


@dataclass(frozen=True)
class SourceObject:
    """An object as a bucket listing shows it."""

    bucket: str
    key: str
    size: int
    etag: str | None = None


@dataclass(frozen=True)
class ObjectHead:
    """What a HEAD of one object says: what a restore must put back besides the bytes."""

    size: int
    etag: str | None
    content_type: str | None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ManifestEntry:
    """One object of one backup (a ``storage_manifest`` row); its bytes are the blob ``sha256``."""

    bucket: str
    key: str
    size: int
    sha256: str
    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    etag: str | None = None


class ObjectStore(Protocol):
    """A project's Storage through its S3 endpoint: read by a backup, written by a restore.
    Every method raises StorageError (one line naming the endpoint, bucket or object, never a
    key); ``read`` and ``head`` StorageNotFound for a missing object."""

    @property
    def where(self) -> str:
        """The endpoint, for messages."""
        ...

    def buckets(self) -> list[str]: ...

    def objects(self, bucket: str) -> Iterator[SourceObject]:
        """Every object of ``bucket`` (not the folder placeholders a console may create)."""
        ...

    def head(self, bucket: str, key: str) -> ObjectHead: ...

    def read(self, bucket: str, key: str) -> Iterator[bytes]:
        """The object's bytes, streamed in chunks."""
        ...

    def ensure_bucket(self, bucket: str) -> bool:
        """Create ``bucket`` when it does not exist; whether it was created."""
        ...

    def write(
        self, bucket: str, key: str, chunks: Iterable[bytes], content_type: str | None, metadata: dict[str, str]
    ) -> None:
        """Store the object (replacing one of that key), streaming; all or nothing: a stream that
        raises leaves no new object."""
        ...


# --- alerts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Email:
    kind: str  # backup_failed | cleanup_failed | missed_run | size_warning | shrink_warning | drill_failed
    severity: str  # error | warning
    subject: str
    text: str
    html: str


class Notifier(Protocol):
    @property
    def name(self) -> str:
        """What the log calls it ("log", "sendgrid")."""
        ...

    def send(self, to: str, email: Email) -> None:
        """Deliver ``email`` to ``to`` or raise NotifyError (``retryable`` when a later attempt
        may succeed)."""
        ...


# --- the backup log ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupConfig:
    """The backup settings a manager keeps in ``invoice_configurations``."""

    folder_path: str
    notification_email: str | None
    enabled: bool
    # Set in the console's schedule settings (None: the deployment's own setting applies). The
    # backup names its files in ``time_zone``, the zone its Scheduler job runs in; the cleanup
    # reads the retention counts.
    time_zone: ZoneInfo | None = None
    retention_days: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None


@dataclass(frozen=True)
class JobSchedule:
    """When a scheduled job runs: a unix-cron expression in an IANA time zone."""

    cron: str
    time_zone: str


class SchedulerJobs(Protocol):
    """The scheduler's jobs by resource name (``dbbackup.scheduler``: Cloud Scheduler)."""

    def get(self, name: str) -> JobSchedule:
        """The job's schedule; SchedulerError when it cannot be read."""
        ...

    def update(self, name: str, schedule: JobSchedule) -> JobSchedule:
        """Change the job's cron and zone only; the job as it now is. SchedulerError if refused."""
        ...


@dataclass(frozen=True)
class Quota:
    """A storage account's space, as its API tells it (None: not told, e.g. unlimited)."""

    used_bytes: int | None
    limit_bytes: int | None


@runtime_checkable
class HasQuota(Protocol):
    """A storage whose API tells the account's space (Drive's about.get storageQuota)."""

    def quota(self) -> Quota: ...


@dataclass(frozen=True)
class LogRow:
    """One ``backup_logs`` row (columns in the table's order; those a query did not select, or a
    database migrated before they existed, are None)."""

    id: str
    backup_type: str | None = None
    status: str | None = None
    file_name: str | None = None
    file_size_bytes: int | None = None
    google_drive_file_id: str | None = None
    google_drive_path: str | None = None
    failure_reason: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted_at: datetime | None = None
    triggered_by: str | None = None
    md5_checksum: str | None = None
    sql_bytes: int | None = None
    size_warning: str | None = None
    schedule_time: datetime | None = None
    manifest: dict[str, Any] | None = None
    shrink_warnings: list[str] | None = None
    verified_at: datetime | None = None
    verify_status: str | None = None
    verify_detail: str | None = None
    storage_backend: str | None = None

    @classmethod
    def of(cls, row: dict[str, Any]) -> LogRow:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in row.items() if k in known}
        values["id"] = str(values["id"])
        return cls(**values)


@dataclass(frozen=True)
class AlertContext:
    """What a failure e-mail says beyond the failure itself, read when it is sent."""

    previous: LogRow | None  # the newest successful backup (its size is what this one should be near)
    consecutive_failures: int
    recipient: str | None  # backup_notification_email as it is now


@dataclass(frozen=True)
class HealthFacts:
    """The raw answers behind ``core.health.Health``."""

    last_success: LogRow | None
    previous_success: LogRow | None
    last_failure: LogRow | None
    last_size_warning: str | None
    consecutive_failures: int
    attempts_7d: int
    successes_7d: int
    attempts_30d: int
    successes_30d: int
    last_verified: LogRow | None = None


class BackupLog(Protocol):
    """``backup_logs``, the settings in ``invoice_configurations`` and the database's locks, on
    one connection. Every method raises DatabaseError (one redacted line) for a failed
    statement and ConfigError when a migration is missing."""

    def config(self) -> BackupConfig: ...

    def notification_email(self) -> str | None:
        """``backup_notification_email`` read now; None when it cannot be read (never raises)."""
        ...

    def try_lock(self) -> bool:
        """The per-database backup lock, unless a pg_dump of ours is still connected."""
        ...

    def unlock(self) -> None: ...

    def backup_lock_held(self) -> bool:
        """Whether some session holds the backup lock, without taking it."""
        ...

    def cleanup_lock(self) -> AbstractContextManager[bool]:
        """The cleanup's own lock for the block (False: another cleanup holds it)."""
        ...

    def lock_blobs_shared(self) -> None:
        """The storage-blobs lock, shared (several backups may hold it), until
        ``unlock_blobs_shared``; waits while a cleanup holds it exclusively."""
        ...

    def unlock_blobs_shared(self) -> None: ...

    def blob_collection_lock(self) -> AbstractContextManager[bool]:
        """The storage-blobs lock, exclusively, for the block (False: a backup holds it shared:
        the blobs it relies on are not in a manifest yet)."""
        ...

    def recover_stale(self) -> list[LogRow]:
        """Mark rows left in_progress as failed ("interrupted") and return them. Holding the lock only."""
        ...

    def succeeded_for_schedule(self, schedule_time: datetime) -> LogRow | None: ...

    def start(
        self, backup_type: str, file_name: str, path: str, triggered_by: str | None, schedule_time: datetime | None
    ) -> str:
        """A new in_progress row; its id."""
        ...

    def rename(self, log_id: str, file_name: str) -> None: ...

    def succeed(
        self, log_id: str, *, size: int, file_id: str, path: str, md5: str, sql_bytes: int, backend: str
    ) -> None:
        """``backend``: the storage backend that holds the file (BACKUP_STORAGE). Raises
        ConfigError when the row is no longer in_progress."""
        ...

    def fail(self, log_id: str, reason: str) -> None:
        """Record the failure, over a fresh connection when this one died; never raises."""
        ...

    def record_copies(self, log_id: str, copies: Sequence[Copy]) -> None:
        """One ``backup_copies`` row per target (a database migrated before that table only
        logs that it was skipped)."""
        ...

    def alert_context(self) -> AlertContext:
        """Read over this connection, a fresh one if it died, or defaults when the database is
        gone; DatabaseError when a statement fails."""
        ...

    def last_success(self, exclude_id: str | None = None) -> LogRow | None: ...

    def get(self, log_id: str) -> LogRow | None: ...

    def latest_successes(self, limit: int) -> list[LogRow]:
        """Up to ``limit`` successful backups whose files retention has not deleted, newest first."""
        ...

    def by_file_name(self, file_name: str, size: int | None = None) -> LogRow | None:
        """The newest successful backup of that file name; with ``size``, one of that size first
        (two folders, e.g. after the folder path changed, may each hold a file of that name)."""
        ...

    def flag_size_warning(self, log_id: str, text: str) -> None: ...

    def record_manifest(self, log_id: str, manifest: dict[str, Any]) -> None:
        """Store the attempt's manifest (``core.manifest.as_json``)."""
        ...

    def flag_shrink(self, log_id: str, lines: Sequence[str]) -> None:
        """Record the attempt's shrink warnings, one line per table."""
        ...

    def previous_success(self, exclude_id: str) -> LogRow | None:
        """The successful attempt started before ``exclude_id``, with its manifest."""
        ...

    def record_verification(self, log_id: str, status: str, detail: str) -> None:
        """A restore drill's verdict on the attempt: ``passed``, ``failed`` or ``skipped``, now.
        A ``skipped`` never replaces an earlier ``passed``/``failed``: that row is left as it was."""
        ...

    def drill_lock(self) -> AbstractContextManager[bool]:
        """The restore drill's lock for the block (False: another drill holds it)."""
        ...

    def last_verified(self) -> LogRow | None:
        """The newest attempt a drill ran on (None also on a database migrated before 009)."""
        ...

    def health_facts(self, now: datetime) -> HealthFacts: ...

    def row_statuses(self, files: Sequence[StoredFile]) -> dict[str, list[str]]:
        """Per file id, the statuses of its rows: matched by storage file id, else by name
        (a running backup's row has the name but not yet the id)."""
        ...

    def copies(self, log_id: str) -> list[Copy]:
        """The attempt's copies not deleted by retention (none recorded before migration 011)."""
        ...

    def record_storage_manifest(self, log_id: str, entries: Sequence[ManifestEntry]) -> None:
        """The attempt's Storage objects (``storage_manifest``, migration 015); ConfigError when
        the table is missing."""
        ...

    def storage_manifest(self, log_id: str) -> list[ManifestEntry]:
        """The attempt's Storage objects, by bucket and key (none for a backup without them)."""
        ...

    def last_storage_manifest(self) -> list[ManifestEntry]:
        """The newest successful backup's Storage objects (none before migration 015)."""
        ...

    def referenced_blobs(self, gone: Sequence[str] = ()) -> set[str]:
        """The blobs (sha256) a kept backup's manifest refers to: a successful backup whose file,
        in any target, is neither deleted nor one of ``gone`` (file ids a dry run would delete)."""
        ...

    def mark_deleted(self, f: StoredFile, target: str | None = None, primary: bool = True) -> int:
        """Set deleted_at on the copy's ``backup_copies`` row (with ``target``) and, for the primary
        target, on the attempt's row(s); how many rows of the primary's kind, or of copies."""
        ...


class OpenLog(Protocol):
    def __call__(self, attempts: int | None = None) -> AbstractContextManager[BackupLog]:
        """A backup log on a new connection (``attempts`` tries; None: the configured number),
        closed with the block; DatabaseUnavailable when the database cannot be reached."""
        ...


# --- the dump ----------------------------------------------------------------------------------


@dataclass
class DumpStats:
    sql_bytes: int = 0  # SQL inside the file (what gunzip gives back)
    gz_bytes: int = 0  # bytes handed to storage: the gzip file, or the age file around it
    md5: str = ""  # of those bytes
    # The manifest as counted on the SQL stream: schema.table -> (rows, bytes of its COPY data).
    tables: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Where each gzip member starts (a seekable file, core.seek_index); None: one member.
    index: Index | None = None


class Dump(Protocol):
    """One backup's compressed bytes, iterated once. Iterating raises BackupFailed when pg_dump
    fails; closing the generator stops pg_dump at once (also mid-stream). ``stats`` is complete
    when iteration ended cleanly."""

    @property
    def stats(self) -> DumpStats: ...

    def __iter__(self) -> Generator[bytes]: ...


class Dumper(Protocol):
    @property
    def suffix(self) -> str:
        """The file name's suffix for what ``dump`` writes: ``.sql.gz``, or ``.sql.gz.age`` when
        it encrypts (``core.naming``)."""
        ...

    def check_target(self) -> None:
        """ConfigError when the database URL cannot be dumped (a transaction pooler)."""
        ...

    def prepare(self) -> None:
        """Before the attempt's row is written: the dump program exists, runs and can dump this
        server (ConfigError), or the database cannot be asked (DatabaseUnavailable /
        DatabaseError). Called holding the backup lock."""
        ...

    def dump(self, log_id: str) -> AbstractContextManager[Dump]:
        """The stream for the backup whose row is ``log_id`` (its own row is patched to read
        success in the dump); everything it started ends with the block. Entering it first checks
        that every table the profile holds is readable (BackupFailed names them all)."""
        ...


# --- what the jobs read of the settings --------------------------------------------------------


class JobSettings(Protocol):
    """The settings the jobs read (``dbbackup.settings.Settings`` has them all)."""

    @property
    def storage(self) -> str:
        """The primary target's name (``BACKUP_STORAGE``'s first)."""
        ...

    @property
    def timezone(self) -> ZoneInfo: ...
    @property
    def environment(self) -> str: ...
    @property
    def organization(self) -> str: ...
    @property
    def size_warning_percent(self) -> int: ...
    @property
    def shrink_warning_percent(self) -> int: ...
    @property
    def shrink_min_rows(self) -> int: ...
    @property
    def keep_weekly(self) -> int: ...
    @property
    def keep_monthly(self) -> int: ...
    @property
    def retention_days(self) -> int: ...
    @property
    def keep_min(self) -> int: ...
    @property
    def max_age_hours(self) -> int: ...
    @property
    def secrets(self) -> tuple[str, ...]: ...
