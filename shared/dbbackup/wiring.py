"""The composition root: the only module that chooses and builds adapters (storage backend,
notifier, the backup log, the dump runner) from ``Settings``. Jobs receive what they use;
nothing below this module knows which backend or notifier is configured."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from dbbackup.auth.authenticator import Authenticator, RoleDirectory
from dbbackup.auth.config import AuthConfig
from dbbackup.core.alerts import Alerter
from dbbackup.core.backup import BackupJob
from dbbackup.core.cleanup import CleanupJob
from dbbackup.core.health import Health, read_health
from dbbackup.core.ports import Email, Notifier, ObjectStore, OpenLog, SchedulerJobs, Storage, Target
from dbbackup.core.storage_objects import BlobStore, StorageRestore, restore_objects
from dbbackup.dump.age import Identities, load_identities, parse_identities
from dbbackup.dump.runner import PgDumper
from dbbackup.dump.stream import Progress
from dbbackup.errors import BackupError, ConfigError, StorageError, UsageError
from dbbackup.memory import release_large_buffers
from dbbackup.notify.log import LogNotifier
from dbbackup.pg import backup_log
from dbbackup.redact import remember_secrets
from dbbackup.restore.drill import Drill, DrillConfig, DrillResult
from dbbackup.restore.sources import UUID_RE, Source, resolve
from dbbackup.secret_manager import resolve_secrets
from dbbackup.settings import Settings
from dbbackup.storage.dryrun import DryRunStorage

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def storage_named(settings: Settings, name: str) -> Storage:
    """The backend called ``name`` (one of ``settings.STORAGE_BACKENDS``), built from its settings.
    Each SDK is imported here, in its branch, so a deployment loads only the ones it uses."""
    if name == "local":
        from dbbackup.storage.local import LocalStorage

        return LocalStorage(settings.local_root)
    if name == "google_drive" and settings.google_drive is not None:
        from dbbackup.storage.drive import DriveStorage

        return DriveStorage(settings.google_drive)
    if name == "gcs" and settings.gcs is not None:
        from dbbackup.storage.gcs import GcsStorage

        return GcsStorage(settings.gcs)
    if name == "s3" and settings.s3 is not None:
        from dbbackup.storage.s3 import S3Storage

        return S3Storage(settings.s3)
    raise ConfigError(f"BACKUP_STORAGE={name!r} is not supported")


def make_storage(settings: Settings, name: str | None = None) -> Storage:
    """The backend ``name`` (default: the primary target)."""
    return storage_named(settings, name or settings.storage)


def make_targets(settings: Settings) -> list[Target]:
    """Every target of BACKUP_STORAGE, in order (the first is the primary)."""
    return [Target(name, storage_named(settings, name)) for name in settings.storage_targets]


def make_objects(settings: Settings) -> ObjectStore | None:
    """The project's Storage (BACKUP_SUPABASE_STORAGE=true), read with each backup."""
    if settings.supabase_storage is None:
        return None
    from dbbackup.storage.s3_objects import SupabaseObjects

    return SupabaseObjects(settings.supabase_storage)


def make_notifier(settings: Settings) -> Notifier:
    if not settings.sendgrid_api_key:
        return LogNotifier()
    # Imported here: only a deployment with a key loads the SendGrid client.
    from dbbackup.notify.sendgrid import SendGridNotifier

    assert settings.alert_from_email  # Settings refuses a key without a sender
    return SendGridNotifier(settings.sendgrid_api_key, settings.alert_from_email, host=settings.sendgrid_host)


def make_webhook(settings: Settings) -> Notifier | None:
    """The second alert channel, ALERT_WEBHOOK_URL, when set."""
    if not settings.webhook_url:
        return None
    from dbbackup.notify.webhook import WebhookNotifier

    return WebhookNotifier(settings.webhook_url)


class _LazyNotifier:
    """Builds the configured notifier at the first alert, as most runs send none: a backup never
    waits for (or fails on) a mail client it does not use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._notifier: Notifier | None = None

    def _built(self) -> Notifier:
        if self._notifier is None:
            self._notifier = make_notifier(self.settings)
        return self._notifier

    @property
    def name(self) -> str:
        return self._built().name

    def send(self, to: str, email: Email) -> None:
        self._built().send(to, email)


def alerter_for(
    settings: Settings,
    notifier: Notifier | None = None,
    sleep: Callable[[float], None] = time.sleep,
    delays: Sequence[float] = (1.0, 2.0),
) -> Alerter:
    return Alerter(
        notifier or _LazyNotifier(settings),
        fallback=settings.alert_fallback_email,
        secrets=settings.secrets,
        sleep=sleep,
        delays=delays,
        webhook=make_webhook(settings),
    )


def environment(env: Mapping[str, str]) -> dict[str, str]:
    """The environment with every ``*_SECRET`` variable read from Secret Manager (the functions)."""
    return resolve_secrets(env)


IDENTITY_VARIABLE = "BACKUP_AGE_IDENTITY"


def age_identities(path: str | None, env: Mapping[str, str]) -> Identities | None:
    """The identities to decrypt with, where a person restores: ``--identity FILE``, else
    BACKUP_AGE_IDENTITY (a file, or the key text itself), else BACKUP_AGE_IDENTITY_SECRET (read
    from Secret Manager). None when none is given; the backup side never calls this."""
    if path:
        return load_identities(path, "--identity")
    # Not one of the functions' SECRET_VARIABLES: a backup function never reads an identity.
    env = resolve_secrets(env, variables=(IDENTITY_VARIABLE,))
    value = env.get("BACKUP_AGE_IDENTITY", "").strip()
    if not value:
        return None
    if "AGE-SECRET-KEY-" in value.upper():
        return parse_identities(value, IDENTITY_VARIABLE)
    if not os.path.isfile(value):
        # Never quote the value: it may be a key pasted in a shape we do not recognise.
        raise UsageError(
            f"{IDENTITY_VARIABLE} is neither an age identity (AGE-SECRET-KEY-1…) nor the path of a readable"
            " identity file"
        )
    return load_identities(value, IDENTITY_VARIABLE)


def open_log(settings: Settings) -> OpenLog:
    return backup_log.opener(
        settings.database_url, settings.connect_attempts, settings.secrets, settings.notification_email
    )


def backup_job(
    settings: Settings,
    storage: Storage | None = None,
    progress: Progress | None = None,
    clock: Clock = utc_now,
    alerter: Alerter | None = None,
) -> BackupJob:
    remember_secrets(settings.secrets)  # every later log line is redacted with them (JSON lines too)
    dumper = PgDumper(
        settings.database_url,
        settings.profile,
        pg_dump_path=settings.pg_dump_path,
        gzip_level=settings.gzip_level,
        seekable=settings.seekable,
        part_size=settings.seekable_part_mb << 20,
        secrets=settings.secrets,
        progress=progress,
        connect_attempts=settings.connect_attempts,
        age_recipients=settings.age_recipients,
    )
    if storage is None and len(settings.storage_targets) > 1:
        release_large_buffers()  # one upload thread per target (dbbackup.memory says why)
    return BackupJob(
        settings,
        open_log(settings),
        storage or make_targets(settings),
        dumper,
        alerter or alerter_for(settings),
        clock,
        objects=make_objects(settings),
        buckets=settings.supabase_storage.buckets if settings.supabase_storage else (),
    )


def cleanup_job(
    settings: Settings,
    storage: Storage | None = None,
    alerter: Alerter | None = None,
    clock: Clock = utc_now,
) -> CleanupJob:
    remember_secrets(settings.secrets)
    return CleanupJob(
        settings,
        open_log(settings),
        storage or make_targets(settings),
        alerter or alerter_for(settings),
        clock,
        dry_run_storage=DryRunStorage,
        storage_blobs=settings.supabase_storage is not None,
    )


STORAGE_KEY_VARIABLES = ("SUPABASE_S3_ACCESS_KEY_ID", "SUPABASE_S3_SECRET_ACCESS_KEY")


def storage_restore(
    settings: Settings, env: Mapping[str, str], log_id: str, bucket: str | None = None, endpoint: str | None = None
) -> StorageRestore:
    """``dbbackup storage-restore``: the backup's Storage objects back into the project that
    SUPABASE_S3_* (and ``endpoint``) name, the same one or another; BACKUP_SUPABASE_STORAGE need
    not be on (a new project restores into itself)."""
    from dbbackup.storage.s3_config import supabase_s3_config_from_env
    from dbbackup.storage.s3_objects import SupabaseObjects

    if not UUID_RE.match(log_id):
        raise UsageError(f"{log_id}: not a backup_logs id")
    config = supabase_s3_config_from_env(resolve_secrets(env, variables=STORAGE_KEY_VARIABLES), endpoint)
    remember_secrets(settings.secrets + config.secrets)
    with open_log(settings)() as log:
        row = log.get(log_id)
        if row is None:
            raise UsageError(f"no backup {log_id!r} in backup_logs")
        if row.status != "success":
            raise UsageError(
                f"backup {log_id} is {row.status}, not a successful backup: it recorded no Storage objects"
                " (choose a successful one: `dbbackup status`)"
            )
        entries = log.storage_manifest(log_id)
    if not entries:
        raise UsageError(f"backup {log_id} holds no Storage objects (was BACKUP_SUPABASE_STORAGE on?)")
    if bucket is not None:
        entries = [e for e in entries if e.bucket == bucket]
        if not entries:
            raise UsageError(f"backup {log_id} holds no object of bucket {bucket!r}")
    # The blobs are beside the backup's own file: the folder it was written to, not today's.
    folder = (row.google_drive_path or "").rsplit("/", 1)[0]
    blobs = BlobStore()
    unreachable: list[str] = []
    for target in make_targets(settings):
        try:
            # Read-only: no storage-blobs folder is created by a restore.
            blobs.add(target, target.storage.ensure_folder(folder), create=False)
        except BackupError as exc:
            unreachable.append(f"{target.name}: {exc}")  # another target may hold the blobs
    if not blobs.folders:
        raise StorageError(f"no target holds the Storage blobs of backup {log_id}: {'; '.join(unreachable)}")
    return restore_objects(log_id, entries, SupabaseObjects(config), blobs.open)


def drill(
    settings: Settings,
    storage: Storage | None = None,
    alerter: Alerter | None = None,
    clock: Clock = utc_now,
    task: str = "weekly restore drill (verify_backup)",
) -> Drill:
    """The restore drill (``verify_backup``, or the console's "Verify now": ``task`` says which in
    a failure's alert) with the configured log, storage and alerts."""
    from dbbackup.core import messages

    remember_secrets(settings.secrets)

    def alert(result: DrillResult) -> Email:
        return messages.drill_failure_email(
            clock(),
            settings.timezone,
            settings.environment,
            backup_id=result.backup_log_id or "",
            file_name=result.file_name or "",
            target=result.target or "(not started)",
            detail=result.detail,
            organization=settings.organization,
            task=task,
        )

    config = DrillConfig(
        settings.database_url, settings.verify_database_url, settings.verify_max_sql_bytes, settings.secrets
    )
    return Drill(
        config,
        open_log(settings),
        (lambda name: storage) if storage is not None else (lambda name: storage_named(settings, name)),
        settings.storage_targets,
        lambda: age_identities(None, settings.identity_env),
        alerter or alerter_for(settings),
        alert,
    )


def health(settings: Settings, now: datetime | None = None) -> Health:
    """Backup health now (``dbbackup status``, ``GET /status``): read-only, never alerts."""
    with open_log(settings)() as log:
        return read_health(log, now or utc_now(), settings.max_age_hours)


def resolve_source(
    source: str, settings_loader: Callable[[], Settings] = Settings.from_env, from_target: str | None = None
) -> Source:
    """A backup SOURCE (a file, a backup_logs id, ``latest``) with the configured log and storage
    targets; ``from_target`` reads the copy of that target only (``--from``)."""

    def log_and_storage() -> tuple[OpenLog, Callable[[str], Storage], tuple[str, ...]]:
        settings = settings_loader()
        return open_log(settings), lambda name: storage_named(settings, name), settings.storage_targets

    return resolve(source, log_and_storage, from_target)


def scheduler_jobs(settings: Settings) -> SchedulerJobs | None:
    """The Cloud Scheduler jobs the console's schedule settings update; None where none is
    configured (a local run: the settings are stored only)."""
    if settings.scheduler_jobs is None:
        return None
    from dbbackup.scheduler import CloudSchedulerJobs

    return CloudSchedulerJobs(settings.scheduler_jobs.endpoint)


def authenticator(config: AuthConfig, audiences: list[str], roles: RoleDirectory) -> Authenticator:
    """The verifiers the configuration asks for: Google's for the scheduler, Supabase's for users."""
    from dbbackup.auth.google import GoogleIdTokenVerifier
    from dbbackup.auth.supabase import SupabaseVerifier

    users = None
    if config.supabase_jwt_secret or config.supabase_jwks_url:
        users = SupabaseVerifier(config.supabase_jwt_secret, config.supabase_jwks_url, config.supabase_issuer)
    return Authenticator(config, GoogleIdTokenVerifier(audiences, config.google_certs_url), users, roles)
