"""Settings, read from the environment once and validated with messages naming the variable."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg.conninfo

from dbbackup.auth.config import AuthConfig, auth_config_from_env
from dbbackup.core import seek_index
from dbbackup.core.alerts import is_email  # the one address check, shared with the recipient read from the database
from dbbackup.core.messages import DEFAULT_ORGANIZATION
from dbbackup.dump.age import parse_recipients
from dbbackup.dump.profiles import DumpProfile, profile_from_env
from dbbackup.errors import ConfigError
from dbbackup.pg.conninfo import check_url
from dbbackup.redact import redact
from dbbackup.restore.targets import RestoreTarget, parse_restore_targets
from dbbackup.storage.drive_config import DriveConfig, drive_config_from_env
from dbbackup.storage.gcs_config import GcsConfig, gcs_config_from_env
from dbbackup.storage.s3_config import (
    S3Config,
    SupabaseS3Config,
    s3_config_from_env,
    storage_enabled,
    supabase_s3_config_from_env,
)

STORAGE_BACKENDS = ("local", "google_drive", "gcs", "s3")


SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _check_database_url(url: str) -> None:
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise ConfigError("DATABASE_URL is not a valid PostgreSQL URL or conninfo") from None
    port = str(params.get("port", "5432"))
    if not all(p.isdigit() and 0 < int(p) < 65536 for p in port.split(",")):
        raise ConfigError(f"DATABASE_URL has an invalid port {port!r}")
    sslmode = params.get("sslmode")
    if sslmode is not None and sslmode not in SSLMODES:
        raise ConfigError(f"DATABASE_URL sslmode={sslmode!r}: expected one of {', '.join(SSLMODES)}")
    check_url(url)  # Supabase's shared pooler wants the user postgres.<project-ref>


def storage_targets_from_env(env: Mapping[str, str]) -> tuple[str, ...]:
    """BACKUP_STORAGE: one backend, or several separated by commas (one dump, a copy in each)."""
    text = env.get("BACKUP_STORAGE", "local")
    names = tuple(n.strip() for n in text.split(",")) if text.strip() else ("local",)
    for name in names:
        if name not in STORAGE_BACKENDS:
            shown = name or "(empty)"
            raise ConfigError(
                f"BACKUP_STORAGE={text.strip()!r}: {shown!r} is not a backend; expected one or more of"
                f" {', '.join(STORAGE_BACKENDS)}, separated by commas"
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"BACKUP_STORAGE={text.strip()!r} names a backend twice")
    return names


def timezone_from_env(env: Mapping[str, str]) -> ZoneInfo:
    """BACKUP_TIMEZONE (default UTC): the zone of file names, alerts and the console's times."""
    name = env.get("BACKUP_TIMEZONE", "UTC").strip() or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"BACKUP_TIMEZONE={name!r} is not an IANA time zone name (e.g. Europe/Berlin)") from None


def _positive_int(env: Mapping[str, str], name: str, default: int, low: int = 1, high: int = 100_000) -> int:
    text = env.get(name, "").strip() or str(default)
    if not text.isdigit() or not low <= int(text) <= high:
        raise ConfigError(f"{name}={text!r}: expected a whole number from {low} to {high}")
    return int(text)


def _email(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip() or None
    if value is not None and not is_email(value):
        raise ConfigError(f"{name}={value!r} is not an e-mail address")
    return value


IDENTITY_VARIABLES = ("BACKUP_AGE_IDENTITY", "BACKUP_AGE_IDENTITY_SECRET", "SECRET_MANAGER_ENDPOINT")


def default_verify_max_sql_bytes() -> int:
    """A quarter of this container's memory (Cloud Functions' /tmp is memory, and the drill's
    server, its data directory and the restore share it), else 256 MiB."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        limit = "max"
    return int(limit) // 4 if limit.isdigit() else 256 << 20


def _verify_url(env: Mapping[str, str]) -> str | None:
    url = env.get("VERIFY_DATABASE_URL", "").strip() or None
    if url is not None:
        try:
            psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError:
            raise ConfigError("VERIFY_DATABASE_URL is not a valid PostgreSQL URL or conninfo") from None
    return url


@dataclass(frozen=True)
class _Alerting:
    retention_days: int
    keep_min: int
    max_age_hours: int
    size_warning_percent: int
    shrink_warning_percent: int
    shrink_min_rows: int
    keep_weekly: int
    keep_monthly: int
    environment: str
    sendgrid_api_key: str | None
    sendgrid_host: str | None
    alert_from_email: str | None
    alert_fallback_email: str | None
    organization: str
    webhook_url: str | None


def _webhook_url(env: Mapping[str, str]) -> str | None:
    """ALERT_WEBHOOK_URL: https, or http to this machine only (a local relay or a test's fake);
    its path usually holds a token, so it is a secret and never printed."""
    url = env.get("ALERT_WEBHOOK_URL", "").strip() or None
    if url is None:
        return None
    parts = urlsplit(url)
    try:
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        host = None
    if not host or parts.scheme not in ("https", "http"):
        raise ConfigError("ALERT_WEBHOOK_URL is not an http(s):// URL")
    if parts.scheme == "http" and host not in ("localhost", "127.0.0.1", "::1"):
        raise ConfigError("ALERT_WEBHOOK_URL must be https:// (http:// only for localhost)")
    return url


def _retention_and_alerts(env: Mapping[str, str]) -> _Alerting:
    """The retention, monitoring and alert variables (docs/operations.md "Retention and alerts")."""
    key = env.get("SENDGRID_API_KEY", "").strip() or None
    sender = _email(env, "ALERT_FROM_EMAIL")
    if key and not sender:
        # SendGrid refuses mail from an unverified sender; better to say so now than at 1 a.m.
        raise ConfigError("ALERT_FROM_EMAIL is not set (required with SENDGRID_API_KEY: a verified sender)")
    host = env.get("SENDGRID_API_HOST", "").strip().rstrip("/") or None
    if host and not host.startswith(("https://", "http://")):
        raise ConfigError(f"SENDGRID_API_HOST={host!r}: expected an http(s):// URL")
    environment = " ".join(env.get("BACKUP_ENVIRONMENT", "").split()) or "production"
    if len(environment) > 100:
        raise ConfigError("BACKUP_ENVIRONMENT is longer than 100 characters")
    organization = " ".join(env.get("ALERT_ORGANIZATION", "").split()) or DEFAULT_ORGANIZATION
    if len(organization) > 100:
        raise ConfigError("ALERT_ORGANIZATION is longer than 100 characters")
    return _Alerting(
        retention_days=_positive_int(env, "BACKUP_RETENTION_DAYS", 15, high=36_500),
        keep_min=_positive_int(env, "BACKUP_KEEP_MIN", 3, high=10_000),
        max_age_hours=_positive_int(env, "BACKUP_MAX_AGE_HOURS", 26),
        size_warning_percent=_positive_int(env, "BACKUP_SIZE_WARNING_PERCENT", 50, low=0, high=100),
        shrink_warning_percent=_positive_int(env, "BACKUP_SHRINK_WARNING_PERCENT", 50, low=0, high=100),
        shrink_min_rows=_positive_int(env, "BACKUP_SHRINK_MIN_ROWS", 1000, low=0, high=10**12),
        keep_weekly=_positive_int(env, "BACKUP_KEEP_WEEKLY", 0, low=0, high=5_000),
        keep_monthly=_positive_int(env, "BACKUP_KEEP_MONTHLY", 0, low=0, high=1_200),
        environment=environment,
        sendgrid_api_key=key,
        sendgrid_host=host,
        alert_from_email=sender,
        alert_fallback_email=_email(env, "ALERT_FALLBACK_EMAIL"),
        organization=organization,
        webhook_url=_webhook_url(env),
    )


_JOB_NAME = re.compile(r"^projects/[^/\s]+/locations/[^/\s]+/jobs/[A-Za-z0-9_-]{1,500}$")


@dataclass(frozen=True)
class SchedulerJobNames:
    """SCHEDULER_BACKUP_JOB and SCHEDULER_CLEANUP_JOB (``projects/P/locations/L/jobs/J``), and
    SCHEDULER_ENDPOINT (Google's endpoint when unset; tests point it at a fake)."""

    backup: str
    cleanup: str
    endpoint: str | None = None


def scheduler_jobs_from_env(env: Mapping[str, str]) -> SchedulerJobNames | None:
    names = {
        "SCHEDULER_BACKUP_JOB": env.get("SCHEDULER_BACKUP_JOB", "").strip(),
        "SCHEDULER_CLEANUP_JOB": env.get("SCHEDULER_CLEANUP_JOB", "").strip(),
    }
    if not any(names.values()):
        return None
    for var, name in names.items():
        if not _JOB_NAME.match(name):
            raise ConfigError(
                f"{var}={name!r}: expected projects/PROJECT/locations/REGION/jobs/NAME (set both or neither)"
            )
    endpoint = env.get("SCHEDULER_ENDPOINT", "").strip() or None
    return SchedulerJobNames(names["SCHEDULER_BACKUP_JOB"], names["SCHEDULER_CLEANUP_JOB"], endpoint)


@dataclass(frozen=True)
class Settings:
    database_url: str = field(repr=False)
    storage: str = "local"  # the primary target: its copy fills backup_logs' own columns
    # BACKUP_STORAGE as listed: every target one dump is written to, the primary first.
    storage_targets: tuple[str, ...] = ("local",)
    local_root: Path = Path("backups")
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    gzip_level: int = 1
    # A gzip member per section / large table and an index of them (core.seek_index); off: one
    # member, as files were before (BACKUP_SEEKABLE=off, the bench's reference).
    seekable: bool = True
    # A large table's rows are cut into parts of this many MiB of SQL (BACKUP_SEEKABLE_PART_MB):
    # restore --jobs loads the parts of one table side by side.
    seekable_part_mb: int = seek_index.PART_SIZE >> 20
    pg_dump_path: str | None = None
    connect_attempts: int = 3
    # Retention, monitoring and alerts (see _retention_and_alerts for the variables).
    retention_days: int = 15
    keep_min: int = 3
    max_age_hours: int = 26
    size_warning_percent: int = 50
    shrink_warning_percent: int = 50
    shrink_min_rows: int = 1000
    keep_weekly: int = 0  # BACKUP_KEEP_WEEKLY: also keep the newest backup of each of the last N ISO weeks
    keep_monthly: int = 0  # BACKUP_KEEP_MONTHLY: ... and of each of the last N calendar months
    environment: str = "production"
    sendgrid_api_key: str | None = field(default=None, repr=False)
    sendgrid_host: str | None = None
    alert_from_email: str | None = None
    alert_fallback_email: str | None = None
    organization: str = DEFAULT_ORGANIZATION
    notification_email: str | None = None  # BACKUP_NOTIFICATION_EMAIL: replaces the spec's default recipient
    webhook_url: str | None = field(default=None, repr=False)
    # GOOGLE_DRIVE_* (storage/drive_config.py), set when storage is google_drive; holds keys.
    google_drive: DriveConfig | None = field(default=None, repr=False)
    # BACKUP_GCS_* (storage/gcs_config.py), set when storage is gcs; holds no key (the service account).
    gcs: GcsConfig | None = None
    # BACKUP_S3_* and AWS_* (storage/s3_config.py), set when storage is s3; holds the secret key.
    s3: S3Config | None = field(default=None, repr=False)
    # BACKUP_SUPABASE_STORAGE=true: SUPABASE_S3_* (storage/s3_config.py); holds the secret key.
    supabase_storage: SupabaseS3Config | None = field(default=None, repr=False)
    # AUTH_MODE, SCHEDULER_*, SUPABASE_*, ALLOWED_ORIGINS... (auth/config.py); holds the JWT secret.
    auth: AuthConfig | None = field(default=None, repr=False)
    # BACKUP_PROFILE / BACKUP_EXCLUDE_TABLES (dump/profiles.py): what a backup holds.
    profile: DumpProfile = field(default_factory=DumpProfile)
    # BACKUP_AGE_RECIPIENTS: age public keys every backup is encrypted to (none: plain .sql.gz).
    age_recipients: tuple[str, ...] = ()
    # The restore drill (verify_backup): its scratch database, the embedded server's size limit,
    # and where an identity for encrypted backups comes from (wiring.age_identities reads it).
    verify_database_url: str | None = field(default=None, repr=False)
    verify_max_sql_bytes: int = 256 << 20
    identity_env: dict[str, str] = field(default_factory=dict, repr=False)
    # RESTORE_TARGETS, as written: where the console may restore (restore/targets.py); the URLs
    # hold passwords. Parsed only where it is used (the console's restore routes), so a bad value
    # never stops a backup, a cleanup or a drill.
    restore_targets_text: str = field(default="", repr=False)
    # The console's schedule settings apply to these Cloud Scheduler jobs (None: stored only).
    scheduler_jobs: SchedulerJobNames | None = None

    def __repr__(self) -> str:
        return (
            f"Settings(database_url={redact(self.database_url)!r}, storage={self.storage!r}, "
            f"local_root={str(self.local_root)!r}, timezone={self.timezone.key!r}, "
            f"gzip_level={self.gzip_level})"
        )

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in output (for redaction)."""
        try:
            password = psycopg.conninfo.conninfo_to_dict(self.database_url).get("password")
        except psycopg.ProgrammingError:
            password = None
        found: tuple[str, ...] = (str(password),) if password else ()
        found += (self.sendgrid_api_key,) if self.sendgrid_api_key else ()
        found += (self.webhook_url,) if self.webhook_url else ()
        if self.verify_database_url:
            try:
                scratch = psycopg.conninfo.conninfo_to_dict(self.verify_database_url).get("password")
            except psycopg.ProgrammingError:
                scratch = None
            found += (self.verify_database_url,) + ((str(scratch),) if scratch else ())
        found += self.auth.secrets if self.auth else ()
        with contextlib.suppress(ConfigError):  # a bad value is the restore routes' to report
            found += tuple(s for t in self.restore_targets() for s in t.secrets)
        found += self.s3.secrets if self.s3 else ()
        found += self.supabase_storage.secrets if self.supabase_storage else ()
        return found + (self.google_drive.secrets if self.google_drive else ())

    def restore_targets(self) -> tuple[RestoreTarget, ...]:
        """RESTORE_TARGETS parsed now; ConfigError naming the target (never its URL) when bad."""
        return parse_restore_targets(self.restore_targets_text)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        url = env.get("DATABASE_URL", "").strip()
        if not url:
            raise ConfigError("DATABASE_URL is not set (a postgresql:// URL or a libpq conninfo)")
        _check_database_url(url)
        targets = storage_targets_from_env(env)
        storage = targets[0]
        tz = timezone_from_env(env)
        level_text = env.get("BACKUP_GZIP_LEVEL", "1").strip() or "1"
        if level_text not in ("0", "1", "2", "3"):
            raise ConfigError(f"BACKUP_GZIP_LEVEL={level_text!r}: expected 0, 1, 2 or 3")
        seekable_text = (env.get("BACKUP_SEEKABLE", "on").strip() or "on").lower()
        if seekable_text not in ("on", "off"):
            raise ConfigError(f"BACKUP_SEEKABLE={seekable_text!r}: expected on or off")
        alerting = _retention_and_alerts(env)
        recipients = parse_recipients(env.get("BACKUP_AGE_RECIPIENTS", ""))
        if recipients and storage_enabled(env):
            # The Storage blobs would be stored in the clear beside an encrypted dump.
            raise ConfigError(
                "BACKUP_SUPABASE_STORAGE=true cannot be combined with BACKUP_AGE_RECIPIENTS: the Storage blobs"
                " are not encrypted (only the dump would be); unset one of them"
            )
        return cls(
            database_url=url,
            storage=storage,
            storage_targets=targets,
            local_root=Path(env.get("BACKUP_LOCAL_ROOT", "backups").strip() or "backups"),
            timezone=tz,
            gzip_level=int(level_text),
            seekable=seekable_text == "on",
            seekable_part_mb=_positive_int(env, "BACKUP_SEEKABLE_PART_MB", seek_index.PART_SIZE >> 20, 1, 4096),
            pg_dump_path=env.get("PG_DUMP_PATH") or None,
            retention_days=alerting.retention_days,
            keep_min=alerting.keep_min,
            max_age_hours=alerting.max_age_hours,
            size_warning_percent=alerting.size_warning_percent,
            shrink_warning_percent=alerting.shrink_warning_percent,
            shrink_min_rows=alerting.shrink_min_rows,
            keep_weekly=alerting.keep_weekly,
            keep_monthly=alerting.keep_monthly,
            environment=alerting.environment,
            sendgrid_api_key=alerting.sendgrid_api_key,
            sendgrid_host=alerting.sendgrid_host,
            alert_from_email=alerting.alert_from_email,
            alert_fallback_email=alerting.alert_fallback_email,
            organization=alerting.organization,
            notification_email=_email(env, "BACKUP_NOTIFICATION_EMAIL"),
            webhook_url=alerting.webhook_url,
            google_drive=drive_config_from_env(env) if "google_drive" in targets else None,
            gcs=gcs_config_from_env(env) if "gcs" in targets else None,
            s3=s3_config_from_env(env) if "s3" in targets else None,
            supabase_storage=supabase_s3_config_from_env(env) if storage_enabled(env) else None,
            auth=auth_config_from_env(env),
            profile=profile_from_env(env),
            age_recipients=recipients,
            verify_database_url=_verify_url(env),
            verify_max_sql_bytes=_positive_int(
                env, "VERIFY_MAX_SQL_BYTES", default_verify_max_sql_bytes(), low=0, high=1 << 50
            ),
            identity_env={k: env[k] for k in IDENTITY_VARIABLES if env.get(k)},
            restore_targets_text=env.get("RESTORE_TARGETS", ""),
            scheduler_jobs=scheduler_jobs_from_env(env),
        )
