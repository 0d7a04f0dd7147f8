"""The backup job: lock, log, dump, compress, store, verify, record. It sees only protocols
(``core.ports``): which database driver, dump program, storage backend or mail service is
behind them is decided in ``wiring``.

Whatever happens after the ``in_progress`` row exists, the row ends as ``success`` or
``failed`` (a kill -9 is caught by the next run's stale-row recovery) and no file is left
behind for a failed attempt.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from dbbackup import structured_log
from dbbackup.core import folder_path, manifest, messages, naming, seek_index
from dbbackup.core.alerts import Alerter
from dbbackup.core.fanout import fan_out
from dbbackup.core.ports import BackupLog, Copy, Dump, Dumper, Folder, JobSettings, OpenLog, Storage, StoredFile, Target
from dbbackup.errors import BackupError, ConfigError, DatabaseError, DatabaseUnavailable, LockBusy, StorageError
from dbbackup.redact import one_line, redact

TRIGGERS = {"scheduled": "automatic", "manual": "manual"}
INTERRUPTED = "interrupted: the run stopped before finishing (crash, timeout or kill)"
_log = logging.getLogger("dbbackup.backup")


@dataclass
class BackupOutcome:
    status: str  # success | failed | skipped
    backup_log_id: str | None = None
    file_name: str | None = None
    file_size_bytes: int | None = None
    path: str | None = None
    file_id: str | None = None
    md5: str | None = None
    sql_bytes: int | None = None
    seconds: float = 0.0
    reason: str | None = None
    copies: list[dict[str, object]] | None = None  # one per target, when there are several
    tables: int | None = None  # how many tables the manifest holds
    warnings: list[str] = field(default_factory=list)  # shrink warnings (the backup is still a success)
    counts: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)  # the manifest, in memory

    def as_dict(self) -> dict[str, object]:
        result = asdict(self)
        del result["counts"]
        return result


class BackupJob:
    def __init__(
        self,
        settings: JobSettings,
        open_log: OpenLog,
        storage: Storage | Sequence[Target],
        dumper: Dumper,
        alerter: Alerter,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``storage``: the one target, or every target in order (the first is the primary)."""
        self.settings = settings
        self.open_log = open_log
        self.targets = list(storage) if isinstance(storage, Sequence) else [Target(settings.storage, storage)]
        self.dumper = dumper
        self.alerter = alerter
        self.clock = clock
        self.secrets = settings.secrets

    def run(
        self, trigger: str, triggered_by: str | None = None, schedule_time: datetime | None = None
    ) -> BackupOutcome:
        """Raises ConfigError / DatabaseUnavailable / LockBusy before any row exists;
        afterwards every failure is returned as a ``failed`` outcome with its row updated.
        Failures (and those errors, but not LockBusy) are e-mailed; sending never changes
        what this returns or raises. ``schedule_time`` is the scheduler's slot (its retries
        carry the same one): when that slot already has a successful backup the run is
        ``skipped`` and writes nothing; a slot whose attempts failed runs again."""
        try:
            return self._run(trigger, triggered_by, schedule_time)
        except LockBusy:
            raise
        except DatabaseError as exc:
            # Before the attempt's row exists (backup_logs missing, a permission, a lost
            # connection): still one line, still an alert.
            error = DatabaseUnavailable(f"database error before the backup started: {exc.detail}")
            self._alert_could_not_start(trigger, error)
            raise error from None
        except BackupError as exc:
            self._alert_could_not_start(trigger, exc)
            raise

    def _run(self, trigger: str, triggered_by: str | None, schedule_time: datetime | None) -> BackupOutcome:
        if trigger not in TRIGGERS:
            raise ConfigError(f"unknown trigger {trigger!r}")
        structured_log.set_label("trigger", trigger)
        self.dumper.check_target()
        with self.open_log() as repo:
            config = repo.config()
            if trigger == "scheduled" and not config.enabled:
                return BackupOutcome(status="skipped", reason="backup_enabled is false")
            if not repo.try_lock():
                raise LockBusy("another backup of this database is running")
            try:
                self._recover_stale(repo)
                # Checked holding the lock: an earlier attempt of this slot has finished by now.
                done = repo.succeeded_for_schedule(schedule_time) if schedule_time is not None else None
                if done is not None and schedule_time is not None:
                    return BackupOutcome(
                        status="skipped",
                        backup_log_id=done.id,
                        file_name=done.file_name,
                        path=done.google_drive_path,
                        reason=f"already done: the backup scheduled for {schedule_time.isoformat()} succeeded",
                    )
                # A pg_dump that is missing, not executable or too old for this server is a
                # configuration error: refused before an attempt's row exists, like a bad variable.
                self.dumper.prepare()
                # The file name's zone is the backup job's: the one a manager set in the console, if any.
                zone = config.time_zone or self.settings.timezone
                outcome = self._locked(repo, config.folder_path, trigger, triggered_by, schedule_time, zone)
                self._check_size(repo, outcome)
                self._check_shrink(repo, outcome)
                return outcome
            finally:
                with contextlib.suppress(BackupError):
                    repo.unlock()

    def _locked(
        self,
        repo: BackupLog,
        folder: str,
        trigger: str,
        triggered_by: str | None,
        schedule_time: datetime | None = None,
        zone: ZoneInfo | None = None,
    ) -> BackupOutcome:
        started = time.monotonic()
        moment = self.clock()
        zone = zone or self.settings.timezone
        name = naming.base_name(moment, zone, self.dumper.suffix)
        log_id = repo.start(TRIGGERS[trigger], name, folder, triggered_by, schedule_time)
        structured_log.set_label("backup_log_id", log_id)
        stored: dict[str, StoredFile] = {}
        copies: list[Copy] = []
        keep = False  # whether the complete copies of a failed attempt stay (recorded per copy)
        committed = False  # the row says success: an interrupt after this must not undo it
        try:
            folder_path.split(folder)
            folders: dict[str, Folder] = {}
            taken: set[str] = set()
            unreachable: dict[str, Exception] = {}
            for t in self.targets:
                try:
                    folders[t.name] = t.storage.ensure_folder(folder)
                    t.storage.discard_incomplete(folders[t.name])  # leftovers of a killed run; we hold the lock
                    taken.update(f.name for f in t.storage.list(folders[t.name]))
                except Exception as exc:
                    # One target out of reach (a missing bucket, a revoked key) must not cost the
                    # others their copy: it fails on its own, named, like a failed upload.
                    if len(self.targets) == 1:
                        raise
                    unreachable[t.name] = exc
            live = [t for t in self.targets if t.name not in unreachable]
            if not live:
                raise next(iter(unreachable.values()))
            # Free in every target: all copies of one backup share its name.
            name = naming.free_name(moment, zone, taken, self.dumper.suffix)
            repo.rename(log_id, name)
            with self.dumper.dump(log_id) as dump:
                chunks = iter(dump)
                try:
                    written = fan_out(
                        chunks, {t.name: self._writer(t.storage, folders[t.name], name, stored, t.name) for t in live}
                    )
                    results: dict[str, StoredFile | Exception] = {**unreachable, **written}
                finally:
                    # Stop pg_dump now: a backend may still hold the generator (in a traceback),
                    # and pg_dump's snapshot and locks must not outlive a failed upload.
                    chunks.close()
            stats = dump.stats
            path = f"{folder}/{name}"
            for t in self.targets:
                copy, ok = self._checked(t, results[t.name], dump, path)
                copies.append(copy)
                if ok is None:
                    stored.pop(t.name, None)  # deleted by the check, or never stored
            failed = [c for c in copies if c.status != "success"]
            if failed:
                # The complete copies stay, recorded; retention treats them as a failed attempt's.
                repo.record_copies(log_id, copies)
                keep = True
                raise StorageError(self._copies_reason(failed, copies))
            primary = stored[self.targets[0].name]
            # The copies first: once succeed() commits, nothing may undo the backup.
            repo.record_copies(log_id, copies)
            repo.succeed(
                log_id,
                size=primary.size,
                file_id=primary.id,
                path=path,
                md5=stats.md5,
                sql_bytes=stats.sql_bytes,
                backend=self.targets[0].name,
            )
            committed = True
            self._record_manifest(repo, log_id, stats.tables, stats.index)
            return BackupOutcome(
                status="success",
                backup_log_id=log_id,
                file_name=name,
                file_size_bytes=primary.size,
                path=path,
                file_id=primary.id,
                md5=stats.md5,
                sql_bytes=stats.sql_bytes,
                seconds=round(time.monotonic() - started, 3),
                copies=self._copies_out(copies),
                tables=len(stats.tables),
                counts=dict(stats.tables),
            )
        except BaseException as exc:
            if committed:
                raise  # only an interrupt gets here (the manifest's write is log-only): the backup stands
            reason = self._reason(exc)
            if not keep:
                # No copy of a failed attempt stays behind unless it is recorded as one.
                for t in self.targets:
                    if t.name in stored:
                        with contextlib.suppress(Exception):
                            t.storage.delete(stored[t.name].id)
            repo.fail(log_id, reason)
            self._alert_failure(repo, TRIGGERS[trigger], log_id, name, folder, reason)
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt / SystemExit: recorded, now let it stop us
            return BackupOutcome(
                status="failed",
                backup_log_id=log_id,
                file_name=name,
                path=f"{folder}/{name}",
                seconds=round(time.monotonic() - started, 3),
                reason=reason,
                copies=self._copies_out(copies),
            )

    def _writer(
        self, storage: Storage, folder: Folder, name: str, stored: dict[str, StoredFile], target: str
    ) -> Callable[[Iterator[bytes]], StoredFile]:
        """``put``, noting the file the moment it exists: if the run is then interrupted, the
        failure path still finds (and removes) every copy that was committed."""

        def write(chunks: Iterator[bytes]) -> StoredFile:
            stored[target] = result = storage.put(folder, name, chunks)
            return result

        return write

    def _checked(
        self, target: Target, result: StoredFile | Exception, dump: Dump, path: str
    ) -> tuple[Copy, StoredFile | None]:
        """The copy's record; a stored file that differs from what was written is deleted."""
        stats = dump.stats
        if isinstance(result, Exception):
            return Copy(target.name, "failed", path=path, reason=self._reason(result)), None
        if result.size != stats.gz_bytes or (result.md5 and result.md5 != stats.md5):
            with contextlib.suppress(Exception):
                target.storage.delete(result.id)
            reason = (
                f"stored file does not match what was written (size {result.size} vs"
                f" {stats.gz_bytes}, md5 {result.md5} vs {stats.md5})"
            )
            return Copy(target.name, "failed", path=path, reason=reason), None
        copy = Copy(target.name, "success", file_id=result.id, path=path, size=result.size, md5=stats.md5)
        return copy, result

    def _copies_reason(self, failed: list[Copy], copies: list[Copy]) -> str:
        if len(copies) == 1:
            return failed[0].reason or "the copy failed"
        done = [c.target for c in copies if c.status == "success"]
        text = "; ".join(f"{c.target}: {c.reason}" for c in failed)
        kept = f"; complete copies kept in {', '.join(done)}" if done else "; no target holds a copy"
        return f"not every target holds a copy: {text}{kept}"

    def _copies_out(self, copies: list[Copy]) -> list[dict[str, object]] | None:
        if len(self.targets) < 2:
            return None  # one target: the outcome's own fields say it all, as before
        return [
            {"target": c.target, "status": c.status, "file_id": c.file_id, "size": c.size, "reason": c.reason}
            for c in copies
        ]

    # --- alerts and the size check: each swallows its own errors, so a backup's outcome (and
    # the function's answer) is decided by the backup alone, never by SendGrid or a lookup.

    def _recover_stale(self, repo: BackupLog) -> None:
        """Rows a killed run left in_progress become failed ("interrupted"), and each is alerted:
        a run killed at the platform's timeout had no chance to say so itself."""
        for row in repo.recover_stale():
            self._alert_failure(
                repo,
                row.backup_type or "automatic",
                row.id,
                row.file_name or "",
                row.google_drive_path or "",
                INTERRUPTED,
            )

    def _alert_failure(
        self, repo: BackupLog, backup_type: str, log_id: str, name: str, folder: str, reason: str
    ) -> None:
        try:
            context = repo.alert_context()
            previous = context.previous
            failure = messages.BackupFailure(
                when=self.clock(),
                backup_type=backup_type,
                reason=reason,
                file_name=name,
                expected_size=previous.file_size_bytes if previous else None,
                drive_path=f"{folder}/{name}",
                backup_id=log_id,
                consecutive=max(context.consecutive_failures, 1),
                last_success=(previous.completed_at or previous.started_at) if previous else None,
            )
            email = messages.backup_failure_email(
                failure, self.settings.timezone, self.settings.environment, self.settings.organization
            )
            self.alerter.deliver(email, context.recipient)
        except Exception as exc:
            _log.error(
                "the failure alert for backup %s was not sent: %s", log_id, one_line(redact(str(exc), self.secrets))
            )

    def _alert_could_not_start(self, trigger: str, exc: BackupError) -> None:
        """Configuration and credential errors happen before any row exists: same e-mail, with
        no file or id. The recipient is read only when the database answered at all."""
        try:
            recipient = None
            if isinstance(exc, ConfigError):
                with contextlib.suppress(BackupError), self.open_log(attempts=1) as repo:
                    recipient = repo.notification_email()
            failure = messages.BackupFailure(
                when=self.clock(),
                backup_type=TRIGGERS.get(trigger, "automatic"),
                reason=one_line(redact(str(exc), self.secrets)),
                file_name=None,
                expected_size=None,
                drive_path=None,
                backup_id=None,
            )
            email = messages.backup_failure_email(
                failure, self.settings.timezone, self.settings.environment, self.settings.organization
            )
            self.alerter.deliver(email, recipient)
        except Exception as err:
            _log.error("the failure alert was not sent: %s", one_line(redact(str(err), self.secrets)))

    def _check_size(self, repo: BackupLog, outcome: BackupOutcome) -> None:
        """A backup far smaller than the previous successful one is how an emptied table shows:
        flag the row and send a warning. The backup stays a success (the dump is complete)."""
        percent = self.settings.size_warning_percent
        if outcome.status != "success" or not percent or outcome.file_size_bytes is None:
            return
        try:
            previous = repo.last_success(exclude_id=outcome.backup_log_id)
            before = previous.file_size_bytes if previous else None
            if not before or outcome.file_size_bytes * 100 >= before * percent:
                return
            assert previous is not None and outcome.backup_log_id and outcome.file_name and outcome.path
            share = 100 * outcome.file_size_bytes / before
            text = (
                f"{outcome.file_size_bytes:,} bytes is {share:.1f} % of the previous successful backup"
                f" ({before:,} bytes, {previous.file_name}); warning below {percent} %"
            )
            repo.flag_size_warning(outcome.backup_log_id, text)
            _log.warning("backup %s: size warning: %s", outcome.backup_log_id, text)
            email = messages.size_warning_email(
                self.clock(),
                self.settings.timezone,
                self.settings.environment,
                backup_id=outcome.backup_log_id,
                file_name=outcome.file_name,
                drive_path=outcome.path,
                size=outcome.file_size_bytes,
                previous_size=before,
                threshold_percent=percent,
                organization=self.settings.organization,
            )
            self.alerter.deliver(email, repo.notification_email())
        except Exception as exc:
            _log.error(
                "size check of backup %s failed: %s", outcome.backup_log_id, one_line(redact(str(exc), self.secrets))
            )

    def _record_manifest(
        self, repo: BackupLog, log_id: str, tables: dict[str, tuple[int, int]], index: seek_index.Index | None
    ) -> None:
        """The manifest goes on the row after the success is recorded: the backup is complete and
        stays a success even when this write fails (a database not migrated yet: logged). A
        seekable file's member index goes with it (``"index"``)."""
        try:
            stored = manifest.as_json(tables)
            if index is not None:
                stored["index"] = seek_index.as_json(index)
            repo.record_manifest(log_id, stored)
        except Exception as exc:
            _log.error(
                "the manifest of backup %s was not recorded: %s", log_id, one_line(redact(str(exc), self.secrets))
            )

    def _check_shrink(self, repo: BackupLog, outcome: BackupOutcome) -> None:
        """Tables that disappeared, were emptied or lost most of their rows since the previous
        successful backup: recorded on the row, returned, and one warning e-mail listing them all.
        Never a failure; nothing to compare with (a first backup, an older one without a
        manifest) is no warning."""
        if outcome.status != "success" or not outcome.backup_log_id:
            return
        s = self.settings
        try:
            previous = repo.previous_success(outcome.backup_log_id)
            before = manifest.rows_of(previous.manifest) if previous else None
            if previous is None or before is None:
                return
            after = {name: rows for name, (rows, _) in outcome.counts.items()}
            found = manifest.shrunk(before, after, s.shrink_warning_percent, s.shrink_min_rows)
            if not found:
                return
            now = self.clock()
            when = manifest.since(previous.started_at or now, now, s.timezone)
            outcome.warnings = [manifest.describe(shrink, when) for shrink in found]
            for line in outcome.warnings:
                _log.warning("backup %s: shrink warning: %s", outcome.backup_log_id, line)
            repo.flag_shrink(outcome.backup_log_id, outcome.warnings)
            email = messages.shrink_warning_email(
                now,
                s.timezone,
                s.environment,
                backup_id=outcome.backup_log_id,
                file_name=outcome.file_name or "",
                previous_file_name=previous.file_name or "",
                lines=outcome.warnings,
                threshold_percent=s.shrink_warning_percent,
                min_rows=s.shrink_min_rows,
                organization=s.organization,
            )
            self.alerter.deliver(email, repo.notification_email())
        except Exception as exc:
            _log.error(
                "shrink check of backup %s failed: %s", outcome.backup_log_id, one_line(redact(str(exc), self.secrets))
            )

    def _reason(self, exc: BaseException) -> str:
        if isinstance(exc, KeyboardInterrupt):
            return "interrupted: the backup was stopped by a signal (Ctrl-C / SIGTERM)"
        if isinstance(exc, SystemExit):
            return "interrupted: the process was asked to exit"
        text = str(exc) if isinstance(exc, BackupError) else f"unexpected error: {type(exc).__name__}: {exc}"
        return one_line(redact(text, self.secrets))
