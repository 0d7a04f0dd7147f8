"""The weekly restore drill (``verify_backup``): the latest successful backup, restored for real and
compared table by table with its manifest, the verdict recorded on its row.

Where it restores, in this order:

1. ``VERIFY_DATABASE_URL``, a scratch database the operator provides: refused when it is the
   backed-up database itself (same server and database name), else emptied first (every schema
   the role owns dropped, ``public`` created again);
2. a throwaway PostgreSQL started from the bundled server binaries, when the backup's SQL is at
   most ``VERIFY_MAX_SQL_BYTES`` (the data directory lives in /tmp, which is memory in Cloud
   Functions) and the deployment carries the server binaries;
3. otherwise nowhere: ``skipped``, with the reason.

An encrypted backup needs an identity (BACKUP_AGE_IDENTITY_SECRET); without one it is skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from dbbackup.core import naming
from dbbackup.core.alerts import Alerter
from dbbackup.core.ports import Email, OpenLog, Storage
from dbbackup.dump.age import Identities
from dbbackup.errors import BackupError, LockBusy
from dbbackup.pg import binaries as pgbin
from dbbackup.pg import catalog, scratch
from dbbackup.pg.embedded import EmbeddedPostgres
from dbbackup.redact import one_line, redact
from dbbackup.restore.sources import resolve
from dbbackup.restore.verify import VerifyReport, restore_and_compare

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
ANOTHER_DRILL = "another restore drill is running (the weekly drill or Verify now); try again when it has finished"
_log = logging.getLogger("dbbackup.drill")


@dataclass
class DrillResult:
    status: str  # passed | failed | skipped
    detail: str
    backup_log_id: str | None = None
    file_name: str | None = None
    target: str | None = None  # "scratch database" | "embedded PostgreSQL 18"
    tables: dict[str, dict[str, int | None]] | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class DrillConfig:
    database_url: str  # the backed-up database (never restored into)
    verify_url: str | None  # VERIFY_DATABASE_URL
    max_sql_bytes: int  # VERIFY_MAX_SQL_BYTES
    secrets: tuple[str, ...] = ()


class Drill:
    def __init__(
        self,
        config: DrillConfig,
        open_log: OpenLog,
        storage_for: Callable[[str], Storage],
        targets: tuple[str, ...],
        identities: Callable[[], Identities | None],
        alerter: Alerter,
        alert: Callable[[DrillResult], Email],
    ) -> None:
        """``storage_for`` builds the storage of a target named in ``targets`` (BACKUP_STORAGE's
        order: the drill reads the first good copy, as ``restore`` does)."""
        self.config, self.open_log = config, open_log
        self.storage_for, self.targets = storage_for, targets
        self.identities, self.alerter, self.alert = identities, alerter, alert

    def run(self, log_id: str | None = None, *, busy_raises: bool = False) -> DrillResult:
        """The drill of backup ``log_id`` (the console's "Verify now"), else of the latest
        successful one. Never raises for the drill's own failures: they are its verdict
        (recorded, alerted). ConfigError / DatabaseUnavailable when the log cannot be read at all.
        One drill at a time (an advisory lock on the app database): when another holds it, the
        drill is ``skipped`` (recorded, which never erases an earlier verdict), or LockBusy with
        ``busy_raises`` (Verify now: 409, nothing recorded)."""
        started = time.monotonic()
        with self.open_log() as repo, repo.drill_lock() as got:
            newest = [repo.get(log_id)] if log_id else repo.latest_successes(1)
            row = newest[0] if newest else None
            if row is None or row.status != "success":
                return DrillResult(
                    SKIPPED,
                    f"backup {log_id} is not a successful backup" if log_id else "no successful backup to verify",
                )
            if not got:
                if busy_raises:
                    raise LockBusy(ANOTHER_DRILL)
                result = DrillResult(SKIPPED, ANOTHER_DRILL, row.id, row.file_name)
            else:
                result = DrillResult(FAILED, "", row.id, row.file_name)
                try:
                    self._drill(row.id, row.file_name or "", row.sql_bytes, result)
                except BackupError as exc:
                    result.status, result.detail = FAILED, one_line(redact(str(exc), self.config.secrets))
                except Exception as exc:  # the verdict must be recorded whatever happened
                    text = f"unexpected error: {type(exc).__name__}: {exc}"
                    result.status, result.detail = FAILED, one_line(redact(text, self.config.secrets))
            result.seconds = round(time.monotonic() - started, 3)
            self._record(result)
        return result

    def _drill(self, log_id: str, file_name: str, sql_bytes: int | None, result: DrillResult) -> None:
        identities = None
        if file_name.endswith(naming.ENCRYPTED_SUFFIX):
            identities = self.identities()
            if identities is None:
                result.status = SKIPPED
                result.detail = "the backup is encrypted and no identity is configured (BACKUP_AGE_IDENTITY_SECRET)"
                return
        source = resolve(log_id, lambda: (self.open_log, self.storage_for, self.targets))
        report = VerifyReport(source.label)
        if self.config.verify_url:
            url = self.config.verify_url
            scratch.refuse_same_database(url, self.config.database_url, self.config.secrets)
            scratch.empty(url, self.config.secrets)
            result.target = "scratch database (VERIFY_DATABASE_URL)"
            restore_and_compare(source, url, report, identities, where="the scratch database")
        else:
            limit = self.config.max_sql_bytes
            if sql_bytes is None or sql_bytes > limit:
                size = "unknown" if sql_bytes is None else f"{sql_bytes:,} bytes"
                result.status = SKIPPED
                result.detail = (
                    f"the backup's SQL ({size}) is larger than VERIFY_MAX_SQL_BYTES ({limit:,}) and no"
                    " VERIFY_DATABASE_URL is set"
                )
                return
            if not pgbin.has_server():
                result.status = SKIPPED
                result.detail = (
                    "this deployment carries no PostgreSQL server binaries and no VERIFY_DATABASE_URL is set"
                )
                return
            result.target = "embedded PostgreSQL 18"
            with EmbeddedPostgres() as pg:
                # The backup's policies and grants name the live server's roles (Supabase's
                # authenticated, service_role, ...); a fresh server has none of them.
                roles = catalog.role_names(self.config.database_url, self.config.secrets)
                catalog.create_missing_roles(pg.url(), roles)
                catalog.create_databases(pg.url(), "restore_drill")
                restore_and_compare(source, pg.url("restore_drill"), report, identities, where="PostgreSQL 18")
        result.tables = report.tables
        failed = [c for c in report.checks if not c.ok]
        if failed:
            result.status, result.detail = FAILED, "; ".join(f"{c.name}: {c.detail}" for c in failed)
            return
        result.status = PASSED
        result.detail = "; ".join(c.detail for c in report.checks if c.name in ("restore", "restored md5", "manifest"))

    def _record(self, result: DrillResult) -> None:
        log = _log.error if result.status == FAILED else _log.info
        log("restore drill of %s: %s: %s", result.backup_log_id, result.status, result.detail)
        if result.backup_log_id:
            try:
                with self.open_log() as repo:
                    repo.record_verification(result.backup_log_id, result.status, result.detail)
            except BackupError as exc:
                _log.error("the drill's verdict was not recorded: %s", one_line(redact(str(exc), self.config.secrets)))
        if result.status == FAILED:
            try:
                recipient = None
                with self.open_log(attempts=1) as repo:
                    recipient = repo.notification_email()
            except BackupError:
                pass
            try:
                self.alerter.deliver(self.alert(result), recipient)
            except Exception as exc:
                _log.error(
                    "the drill's failure alert was not sent: %s", one_line(redact(str(exc), self.config.secrets))
                )
