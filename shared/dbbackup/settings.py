"""Settings, read from the environment once and validated with messages naming the variable."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg.conninfo

from .errors import ConfigError
from .redact import redact

STORAGE_BACKENDS = ("local",)


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


@dataclass(frozen=True)
class Settings:
    database_url: str = field(repr=False)
    storage: str = "local"
    local_root: Path = Path("backups")
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    gzip_level: int = 1
    pg_dump_path: str | None = None
    connect_attempts: int = 3

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
        return (str(password),) if password else ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        url = env.get("DATABASE_URL", "").strip()
        if not url:
            raise ConfigError("DATABASE_URL is not set (a postgresql:// URL or a libpq conninfo)")
        _check_database_url(url)
        storage = env.get("BACKUP_STORAGE", "local").strip() or "local"
        if storage not in STORAGE_BACKENDS:
            raise ConfigError(f"BACKUP_STORAGE={storage!r}: expected one of {', '.join(STORAGE_BACKENDS)}")
        tz_name = env.get("BACKUP_TIMEZONE", "UTC").strip() or "UTC"
        try:
            tz = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"BACKUP_TIMEZONE={tz_name!r} is not an IANA time zone name (e.g. Europe/Berlin)"
            ) from None
        level_text = env.get("BACKUP_GZIP_LEVEL", "1").strip() or "1"
        if level_text not in ("0", "1", "2", "3"):
            raise ConfigError(f"BACKUP_GZIP_LEVEL={level_text!r}: expected 0, 1, 2 or 3")
        return cls(
            database_url=url,
            storage=storage,
            local_root=Path(env.get("BACKUP_LOCAL_ROOT", "backups").strip() or "backups"),
            timezone=tz,
            gzip_level=int(level_text),
            pg_dump_path=env.get("PG_DUMP_PATH") or None,
        )
