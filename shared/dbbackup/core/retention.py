"""Retention as a pure classifier: every file in the backup folder gets keep / delete and a reason.

Nothing here touches storage or the database (the deleting step is ``cleanup``), so each rule
can be shown with plain values, and a dry run is exactly the plan a real run would carry out.

The rules, in the order they apply:

1. A name that does not match ``naming.PATTERN`` exactly is *ignored*: never deleted, only counted.
2. A name dated after ``now`` is kept (``future``): a wrong clock or time zone must not cost data.
3. A file whose ``backup_logs`` row is ``in_progress`` is kept (``in_progress``).
4. The newest ``keep_min`` successful backups are kept whatever their age (``safety_floor``).
   "Successful" means a ``success`` row, or no row at all (a complete file we have no record of
   is presumed good: guessing wrong that way only keeps a file longer). A ``failed`` row's file
   never counts.
5. Otherwise a file is deleted when it is *older than* ``retention_days``: its age, ``now`` minus
   the moment its name encodes (read in ``BACKUP_TIMEZONE``), is strictly greater than
   ``retention_days`` x 24 hours. A file exactly ``retention_days`` days old is kept; one minute
   older, it is deleted, unless:
6. it is the newest successful backup (by the moment its name encodes, in ``BACKUP_TIMEZONE``;
   future-dated files excluded) of one of the last ``keep_weekly`` ISO weeks, the current week
   counting as the first (``weekly``), or
7. the newest successful backup of one of the last ``keep_monthly`` calendar months, the current
   month counting as the first (``monthly``).

With ``keep_weekly = keep_monthly = 0`` (the defaults) rules 6 and 7 keep nothing: the spec's
behaviour exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from dbbackup.core import naming
from dbbackup.core.ports import StoredFile

KEEP, DELETE = "keep", "delete"

# Reasons (stable strings: they appear in the JSON result and docs/operations.md).
WITHIN = "within_retention"
FLOOR = "safety_floor"
FUTURE = "future"
IN_PROGRESS = "in_progress"
EXPIRED = "expired"
WEEKLY = "weekly"
MONTHLY = "monthly"
# The word ``cleanup`` reports for each kept file (README: Retention).
KEPT_AS = {
    WITHIN: "daily",
    WEEKLY: "weekly",
    MONTHLY: "monthly",
    FLOOR: "floor",
    IN_PROGRESS: "in_progress",
    FUTURE: "future",
}

# What a file's backup_logs rows say about it, strongest first.
ROW_IN_PROGRESS, ROW_SUCCESS, ROW_FAILED, ROW_NONE = "in_progress", "success", "failed", "none"


@dataclass(frozen=True)
class Decision:
    file: StoredFile
    moment: datetime  # the time the name encodes, in BACKUP_TIMEZONE
    action: str  # KEEP | DELETE
    reason: str
    row_status: str


@dataclass(frozen=True)
class Plan:
    now: datetime
    cutoff: datetime  # files strictly before this moment are past retention
    decisions: list[Decision] = field(default_factory=list)
    ignored: list[StoredFile] = field(default_factory=list)

    def with_action(self, action: str) -> list[Decision]:
        return [d for d in self.decisions if d.action == action]

    def with_reason(self, reason: str) -> list[Decision]:
        return [d for d in self.decisions if d.reason == reason]


def row_status(statuses: Iterable[str]) -> str:
    """One verdict for a file from all its rows: a running backup beats everything, then any
    success (a failed attempt can share the name of a later successful one in the same minute)."""
    found = set(statuses)
    for status in (ROW_IN_PROGRESS, ROW_SUCCESS, ROW_FAILED):
        if status in found:
            return status
    return ROW_NONE


def _sort_key(moment: datetime, name: str) -> tuple[datetime, int]:
    match = naming.PATTERN.match(name)
    seq = int(match["seq"]) if match and match["seq"] else 1
    return moment, seq  # _2 was written after the unsuffixed file of the same minute


# The counts a manager may set in the console, with the bounds BACKUP_RETENTION_DAYS,
# BACKUP_KEEP_WEEKLY and BACKUP_KEEP_MONTHLY have (settings.py).
COUNT_BOUNDS = {"retention_days": (1, 36_500), "keep_weekly": (0, 5_000), "keep_monthly": (0, 1_200)}


def classify(
    files: Iterable[StoredFile],
    *,
    now: datetime,
    tz: ZoneInfo,
    retention_days: int,
    keep_min: int,
    statuses: Mapping[str, str] | None = None,
    keep_weekly: int = 0,
    keep_monthly: int = 0,
) -> Plan:
    """``statuses`` maps a file's storage id to ``row_status`` of its rows (missing: no row)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if retention_days < 1 or keep_min < 1:
        raise ValueError("retention_days and keep_min must be at least 1")
    if keep_weekly < 0 or keep_monthly < 0:
        raise ValueError("keep_weekly and keep_monthly must not be negative")
    today = now.astimezone(tz).date()
    statuses = statuses or {}
    # In UTC, so the subtraction is elapsed time (aware arithmetic in a DST zone is wall-clock).
    now = now.astimezone(UTC)
    cutoff = now - timedelta(days=retention_days)
    parsed: list[tuple[StoredFile, datetime, str]] = []
    ignored: list[StoredFile] = []
    for f in files:
        moment = naming.parse(f.name, tz)
        if moment is None:
            ignored.append(f)
        else:
            parsed.append((f, moment, statuses.get(f.id, ROW_NONE)))

    # Compare instants, not wall clocks: "older than" is elapsed time, also across a DST change.
    def instant(moment: datetime) -> datetime:
        return moment.astimezone(UTC)

    floor_candidates = sorted(
        (
            (f, m)
            for f, m, s in parsed
            if s in (ROW_SUCCESS, ROW_NONE) and instant(m) <= now  # a future file keeps itself
        ),
        key=lambda fm: _sort_key(instant(fm[1]), fm[0].name),
        reverse=True,
    )
    floor_ids = {f.id for f, _ in floor_candidates[:keep_min]}
    weekly_ids = _newest_per_period(floor_candidates, _week, _last_weeks(today, keep_weekly))
    monthly_ids = _newest_per_period(floor_candidates, _month, _last_months(today, keep_monthly))

    decisions: list[Decision] = []
    for f, moment, status in sorted(parsed, key=lambda p: _sort_key(instant(p[1]), p[0].name)):
        if instant(moment) > now:
            action, reason = KEEP, FUTURE
        elif status == ROW_IN_PROGRESS:
            action, reason = KEEP, IN_PROGRESS
        elif instant(moment) >= cutoff:
            action, reason = KEEP, WITHIN
        elif f.id in floor_ids:
            action, reason = KEEP, FLOOR
        elif f.id in weekly_ids:
            action, reason = KEEP, WEEKLY
        elif f.id in monthly_ids:
            action, reason = KEEP, MONTHLY
        else:
            action, reason = DELETE, EXPIRED
        decisions.append(Decision(f, moment, action, reason, status))
    return Plan(now=now, cutoff=cutoff, decisions=decisions, ignored=ignored)


def _week(day: date) -> date:
    """The Monday of ``day``'s ISO week."""
    return day - timedelta(days=day.weekday())


def _month(day: date) -> date:
    return day.replace(day=1)


def _last_weeks(today: date, count: int) -> set[date]:
    return {_week(today) - timedelta(weeks=k) for k in range(count)}


def _last_months(today: date, count: int) -> set[date]:
    months, year, month = set(), today.year, today.month
    for _ in range(count):
        months.add(date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return months


def _newest_per_period(
    newest_first: list[tuple[StoredFile, datetime]], period: Callable[[date], date], wanted: set[date]
) -> set[str]:
    """Ids of the newest file of each wanted period (``newest_first``: successful, not future)."""
    kept: dict[date, str] = {}
    for f, moment in newest_first:
        key = period(moment.date())  # the moment as the name encodes it, in BACKUP_TIMEZONE
        if key in wanted and key not in kept:
            kept[key] = f.id
    return set(kept.values())
