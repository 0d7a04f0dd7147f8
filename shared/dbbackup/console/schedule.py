"""The schedule and retention settings (``GET``/``PUT /api/config/schedule``): when the backup
and the cleanup run (their Cloud Scheduler jobs' cron and time zone) and how long backups are
kept. Where Cloud Scheduler is configured (SCHEDULER_BACKUP_JOB/SCHEDULER_CLEANUP_JOB) a change
is applied to the job first and then recorded in ``invoice_configurations``; elsewhere (a local
run) it is only recorded, and the answer says ``"applied": false``. The backup reads the recorded
zone at each run and names its files in it, so file names follow the job's zone."""

from __future__ import annotations

import functools
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import psycopg
from croniter import croniter

from dbbackup import wiring
from dbbackup.core.ports import JobSchedule, SchedulerJobs
from dbbackup.core.retention import COUNT_BOUNDS
from dbbackup.errors import ConfigError, SchedulerError, SettingError
from dbbackup.http.guard import RequestContext
from dbbackup.http.types import HttpReply, HttpRequest
from dbbackup.pg.app_settings import SCHEDULE_KEYS, read_settings, stored_count, write_backup_setting
from dbbackup.settings import SchedulerJobNames, Settings

log = logging.getLogger("dbbackup.console")
JOBS = ("backup", "cleanup")
# The deployment's defaults (infra/variables.tf backup_schedule, cleanup_schedule), shown where no
# Scheduler is configured and nothing was stored yet.
DEFAULT_CRON = {"backup": "0 1 * * *", "cleanup": "0 2 * * *"}
_CRON_KEY = {"backup": "backup_schedule_cron", "cleanup": "backup_cleanup_cron"}
_ZONE_KEY = {"backup": "backup_schedule_time_zone", "cleanup": "backup_cleanup_time_zone"}
# Cloud Scheduler's unix-cron: five fields of numbers, *, ranges, steps and lists; month and
# weekday also by their English three-letter names. Not croniter's extensions (seconds, L, #, H).
_NUMERIC = re.compile(r"^[0-9*/,-]+$")
_NAMED = re.compile(r"^(?:[0-9*/,-]|[A-Za-z]{3})+$")


@functools.cache
def zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def check_cron(value: Any, field: str) -> str:
    if not isinstance(value, str) or len(value) > 200:
        raise SettingError(f"{field} must be a cron expression such as 0 1 * * * (a string)", field)
    fields = value.split()
    shape_ok = len(fields) == 5 and all((_NAMED if n >= 3 else _NUMERIC).match(part) for n, part in enumerate(fields))
    if not shape_ok or not croniter.is_valid(" ".join(fields)):
        raise SettingError(
            f"{field}={value[:100]!r} is not a unix-cron expression: five fields, minute hour"
            " day-of-month month day-of-week, e.g. 0 1 * * *",
            field,
        )
    return " ".join(fields)


def _area_city(name: str) -> bool:
    """IANA ``Area/City`` names (Europe/Berlin, America/Argentina/Salta), ``UTC`` and ``Etc/*``;
    not the tz database's other files (localtime, Factory, posixrules, EST5EDT, posix/..., right/...)
    that Cloud Scheduler may reject or read otherwise."""
    if name == "UTC" or name.startswith("Etc/"):
        return True
    area = name.split("/", 1)[0]
    return "/" in name and area[:1].isupper() and area not in ("posix", "right", "SystemV")


def check_zone(value: Any, field: str) -> str:
    if not isinstance(value, str) or value.strip() not in zone_names() or not _area_city(value.strip()):
        shown = value[:100] if isinstance(value, str) else value
        raise SettingError(f"{field}={shown!r} is not an IANA time zone name (e.g. Europe/Berlin)", field)
    return value.strip()


MIN_BACKUP_GAP = timedelta(hours=1)
_RUNS_CHECKED = timedelta(days=366)  # a year of runs: every month, weekday and DST change


def check_runs(job: str, schedule: JobSchedule, max_age_hours: int, now: datetime) -> None:
    """The job runs at all (``0 0 31 2 *`` never does); the backup's runs are at least an hour and
    at most BACKUP_MAX_AGE_HOURS apart (else the status check would call a healthy schedule
    stale, or the runs pile onto each other). SettingError naming ``<job>.cron``."""
    field = f"{job}.cron"
    start = now.astimezone(ZoneInfo(schedule.time_zone))
    try:
        runs = croniter(schedule.cron, start)
        previous = runs.get_next(datetime)
    except Exception:  # croniter gives up looking for a date that does not exist
        previous = None
    if not isinstance(previous, datetime):
        raise SettingError(f"{field}={schedule.cron!r} never runs (no such date); choose one that does", field)
    if job != "backup":
        return
    most = timedelta(hours=max_age_hours)
    end = start + _RUNS_CHECKED
    while previous < end:
        found = runs.get_next(datetime)
        assert isinstance(found, datetime)
        gap = found.astimezone(UTC) - previous.astimezone(UTC)  # elapsed time, not wall-clock (DST)
        if gap < MIN_BACKUP_GAP:
            raise SettingError(
                f"{field}={schedule.cron!r} runs backups {_span(gap)} apart (at {previous:%Y-%m-%d %H:%M} and"
                f" {found:%H:%M} {schedule.time_zone}); backups must be at least an hour apart",
                field,
            )
        if gap > most:
            raise SettingError(
                f"{field}={schedule.cron!r} leaves {_span(gap)} between backups (from {previous:%Y-%m-%d %H:%M}"
                f" {schedule.time_zone}), more than BACKUP_MAX_AGE_HOURS ({max_age_hours} h): the status check"
                " would call the backup stale and alert; choose runs at most that far apart",
                field,
            )
        previous = found


def _span(gap: timedelta) -> str:
    hours = gap.total_seconds() / 3600
    return f"{hours:g} h" if hours >= 1 else f"{round(gap.total_seconds() / 60)} min"


def check_count(value: Any, name: str) -> int:
    low, high = COUNT_BOUNDS[name]
    field = f"retention.{name}"
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SettingError(f"{field} must be a whole number from {low} to {high}", field)
    return value


def next_run(schedule: JobSchedule, now: datetime) -> str | None:
    try:
        zone = ZoneInfo(schedule.time_zone)
        found = croniter(schedule.cron, now.astimezone(zone)).get_next(datetime)
    except Exception:  # a job changed by hand to something we cannot read: no next run shown
        return None
    return found.isoformat() if isinstance(found, datetime) else None


class Schedules:
    """The settings over one request's connection and, when configured, the Scheduler jobs."""

    def __init__(self, conn: psycopg.Connection, settings: Settings, jobs: SchedulerJobs | None) -> None:
        self.conn, self.settings, self.jobs = conn, settings, jobs
        self.names: SchedulerJobNames | None = settings.scheduler_jobs if jobs is not None else None

    def _job_name(self, job: str) -> str:
        assert self.names is not None
        return self.names.backup if job == "backup" else self.names.cleanup

    def _stored(self) -> dict[str, str | None]:
        return read_settings(self.conn, SCHEDULE_KEYS)

    def _schedule(self, job: str, stored: dict[str, str | None]) -> JobSchedule:
        if self.jobs is not None:
            return self.jobs.get(self._job_name(job))
        zone = self.settings.timezone.key
        return JobSchedule(stored.get(_CRON_KEY[job]) or DEFAULT_CRON[job], stored.get(_ZONE_KEY[job]) or zone)

    def _schedules(self, stored: dict[str, str | None]) -> dict[str, JobSchedule]:
        return {job: self._schedule(job, stored) for job in JOBS}

    def read(self) -> dict[str, Any]:
        stored = self._stored()
        now = datetime.now(UTC)
        body: dict[str, Any] = {}
        detail = None
        try:
            schedules = self._schedules(stored)
        except SchedulerError as exc:
            # The page still shows the retention settings; the schedule is what was last stored.
            detail = str(exc)
            saved = Schedules(self.conn, self.settings, None)
            schedules = saved._schedules(stored)
        for job, schedule in schedules.items():
            body[job] = {"cron": schedule.cron, "time_zone": schedule.time_zone, "next_run": next_run(schedule, now)}
            if self.names is not None:
                body[job]["job"] = self._job_name(job)
        body["retention"] = _retention(stored, self.settings)
        body["scheduler"] = "cloud_scheduler" if self.jobs is not None else None
        body["applied"] = self.jobs is not None and detail is None
        body["detail"] = detail or (
            None
            if self.jobs is not None
            else "no Cloud Scheduler is configured (SCHEDULER_BACKUP_JOB, SCHEDULER_CLEANUP_JOB): the schedule is"
            " stored only; the retention settings apply at the next cleanup"
        )
        return body

    def change(self, body: bytes, who: str) -> dict[str, Any]:
        wanted = parse_body(body)
        stored = self._stored()
        missing = [key for key in SCHEDULE_KEYS if key not in stored]
        if missing:
            # Checked before a job is touched: a change applied but not recorded would be lost.
            raise ConfigError(f"invoice_configurations has no {missing[0]} row: run `dbbackup migrate`")
        current = {job: self._schedule(job, stored) for job in JOBS if job in wanted}
        planned: dict[str, JobSchedule] = {}
        now = datetime.now(UTC)
        for job in JOBS:
            if job in wanted:
                part = wanted[job]
                planned[job] = JobSchedule(
                    part.get("cron", current[job].cron), part.get("time_zone", current[job].time_zone)
                )
                check_runs(job, planned[job], self.settings.max_age_hours, now)  # before any job is touched
        changes: list[str] = []
        for job, new in planned.items():
            if self.jobs is not None:
                try:
                    new = self.jobs.update(self._job_name(job), new)
                except SchedulerError as exc:
                    log.error("schedule change by %s refused: %s", who, exc)
                    raise SchedulerError(f"{exc} (applied before it: {', '.join(changes) or 'nothing'})") from None
            try:
                self._store(_CRON_KEY[job], new.cron, current[job].cron, who)
                self._store(_ZONE_KEY[job], new.time_zone, current[job].time_zone, who)
            except Exception as exc:
                self._unapply(job, new, current[job], changes, exc)
                raise
            changes.append(f"{job} {new.cron} {new.time_zone}")
        for name, value in wanted.get("retention", {}).items():
            self._store(f"backup_{name}", str(value), stored.get(f"backup_{name}"), who)
            changes.append(f"{name} {value}")
        return self.read() | {"changed": changes}

    def _unapply(self, job: str, new: JobSchedule, old: JobSchedule, changes: list[str], exc: Exception) -> None:
        """The job was changed but the change could not be recorded: put the job's previous
        schedule back; if that fails too, SchedulerError (502) saying what was applied and what not."""
        if self.jobs is None:
            return
        name = self._job_name(job)
        earlier = f"; applied and recorded before it: {', '.join(changes)}" if changes else ""
        try:
            self.jobs.update(name, old)
        except Exception as undo:
            log.error(
                "schedule of %s applied (%s %s) but not recorded, and not put back: %s",
                name,
                new.cron,
                new.time_zone,
                undo,
            )
            raise SchedulerError(
                f"the {job} job {name} now runs {new.cron!r} in {new.time_zone} (applied), but recording it failed"
                f" ({exc}) and putting back its previous schedule ({old.cron!r} in {old.time_zone}) failed too"
                f" ({undo}): the console shows the job's schedule; save it again to record it{earlier}"
            ) from None
        log.error("schedule of %s not recorded (%s): its previous schedule was put back", name, exc)

    def _store(self, key: str, text: str, before: Any, who: str) -> None:
        old = write_backup_setting(self.conn, key, text)
        if old != text:
            at = datetime.now(UTC).isoformat(timespec="seconds")
            log.info(
                "setting %s changed by %s at %s: %s -> %s", key, who, at, json.dumps(old or before), json.dumps(text)
            )


def _chosen(stored: dict[str, str | None], name: str, default: int) -> int:
    value = stored_count(f"backup_{name}", stored.get(f"backup_{name}"))
    return default if value is None else value


def _retention(stored: dict[str, str | None], s: Settings) -> dict[str, int]:
    return {
        "retention_days": _chosen(stored, "retention_days", s.retention_days),
        "keep_min": s.keep_min,
        "keep_weekly": _chosen(stored, "keep_weekly", s.keep_weekly),
        "keep_monthly": _chosen(stored, "keep_monthly", s.keep_monthly),
    }


def retention_in_force(conn: psycopg.Connection, settings: Settings) -> dict[str, int]:
    """What the next cleanup applies: the console's counts where set, else the variables'."""
    return _retention(read_settings(conn, SCHEDULE_KEYS), settings)


def parse_body(body: bytes) -> dict[str, Any]:
    """``{"backup": {"cron", "time_zone"}, "cleanup": {...}, "retention": {...}}``, any part of
    it, every value checked (400 naming the field)."""
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise SettingError("the body is not valid JSON", "body") from None
    if not isinstance(data, dict) or not data:
        raise SettingError('the body must be a JSON object such as {"backup": {"cron": "0 1 * * *"}}', "body")
    unknown = sorted(set(data) - {*JOBS, "retention"})
    if unknown:
        raise SettingError(f"unknown field(s): {', '.join(unknown)[:200]}", unknown[0][:40])
    out: dict[str, Any] = {}
    for job in JOBS:
        if job not in data:
            continue
        part = data[job]
        if not isinstance(part, dict) or not part or set(part) - {"cron", "time_zone"}:
            raise SettingError(f'{job} must be an object with "cron" and/or "time_zone"', job)
        out[job] = {}
        if "cron" in part:
            out[job]["cron"] = check_cron(part["cron"], f"{job}.cron")
        if "time_zone" in part:
            out[job]["time_zone"] = check_zone(part["time_zone"], f"{job}.time_zone")
    if "retention" in data:
        part = data["retention"]
        if not isinstance(part, dict) or not part or set(part) - set(COUNT_BOUNDS):
            raise SettingError(f"retention must be an object with any of {', '.join(COUNT_BOUNDS)}", "retention")
        out["retention"] = {name: check_count(value, name) for name, value in part.items()}
    return out


def schedule_endpoint(req: HttpRequest, ctx: RequestContext) -> HttpReply:
    """``GET``/``PUT /api/config/schedule``."""
    schedules = Schedules(ctx.db.get(), ctx.settings, wiring.scheduler_jobs(ctx.settings))
    if req.method == "PUT":
        return HttpReply(schedules.change(req.body, ctx.caller.label), 200)
    return HttpReply(schedules.read(), 200)
