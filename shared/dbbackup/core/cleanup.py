"""The retention cleanup: plan with ``retention.classify``, then delete what it says, one file at a
time, continuing past failures, and report everything. Also the daily missed-run check.

Locks: the cleanup holds its own advisory lock, transaction-scoped so that it also holds through
a transaction-mode pooler (two cleanups never race over the same files)
and reads whether a backup holds ``BACKUP_LOCK_KEY`` without taking it, so a scheduled backup is
never refused because a cleanup happens to be running. A running backup's file is protected by
its ``in_progress`` row (rule 3 of ``retention``); and the file it writes is not even listed
until it is complete, by the Storage contract, so the plan can never include it.

``--dry-run`` is a wrapper, not a flag threaded through the code: the same steps run against a
storage whose delete only records the id and a log writer that writes nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from dbbackup.core import health, messages, retention
from dbbackup.core.alerts import Alerter
from dbbackup.core.ports import BackupConfig, BackupLog, JobSettings, OpenLog, Storage, StoredFile, Target
from dbbackup.errors import BackupError, LockBusy, StorageNotFound, StorageRetained
from dbbackup.redact import one_line, redact

log = logging.getLogger("dbbackup.cleanup")


@dataclass
class CleanupResult:
    status: str  # success | failed
    dry_run: bool
    folder: str
    now: str
    cutoff: str  # files named before this instant are past retention
    retention_days: int
    keep_min: int
    keep_weekly: int = 0
    keep_monthly: int = 0
    examined: int = 0
    matched: int = 0
    ignored: int = 0
    deleted: list[str] = field(default_factory=list)
    kept_by_safety_floor: list[str] = field(default_factory=list)
    kept_future: list[str] = field(default_factory=list)
    kept_in_progress: list[str] = field(default_factory=list)
    kept_within_retention: int = 0
    kept_weekly: list[str] = field(default_factory=list)
    kept_monthly: list[str] = field(default_factory=list)
    # Every kept file and why: daily, weekly, monthly, floor, in_progress or future.
    kept: dict[str, str] = field(default_factory=dict)
    failed: list[dict[str, str]] = field(default_factory=list)
    # Past our retention but still locked by the store (GCS retention policy, S3 Object Lock).
    kept_retained: list[dict[str, str]] = field(default_factory=list)
    bytes_freed: int = 0
    backup_running: bool = False
    missed_run: bool = False
    alerts: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        return (
            f"examined {self.examined}, matched {self.matched}, {verb} {len(self.deleted)}, "
            f"kept by the safety floor {len(self.kept_by_safety_floor)}, "
            + (f"weekly {len(self.kept_weekly)}, " if self.keep_weekly else "")
            + (f"monthly {len(self.kept_monthly)}, " if self.keep_monthly else "")
            + f"ignored {self.ignored}, "
            f"failed {len(self.failed)}, {'would free' if self.dry_run else 'freed'} {self.bytes_freed:,} bytes"
        )


@dataclass(frozen=True)
class Rules:
    """One cleanup's retention rules: the deployment's settings, overridden by what a manager set
    in the console (``BackupConfig``). ``tz`` is the zone the backup names its files in."""

    tz: ZoneInfo
    retention_days: int
    keep_weekly: int
    keep_monthly: int

    @classmethod
    def of(cls, s: JobSettings, config: BackupConfig) -> Rules:
        def chosen(stored: int | None, default: int) -> int:
            return default if stored is None else stored

        return cls(
            config.time_zone or s.timezone,
            chosen(config.retention_days, s.retention_days),
            chosen(config.keep_weekly, s.keep_weekly),
            chosen(config.keep_monthly, s.keep_monthly),
        )


# --- the deleting step -------------------------------------------------------------------------


def delete_planned(
    storage: Storage,
    plan: retention.Plan,
    record: Callable[[StoredFile], int],
    secrets: tuple[str, ...],
    retained: list[dict[str, str]] | None = None,
) -> tuple[list[StoredFile], list[dict[str, str]]]:
    """Delete every file the plan marks, verify each is gone, record it; one failure never stops
    the others. A file already gone counts as deleted (someone else removed it: the goal holds).
    A file the store itself still retains (a bucket retention policy, an Object Lock) goes to
    ``retained``, not to the failures: that lock is the point of such a copy."""
    deleted: list[StoredFile] = []
    failed: list[dict[str, str]] = []
    for decision in plan.with_action(retention.DELETE):
        f = decision.file
        try:
            with contextlib.suppress(StorageNotFound):
                storage.delete(f.id)
            try:
                storage.stat(f.id)
            except StorageNotFound:
                pass
            else:
                raise BackupError("the file is still there after the delete")
        except StorageRetained as exc:
            if retained is None:
                raise
            reason = one_line(redact(str(exc), secrets), 300)
            log.info("cleanup: %s is still retained by its store: %s", f.name, reason)
            retained.append({"file": f.name, "reason": reason})
            continue
        except Exception as exc:
            reason = one_line(redact(str(exc) or type(exc).__name__, secrets), 300)
            log.error("cleanup: could not delete %s: %s", f.name, reason)
            failed.append({"file": f.name, "reason": reason})
            continue
        deleted.append(f)
        try:
            if not record(f):
                log.warning("cleanup: deleted %s, which had no backup_logs row", f.name)
        except Exception as exc:
            reason = one_line(redact(f"deleted, but backup_logs.deleted_at was not set: {exc}", secrets), 300)
            log.error("cleanup: %s: %s", f.name, reason)
            failed.append({"file": f.name, "reason": reason})
    return deleted, failed


class CleanupJob:
    def __init__(
        self,
        settings: JobSettings,
        open_log: OpenLog,
        storage: Storage | Sequence[Target],
        alerter: Alerter,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        dry_run_storage: Callable[[Storage], Storage],
    ) -> None:
        """``storage``: the one target, or every target in order (the first is the primary)."""
        self.settings = settings
        self.open_log = open_log
        self.targets = list(storage) if isinstance(storage, Sequence) else [Target(settings.storage, storage)]
        self.alerter = alerter
        self.clock = clock
        self.dry_run_storage = dry_run_storage

    def run(self, dry_run: bool = False) -> CleanupResult:
        """Raises ConfigError / DatabaseUnavailable / LockBusy when it cannot start (after alerting
        for the first two); otherwise returns the result, ``failed`` when any file was not deleted
        or the folder could not be read."""
        with contextlib.ExitStack() as stack:
            repo = None
            try:
                repo = stack.enter_context(self.open_log())
                config = repo.config()
            except BackupError as exc:
                if not dry_run:  # a dry run reports, it never e-mails
                    self._alert_could_not_start(repo, exc)
                raise
            with repo.cleanup_lock() as locked:
                if not locked:
                    raise LockBusy("another cleanup of this database is running")
                return self._locked(repo, config.folder_path, dry_run, Rules.of(self.settings, config))
        raise AssertionError("unreachable")  # ExitStack does not swallow exceptions

    def _locked(self, repo: BackupLog, folder_path: str, dry_run: bool, rules: Rules) -> CleanupResult:
        s = self.settings
        now = self.clock()
        result = CleanupResult(
            status="success",
            dry_run=dry_run,
            folder=folder_path,
            now=now.isoformat(),
            cutoff="",
            retention_days=rules.retention_days,
            keep_min=s.keep_min,
            keep_weekly=rules.keep_weekly,
            keep_monthly=rules.keep_monthly,
        )
        several = len(self.targets) > 1
        for n, target in enumerate(self.targets):
            # Each target is planned on its own: a copy missing in one does not change the others.
            self._clean(repo, target, n == 0, several, folder_path, dry_run, now, result, rules)
        self._check_missed_run(repo, now, folder_path, result)
        if result.status == "failed" and not dry_run:
            email = messages.cleanup_failure_email(
                now,
                s.timezone,
                s.environment,
                folder_path,
                [(f["file"], f["reason"]) for f in result.failed],
                result.summary(),
                s.organization,
            )
            self.alerter.deliver(email, repo.notification_email())
            result.alerts.append(email.kind)
        level = logging.ERROR if result.status == "failed" else logging.INFO
        log.log(level, "cleanup %s%s: %s", result.status, " (dry run)" if dry_run else "", result.summary())
        return result

    def _clean(
        self,
        repo: BackupLog,
        target: Target,
        primary: bool,
        several: bool,
        folder_path: str,
        dry_run: bool,
        now: datetime,
        result: CleanupResult,
        rules: Rules,
    ) -> None:
        """One target's retention, added to ``result``; with several targets each name in the
        lists is prefixed ``<target>:``."""
        s = self.settings
        storage = self.dry_run_storage(target.storage) if dry_run else target.storage

        def record(f: StoredFile) -> int:
            return 1 if dry_run else repo.mark_deleted(f, target.name, primary)

        def label(name: str) -> str:
            return f"{target.name}:{name}" if several else name

        try:
            folder = storage.ensure_folder(folder_path)
            files = storage.list(folder)
        except Exception as exc:
            reason = one_line(redact(f"cannot list the backup folder: {exc}", s.secrets), 300)
            log.error("cleanup: %s", reason)
            result.status = "failed"
            result.failed.append({"file": label(folder_path), "reason": reason})
            return
        # Read the lock before the rows: a backup that starts after this point writes a file
        # that is not in ``files`` (listed above), so the plan cannot touch it.
        result.backup_running = result.backup_running or repo.backup_lock_held()
        statuses = repo.row_statuses(files)
        plan = retention.classify(
            files,
            now=now,
            tz=rules.tz,
            retention_days=rules.retention_days,
            keep_min=s.keep_min,
            keep_weekly=rules.keep_weekly,
            keep_monthly=rules.keep_monthly,
            statuses={file_id: retention.row_status(found) for file_id, found in statuses.items()},
        )
        result.cutoff = plan.cutoff.isoformat()
        retained: list[dict[str, str]] = []
        deleted, failed = delete_planned(storage, plan, record, s.secrets, retained)
        result.kept_retained += [{**r, "file": label(r["file"])} for r in retained]
        result.examined += len(files)
        result.matched += len(plan.decisions)
        result.ignored += len(plan.ignored)
        result.deleted += [label(f.name) for f in deleted]
        result.bytes_freed += sum(f.size for f in deleted)
        result.kept_by_safety_floor += [label(d.file.name) for d in plan.with_reason(retention.FLOOR)]
        result.kept_future += [label(d.file.name) for d in plan.with_reason(retention.FUTURE)]
        result.kept_in_progress += [label(d.file.name) for d in plan.with_reason(retention.IN_PROGRESS)]
        result.kept_within_retention += len(plan.with_reason(retention.WITHIN))
        result.kept_weekly += [label(d.file.name) for d in plan.with_reason(retention.WEEKLY)]
        result.kept_monthly += [label(d.file.name) for d in plan.with_reason(retention.MONTHLY)]
        result.kept |= {label(d.file.name): retention.KEPT_AS[d.reason] for d in plan.with_action(retention.KEEP)}
        result.failed += [{**f, "file": label(f["file"])} for f in failed]
        if failed:
            result.status = "failed"
        for d in plan.with_reason(retention.FUTURE):
            log.warning(
                "cleanup: kept %s: its name is dated in the future (check BACKUP_TIMEZONE/clock)", label(d.file.name)
            )
        for d in plan.with_reason(retention.IN_PROGRESS):
            log.warning("cleanup: kept %s: its backup_logs row is in_progress", label(d.file.name))

    def _check_missed_run(self, repo: BackupLog, now: datetime, folder: str, result: CleanupResult) -> None:
        """The daily cleanup doubles as the watchdog: a scheduler that stopped calling the backup
        produces no failure at all, only silence."""
        s = self.settings
        try:
            state = health.read_health(repo, now, s.max_age_hours)
        except BackupError as exc:
            log.error("cleanup: could not read backup health: %s", one_line(redact(str(exc), s.secrets)))
            return
        if not health.missed_run(state):
            return
        result.missed_run = True
        last = datetime.fromisoformat(state.last_success_at) if state.last_success_at else None
        log.error(
            "no successful backup since %s (BACKUP_MAX_AGE_HOURS=%d)", state.last_success_at or "ever", s.max_age_hours
        )
        if result.dry_run:
            return
        email = messages.missed_run_email(
            now,
            s.timezone,
            s.environment,
            last,
            s.max_age_hours,
            state.consecutive_failures,
            state.last_failure_reason,
            folder,
            s.organization,
        )
        self.alerter.deliver(email, repo.notification_email())
        result.alerts.append(email.kind)

    def _alert_could_not_start(self, repo: BackupLog | None, exc: BackupError) -> None:
        s = self.settings
        now = self.clock()
        reason = one_line(redact(str(exc), s.secrets))
        email = messages.cleanup_failure_email(
            now,
            s.timezone,
            s.environment,
            "unknown (could not read the configuration)",
            [("(cleanup)", reason)],
            "did not start",
            s.organization,
        )
        self.alerter.deliver(email, repo.notification_email() if repo is not None else None)
