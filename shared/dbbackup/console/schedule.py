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
from datetime import UTC, datetime
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


def check_zone(value: Any, field: str) -> str:
    if not isinstance(value, str) or value.strip() not in zone_names():
        shown = value[:100] if isinstance(value, str) else value
        raise SettingError(f"{field}={shown!r} is not an IANA time zone name (e.g. Europe/Berlin)", field)
    return value.strip()


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
        changes: list[str] = []
        for job in JOBS:
            if job not in wanted:
                continue
            part = wanted[job]
            new = JobSchedule(part.get("cron", current[job].cron), part.get("time_zone", current[job].time_zone))
            if self.jobs is not None:
                try:
                    new = self.jobs.update(self._job_name(job), new)
                except SchedulerError as exc:
                    log.error("schedule change by %s refused: %s", who, exc)
                    raise SchedulerError(f"{exc} (applied before it: {', '.join(changes) or 'nothing'})") from None
            self._store(_CRON_KEY[job], new.cron, current[job].cron, who)
            self._store(_ZONE_KEY[job], new.time_zone, current[job].time_zone, who)
            changes.append(f"{job} {new.cron} {new.time_zone}")
        for name, value in wanted.get("retention", {}).items():
            self._store(f"backup_{name}", str(value), stored.get(f"backup_{name}"), who)
            changes.append(f"{name} {value}")
        return self.read() | {"changed": changes}

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
