"""The backup and cleanup orchestration on its protocols alone: an in-memory backup log and dump,
a real local folder, a recording notifier; no PostgreSQL. The same promises are tested against
real servers elsewhere (test_backup, test_failures, test_retention); here each one is a few lines."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dbbackup.core.alerts import Alerter
from dbbackup.core.backup import INTERRUPTED, BackupJob
from dbbackup.core.cleanup import CleanupJob
from dbbackup.core.ports import (
    AlertContext,
    BackupConfig,
    Copy,
    DumpStats,
    Email,
    HealthFacts,
    LogRow,
    StoredFile,
)
from dbbackup.errors import BackupFailed, LockBusy
from dbbackup.storage.dryrun import DryRunStorage
from dbbackup.storage.local import LocalStorage

NOW = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
FOLDER = "MyDrive/DatabaseBackups"


@dataclass(frozen=True)
class Policy:
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    environment: str = "test"
    organization: str = "Test Portal"
    size_warning_percent: int = 50
    retention_days: int = 15
    keep_min: int = 3
    max_age_hours: int = 26
    shrink_warning_percent: int = 50
    shrink_min_rows: int = 1000
    keep_weekly: int = 0
    keep_monthly: int = 0
    secrets: tuple[str, ...] = ("s3cret",)
    storage: str = "local"


@dataclass
class MemoryLog:
    """``core.ports.BackupLog`` over a list of rows."""

    rows: list[LogRow] = field(default_factory=list)
    locked: bool = False
    email: str | None = "ops@example.com"
    recorded: dict[str, list[Copy]] = field(default_factory=dict)
    stored: dict[str, object] = field(default_factory=dict)  # what a manager set in the console

    def _set(self, log_id: str, **changes: object) -> None:
        self.rows = [replace(r, **changes) if r.id == log_id else r for r in self.rows]

    def config(self) -> BackupConfig:
        return BackupConfig(FOLDER, self.email, True, **self.stored)

    def notification_email(self) -> str | None:
        return self.email

    def try_lock(self) -> bool:
        if self.locked:
            return False
        self.locked = True
        return True

    def unlock(self) -> None:
        self.locked = False

    def backup_lock_held(self) -> bool:
        return self.locked

    @contextlib.contextmanager
    def cleanup_lock(self) -> Iterator[bool]:
        yield True

    def recover_stale(self) -> list[LogRow]:
        stale = [r for r in self.rows if r.status == "in_progress"]
        for r in stale:
            self._set(r.id, status="failed", failure_reason=INTERRUPTED)
        return stale

    def succeeded_for_schedule(self, schedule_time: datetime) -> LogRow | None:
        return next((r for r in self.rows if r.schedule_time == schedule_time and r.status == "success"), None)

    def start(
        self, backup_type: str, file_name: str, path: str, triggered_by: str | None, schedule_time: datetime | None
    ) -> str:
        row = LogRow(
            f"id-{len(self.rows)}",
            backup_type,
            "in_progress",
            file_name,
            google_drive_path=path,
            started_at=NOW,
            schedule_time=schedule_time,
        )
        self.rows.append(row)
        return row.id

    def rename(self, log_id: str, file_name: str) -> None:
        self._set(log_id, file_name=file_name)

    def succeed(
        self, log_id: str, *, size: int, file_id: str, path: str, md5: str, sql_bytes: int, backend: str
    ) -> None:
        self._set(
            log_id,
            status="success",
            file_size_bytes=size,
            google_drive_file_id=file_id,
            md5_checksum=md5,
            storage_backend=backend,
        )

    def fail(self, log_id: str, reason: str) -> None:
        self._set(log_id, status="failed", failure_reason=reason)

    def record_copies(self, log_id: str, copies: Sequence[Copy]) -> None:
        self.recorded[log_id] = list(copies)

    def copies(self, log_id: str) -> list[Copy]:
        return self.recorded.get(log_id, [])

    def alert_context(self) -> AlertContext:
        return AlertContext(self.last_success(), sum(r.status == "failed" for r in self.rows), self.email)

    def last_success(self, exclude_id: str | None = None) -> LogRow | None:
        done = [r for r in self.rows if r.status == "success" and r.id != exclude_id]
        return done[-1] if done else None

    def get(self, log_id: str) -> LogRow | None:
        return next((r for r in self.rows if r.id == log_id), None)

    def latest_successes(self, limit: int) -> list[LogRow]:
        return [r for r in reversed(self.rows) if r.status == "success" and r.deleted_at is None][:limit]

    def by_file_name(self, file_name: str, size: int | None = None) -> LogRow | None:
        found = [r for r in reversed(self.rows) if r.file_name == file_name and r.status == "success"]
        return next((r for r in found if r.file_size_bytes == size), found[0] if found else None)

    def flag_size_warning(self, log_id: str, text: str) -> None:
        self._set(log_id, size_warning=text)

    def record_manifest(self, log_id: str, manifest: dict) -> None:
        self._set(log_id, manifest=manifest)

    def flag_shrink(self, log_id: str, lines: Sequence[str]) -> None:
        self._set(log_id, shrink_warnings=list(lines))

    def previous_success(self, exclude_id: str) -> LogRow | None:
        return self.last_success(exclude_id)

    def record_verification(self, log_id: str, status: str, detail: str) -> None:
        self._set(log_id, verified_at=NOW, verify_status=status, verify_detail=detail)

    def last_verified(self) -> LogRow | None:
        done = [r for r in self.rows if r.verified_at is not None]
        return done[-1] if done else None

    def health_facts(self, now: datetime) -> HealthFacts:
        last = self.last_success()
        return HealthFacts(last, None, None, None, 0, len(self.rows), len(self.rows), len(self.rows), len(self.rows))

    def row_statuses(self, files: Sequence[StoredFile]) -> dict[str, list[str]]:
        return {f.id: [r.status or "" for r in self.rows if r.file_name == f.name] for f in files}

    def mark_deleted(self, f: StoredFile, target: str | None = None, primary: bool = True) -> int:
        hits = [r for r in self.rows if r.file_name == f.name]
        for r in hits:
            self._set(r.id, deleted_at=NOW)
        return len(hits)


class MemoryDump:
    """``core.ports.Dump``: gzip of ``sql``; ``fail_after`` chunks raises as a dying pg_dump does."""

    def __init__(self, sql: bytes, fail_after: int | None = None) -> None:
        self.sql, self.fail_after = sql, fail_after
        self.stats = DumpStats()
        self.stopped = False

    def __iter__(self) -> Generator[bytes]:
        data = gzip.compress(self.sql)
        pieces = [data[i : i + 100] for i in range(0, len(data), 100)]
        try:
            for n, piece in enumerate(pieces):
                if self.fail_after is not None and n >= self.fail_after:
                    raise BackupFailed("pg_dump exited with status 1: connection lost")
                self.stats.gz_bytes += len(piece)
                yield piece
            self.stats.sql_bytes, self.stats.md5 = len(self.sql), hashlib.md5(data).hexdigest()
        finally:
            self.stopped = True


@dataclass
class MemoryDumper:
    dump_: MemoryDump
    suffix: str = ".sql.gz"

    def check_target(self) -> None:
        pass

    def prepare(self) -> None:
        pass

    @contextlib.contextmanager
    def dump(self, log_id: str) -> Iterator[MemoryDump]:
        yield self.dump_


@dataclass
class Outbox:
    """``core.ports.Notifier`` that keeps what it was given."""

    name: str = "outbox"
    sent: list[tuple[str, Email]] = field(default_factory=list)

    def send(self, to: str, email: Email) -> None:
        self.sent.append((to, email))


def backup_job(log: MemoryLog, root: Path, dump: MemoryDump, outbox: Outbox) -> BackupJob:
    @contextlib.contextmanager
    def open_log(attempts: int | None = None) -> Iterator[MemoryLog]:
        yield log

    return BackupJob(Policy(), open_log, LocalStorage(root), MemoryDumper(dump), Alerter(outbox), lambda: NOW)


def test_a_dump_that_dies_mid_stream_leaves_a_failed_row_no_file_and_an_alert(tmp_path: Path) -> None:
    log, outbox, dump = MemoryLog(), Outbox(), MemoryDump(b"COPY t FROM stdin;\n" * 5000, fail_after=2)
    outcome = backup_job(log, tmp_path, dump, outbox).run("scheduled")
    assert outcome.status == "failed" and "connection lost" in (outcome.reason or "")
    assert [r.status for r in log.rows] == ["failed"] and dump.stopped and not log.locked
    assert list((tmp_path / FOLDER).iterdir()) == []  # not even a temporary file
    [(to, email)] = outbox.sent
    assert to == "ops@example.com" and email.kind == "backup_failed" and "connection lost" in email.text


def test_a_complete_dump_is_stored_and_recorded_with_its_size_and_md5(tmp_path: Path) -> None:
    log, outbox, dump = MemoryLog(), Outbox(), MemoryDump(b"SELECT 1;\n" * 1000)
    outcome = backup_job(log, tmp_path, dump, outbox).run("manual", triggered_by="a manager")
    [row] = log.rows
    assert outcome.status == "success" and row.status == "success" and row.backup_type == "manual"
    stored = (tmp_path / FOLDER / "DB_Backup_2026-11-20_01-00.sql.gz").read_bytes()
    assert gzip.decompress(stored) == dump.sql and row.file_size_bytes == len(stored) == outcome.file_size_bytes
    assert row.md5_checksum == dump.stats.md5 and outbox.sent == []


def test_a_row_a_killed_run_left_in_progress_is_failed_and_alerted_first(tmp_path: Path) -> None:
    log = MemoryLog([LogRow("old", "automatic", "in_progress", "DB_Backup_2026-11-19_01-00.sql.gz")])
    outbox = Outbox()
    assert backup_job(log, tmp_path, MemoryDump(b"SELECT 1;\n"), outbox).run("scheduled").status == "success"
    old = log.get("old")
    assert old is not None and (old.status, old.failure_reason) == ("failed", INTERRUPTED)
    assert [e.kind for _, e in outbox.sent] == ["backup_failed"] and INTERRUPTED in outbox.sent[0][1].text


def test_a_held_lock_refuses_the_backup_without_a_row_or_an_alert(tmp_path: Path) -> None:
    log, outbox = MemoryLog(locked=True), Outbox()
    with pytest.raises(LockBusy):
        backup_job(log, tmp_path, MemoryDump(b"SELECT 1;\n"), outbox).run("scheduled")
    assert log.rows == [] and outbox.sent == []


def test_cleanup_deletes_only_expired_files_and_a_dry_run_deletes_nothing(tmp_path: Path) -> None:
    storage, log = LocalStorage(tmp_path), MemoryLog()
    folder = storage.ensure_folder(FOLDER)
    for days in (1, 2, 3, 20, 21):
        name = f"DB_Backup_{NOW - timedelta(days=days):%Y-%m-%d_%H-%M}.sql.gz"
        storage.put(folder, name, [gzip.compress(b"x")])
        log.rows.append(LogRow(f"r{days}", "automatic", "success", name))

    @contextlib.contextmanager
    def open_log(attempts: int | None = None) -> Iterator[MemoryLog]:
        yield log

    job = CleanupJob(Policy(), open_log, storage, Alerter(Outbox()), lambda: NOW, dry_run_storage=DryRunStorage)
    dry = job.run(dry_run=True)
    assert len(storage.list(folder)) == 5 and all(r.deleted_at is None for r in log.rows)
    real = job.run()
    assert sorted(dry.deleted) == sorted(real.deleted) and len(real.deleted) == 2
    assert sorted(f.name for f in storage.list(folder)) == sorted(
        f"DB_Backup_{NOW - timedelta(days=d):%Y-%m-%d_%H-%M}.sql.gz" for d in (1, 2, 3)
    )
    assert {r.id for r in log.rows if r.deleted_at} == {"r20", "r21"}


def test_the_consoles_zone_names_the_file_and_its_retention_counts_rule_the_cleanup(tmp_path: Path) -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    log = MemoryLog(stored={"time_zone": tokyo, "retention_days": 2, "keep_weekly": 1})
    outcome = backup_job(log, tmp_path, MemoryDump(b"SELECT 1;\n"), Outbox()).run("manual")
    assert outcome.file_name == "DB_Backup_2026-11-20_10-00.sql.gz"  # 01:00 UTC is 10:00 in Tokyo, not UTC's
    storage = LocalStorage(tmp_path)
    folder = storage.ensure_folder(FOLDER)
    for days in (3, 4, 5, 9):  # named in the backup's zone, as the backup names them
        name = f"DB_Backup_{(NOW - timedelta(days=days)).astimezone(tokyo):%Y-%m-%d_%H-%M}.sql.gz"
        storage.put(folder, name, [gzip.compress(b"x")])
        log.rows.append(LogRow(f"r{days}", "automatic", "success", name))

    @contextlib.contextmanager
    def open_log(attempts: int | None = None) -> Iterator[MemoryLog]:
        yield log

    job = CleanupJob(Policy(), open_log, storage, Alerter(Outbox()), lambda: NOW, dry_run_storage=DryRunStorage)
    result = job.run()
    # retention_days 2 (Policy says 15): the safety floor (3) keeps today's and the two next, the
    # weekly rule this ISO week's newest (today's); those of 5 and 9 days ago go.
    assert (result.retention_days, result.keep_weekly, result.keep_monthly) == (2, 1, 0)
    assert datetime.fromisoformat(result.cutoff) == NOW - timedelta(days=2)
    assert {r.id for r in log.rows if r.deleted_at} == {"r5", "r9"}
