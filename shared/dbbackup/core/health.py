"""Backup health: last success and its age, failures in a row, success rates, size trend, and
when the daily check must alert. Computed from the backup log's answers (``HealthFacts``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from dbbackup.core.ports import BackupLog, HealthFacts


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass
class Health:
    checked_at: str
    healthy: bool
    max_age_hours: int
    last_success_at: str | None
    last_success_age_hours: float | None
    last_success_id: str | None
    last_success_file: str | None
    last_failure_at: str | None
    last_failure_id: str | None
    last_failure_reason: str | None
    consecutive_failures: int
    success_rate_7d: float | None  # None: no attempt in the window
    attempts_7d: int
    success_rate_30d: float | None
    attempts_30d: int
    last_backup_bytes: int | None
    previous_backup_bytes: int | None
    size_change_bytes: int | None
    size_change_percent: float | None
    last_size_warning: str | None
    # The newest restore drill (verify_backup): which backup, its verdict, when, and how old that
    # backup was then... and is now (hours).
    last_verified_id: str | None = None
    last_verified_file: str | None = None
    last_verify_status: str | None = None  # passed | failed | skipped
    last_verify_detail: str | None = None
    last_verified_at: str | None = None
    last_verified_backup_age_hours: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rate(successes: int, attempts: int) -> float | None:
    return round(100 * successes / attempts, 1) if attempts else None


def build_health(facts: HealthFacts, now: datetime, max_age_hours: int) -> Health:
    success, previous, failure = facts.last_success, facts.previous_success, facts.last_failure
    success_at = (success.completed_at or success.started_at) if success else None
    age = round((now - success_at).total_seconds() / 3600, 2) if success_at else None
    size = success.file_size_bytes if success else None
    prev_size = previous.file_size_bytes if previous else None
    change = size - prev_size if size is not None and prev_size is not None else None
    streak = facts.consecutive_failures
    verified = facts.last_verified
    return Health(
        checked_at=now.isoformat(),
        healthy=age is not None and age <= max_age_hours and streak == 0,
        max_age_hours=max_age_hours,
        last_success_at=iso(success_at),
        last_success_age_hours=age,
        last_success_id=success.id if success else None,
        last_success_file=success.file_name if success else None,
        last_failure_at=iso(failure.started_at) if failure else None,
        last_failure_id=failure.id if failure else None,
        last_failure_reason=failure.failure_reason if failure else None,
        consecutive_failures=streak,
        success_rate_7d=_rate(facts.successes_7d, facts.attempts_7d),
        attempts_7d=facts.attempts_7d,
        success_rate_30d=_rate(facts.successes_30d, facts.attempts_30d),
        attempts_30d=facts.attempts_30d,
        last_backup_bytes=size,
        previous_backup_bytes=prev_size,
        size_change_bytes=change,
        size_change_percent=round(100 * change / prev_size, 1) if change is not None and prev_size else None,
        last_size_warning=facts.last_size_warning,
        last_verified_id=verified.id if verified else None,
        last_verified_file=verified.file_name if verified else None,
        last_verify_status=verified.verify_status if verified else None,
        last_verify_detail=verified.verify_detail if verified else None,
        last_verified_at=iso(verified.verified_at) if verified else None,
        last_verified_backup_age_hours=(
            round((now - verified.started_at).total_seconds() / 3600, 2) if verified and verified.started_at else None
        ),
    )


def read_health(log: BackupLog, now: datetime, max_age_hours: int) -> Health:
    return build_health(log.health_facts(now), now, max_age_hours)


def missed_run(health: Health) -> bool:
    """No success within BACKUP_MAX_AGE_HOURS (or none at all): the daily check must alert."""
    age = health.last_success_age_hours
    return age is None or age > health.max_age_hours
