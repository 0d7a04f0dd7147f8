"""Retention: the pure classifier (each rule, the exact boundary), then the deleting step on a real
PostgreSQL and a real storage backend, written against the Storage protocol so that every
backend in ``backend``'s params runs the same promises."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from dbbackup.core import naming, retention
from dbbackup.core.cleanup import CleanupJob
from dbbackup.errors import LockBusy, StorageError, StorageRetained
from dbbackup.notify.log import LogNotifier
from dbbackup.pg.backup_log import BACKUP_LOCK_KEY, CLEANUP_LOCK_KEY
from dbbackup.settings import Settings
from dbbackup.storage import Folder, Storage, StoredFile
from dbbackup.storage.local import LocalStorage
from dbbackup.wiring import alerter_for, cleanup_job
from fakes import drive_env, make_drive_storage
from support.db import wait_until_gone

pytest_plugins = ["fakes.fixtures"]  # drive_fake, drive_user

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
FOLDER = "MyDrive/DatabaseBackups"


def name_at(moment: datetime, tz: ZoneInfo = BERLIN, seq: int = 1, suffix: str = naming.SUFFIX) -> str:
    return naming.with_sequence(naming.base_name(moment, tz, suffix), seq)


def stored(name: str, size: int = 100) -> StoredFile:
    return StoredFile(id=f"{FOLDER}/{name}", name=name, size=size, path=name)


def plan_for(files: list[StoredFile], statuses: dict[str, str] | None = None, keep_min: int = 1) -> retention.Plan:
    return retention.classify(files, now=NOW, tz=BERLIN, retention_days=15, keep_min=keep_min, statuses=statuses)


def verdicts(plan: retention.Plan) -> dict[str, tuple[str, str]]:
    return {d.file.name: (d.action, d.reason) for d in plan.decisions}


# --- the classifier ---------------------------------------------------------------------------


def test_older_than_15_days_means_more_than_15_times_24_hours_before_now() -> None:
    exactly = stored(name_at(NOW - timedelta(days=15)))
    one_minute_older = stored(name_at(NOW - timedelta(days=15, minutes=1)))
    one_minute_younger = stored(name_at(NOW - timedelta(days=15) + timedelta(minutes=1)))
    newest = stored(name_at(NOW - timedelta(hours=1)))
    plan = plan_for([exactly, one_minute_older, one_minute_younger, newest])
    # The name is local time in BACKUP_TIMEZONE: 04:00 in Berlin is 03:00 UTC, exactly 15 days back.
    assert exactly.name == "DB_Backup_2026-11-10_04-00.sql.gz"
    assert verdicts(plan) == {
        exactly.name: ("keep", retention.WITHIN),
        one_minute_younger.name: ("keep", retention.WITHIN),
        one_minute_older.name: ("delete", retention.EXPIRED),
        newest.name: ("keep", retention.WITHIN),
    }
    assert plan.cutoff == NOW - timedelta(days=15)


def test_the_boundary_is_elapsed_time_across_a_daylight_saving_change() -> None:
    # 2026-03-29 Berlin springs forward: 15 days before 2026-04-05 01:00 UTC is 2026-03-21 01:00 UTC,
    # which Berlin (still on winter time then) named 02:00. A wall-clock subtraction would be an hour off.
    now = datetime(2026, 4, 5, 1, 0, tzinfo=UTC)
    exactly = stored("DB_Backup_2026-03-21_02-00.sql.gz")
    older = stored("DB_Backup_2026-03-21_01-59.sql.gz")
    newest = stored(name_at(now))
    plan = retention.classify([exactly, older, newest], now=now, tz=BERLIN, retention_days=15, keep_min=1)
    assert verdicts(plan)[exactly.name] == ("keep", retention.WITHIN)
    assert verdicts(plan)[older.name] == ("delete", retention.EXPIRED)


def test_names_that_do_not_match_the_backup_pattern_exactly_are_never_touched() -> None:
    old = NOW - timedelta(days=400)
    strangers = [
        "notes.txt",
        name_at(old).removesuffix(".gz"),
        name_at(old).replace("DB_Backup_", "db_backup_"),
        name_at(old).replace(".sql.gz", "_1.sql.gz"),  # _1 is never written: not ours
        name_at(old).replace(".sql.gz", "_02.sql.gz"),
        "DB_Backup_2025-13-01_01-00.sql.gz",  # no month 13
        "DB_Backup_2025-02-30_01-00.sql.gz",  # no 30 February
        "DB_Backup_2025-01-01_24-00.sql.gz",
        "x" + name_at(old),
        name_at(old) + ".bak",
    ]
    ours = [stored(name_at(old, seq=2)), stored(name_at(NOW - timedelta(hours=2)))]
    plan = plan_for([stored(n) for n in strangers] + ours)
    assert sorted(f.name for f in plan.ignored) == sorted(strangers)
    assert verdicts(plan) == {
        ours[0].name: ("delete", retention.EXPIRED),
        ours[1].name: ("keep", retention.WITHIN),
    }


def test_the_newest_keep_min_successful_backups_survive_however_old() -> None:
    # Backups stopped 40 days ago: without the floor, cleanup would delete every copy.
    files = [stored(name_at(NOW - timedelta(days=40 + i))) for i in range(6)]
    plan = plan_for(files, keep_min=3)
    assert [d.file.name for d in plan.with_reason(retention.FLOOR)] == [f.name for f in files[:3]][::-1]
    assert sorted(d.file.name for d in plan.with_action("delete")) == sorted(f.name for f in files[3:])


def test_failed_backups_do_not_count_toward_the_safety_floor() -> None:
    good_old = stored(name_at(NOW - timedelta(days=60)))
    failed_newer = [stored(name_at(NOW - timedelta(days=20 + i))) for i in range(3)]
    statuses = {f.id: retention.ROW_FAILED for f in failed_newer} | {good_old.id: retention.ROW_SUCCESS}
    plan = plan_for([good_old, *failed_newer], statuses, keep_min=1)
    assert verdicts(plan)[good_old.name] == ("keep", retention.FLOOR)
    assert all(verdicts(plan)[f.name] == ("delete", retention.EXPIRED) for f in failed_newer)


def test_the_floor_counts_only_complete_backups_and_orders_same_minute_suffixes() -> None:
    base = NOW - timedelta(days=30)
    first, second, third = (stored(name_at(base, seq=s)) for s in (1, 2, 3))
    plan = plan_for([third, first, second], keep_min=2)
    assert verdicts(plan) == {
        third.name: ("keep", retention.FLOOR),
        second.name: ("keep", retention.FLOOR),
        first.name: ("delete", retention.EXPIRED),
    }


def test_future_dated_and_in_progress_files_are_kept_and_do_not_use_floor_slots() -> None:
    future = stored(name_at(NOW + timedelta(days=2)))
    running = stored(name_at(NOW - timedelta(days=90)))
    old_good = [stored(name_at(NOW - timedelta(days=50 + i))) for i in range(3)]
    statuses = {running.id: retention.ROW_IN_PROGRESS}
    plan = plan_for([future, running, *old_good], statuses, keep_min=2)
    assert verdicts(plan)[future.name] == ("keep", retention.FUTURE)
    assert verdicts(plan)[running.name] == ("keep", retention.IN_PROGRESS)
    assert [d.file.name for d in plan.with_reason(retention.FLOOR)] == [old_good[1].name, old_good[0].name]
    assert [d.file.name for d in plan.with_action("delete")] == [old_good[2].name]


def test_row_status_prefers_a_running_backup_then_any_success() -> None:
    assert retention.row_status(["failed", "success"]) == "success"
    assert retention.row_status(["success", "in_progress"]) == "in_progress"
    assert retention.row_status([]) == "none"


# --- the deleting step, on every backend ----------------------------------------------------------


@dataclass
class Backend:
    name: str
    storage: Storage
    env: dict[str, str]


@pytest.fixture(params=["local", "google_drive"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each storage backend the cleanup must work on; Drive through its fake server and the real
    Google client libraries."""
    if request.param == "local":
        root = tmp_path / "store"
        return Backend("local", LocalStorage(root), {"BACKUP_LOCAL_ROOT": str(root)})
    fake = request.getfixturevalue("drive_fake")
    user = request.getfixturevalue("drive_user")
    return Backend("google_drive", make_drive_storage(fake, user), drive_env(fake, user))


@dataclass
class World:
    url: str
    backend: Backend
    folder: Folder

    def settings(self, **env: str) -> Settings:
        return Settings.from_env(
            {"DATABASE_URL": self.url, "BACKUP_TIMEZONE": "Europe/Berlin", **self.backend.env, **env}
        )

    def job(self, storage: Storage | None = None, **env: str) -> CleanupJob:
        settings = self.settings(**env)
        alerter = alerter_for(settings, notifier=LogNotifier(), sleep=lambda _: None)
        return cleanup_job(settings, storage=storage or self.backend.storage, alerter=alerter, clock=lambda: NOW)

    def put(
        self,
        moment: datetime,
        status: str = "success",
        size: int = 1000,
        seq: int = 1,
        row: str = "id",
        suffix: str = naming.SUFFIX,
    ) -> str:
        """A backup file in storage plus its backup_logs row (matched by file id, by name only, or none)."""
        name = name_at(moment, seq=seq, suffix=suffix)
        f = self.backend.storage.put(self.folder, name, [b"x" * size])
        if row != "none":
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO backup_logs (backup_type, status, file_name, file_size_bytes, google_drive_file_id,"
                    " google_drive_path, started_at, completed_at) VALUES ('automatic', %s, %s, %s, %s, %s, %s, %s)",
                    (status, name, size, f.id if row == "id" else None, f"{FOLDER}/{name}", moment, moment),
                )
        return name

    def names(self) -> set[str]:
        return {f.name for f in self.backend.storage.list(self.folder)}

    def deleted_at(self, name: str) -> list[datetime | None]:
        with psycopg.connect(self.url) as conn:
            return [r[0] for r in conn.execute("SELECT deleted_at FROM backup_logs WHERE file_name = %s", (name,))]


@pytest.fixture
def world(migrated_url: str, backend: Backend) -> World:
    return World(migrated_url, backend, backend.storage.ensure_folder(FOLDER))


def test_cleanup_deletes_expired_backups_records_them_and_counts_bytes_freed(world: World) -> None:
    keep = [world.put(NOW - timedelta(days=d)) for d in (0.1, 1, 2)]
    by_id = world.put(NOW - timedelta(days=16), size=1500)
    by_name = world.put(NOW - timedelta(days=17), size=2500, row="name")
    no_row = world.put(NOW - timedelta(days=18), size=500, row="none")
    world.backend.storage.put(world.folder, "README.txt", [b"hands off"])

    result = world.job().run()

    assert result.status == "success" and not result.dry_run
    assert sorted(result.deleted) == sorted([by_id, by_name, no_row])
    assert result.bytes_freed == 1500 + 2500 + 500
    assert (result.examined, result.matched, result.ignored) == (7, 6, 1)
    assert result.kept_within_retention == 3 and result.kept_by_safety_floor == [] and result.failed == []
    assert world.names() == {*keep, "README.txt"}
    for name in (by_id, by_name):
        assert all(world.deleted_at(name)), name
    assert not any(world.deleted_at(keep[0]))


def test_encrypted_backups_are_pruned_and_floored_like_plain_ones(world: World) -> None:
    # Encryption was switched on ten days ago: the history holds both kinds of file.
    age = naming.ENCRYPTED_SUFFIX
    recent = [world.put(NOW - timedelta(days=d), suffix=age) for d in (0.1, 1, 9)]
    plain_recent = world.put(NOW - timedelta(days=11))
    expired = [world.put(NOW - timedelta(days=16), suffix=age), world.put(NOW - timedelta(days=17))]
    result = world.job().run()
    assert sorted(result.deleted) == sorted(expired) and result.failed == []
    assert world.names() == {*recent, plain_recent}
    assert all(world.deleted_at(expired[0]))
    # With only old encrypted copies left, the floor keeps the newest of them.
    floor = [world.put(NOW - timedelta(days=d), suffix=age) for d in (40, 41)]
    kept = world.job(BACKUP_RETENTION_DAYS="30", BACKUP_KEEP_MIN="5").run()  # 4 recent + the newest old one
    assert kept.kept_by_safety_floor == [floor[0]] and kept.deleted == [floor[1]]


def test_the_safety_floor_keeps_the_last_good_copies_when_backups_stopped(world: World) -> None:
    # Three weeks of failures: the only good copies are older than the retention window.
    good = [world.put(NOW - timedelta(days=d)) for d in (22, 23, 24, 25)]
    failed_file = world.put(NOW - timedelta(days=21), status="failed")
    result = world.job().run()
    assert sorted(result.kept_by_safety_floor) == sorted(good[:3])
    assert sorted(result.deleted) == sorted([good[3], failed_file])
    assert world.names() == set(good[:3])


def test_keep_min_is_configurable(world: World) -> None:
    names = [world.put(NOW - timedelta(days=d)) for d in (30, 31, 32)]
    result = world.job(BACKUP_KEEP_MIN="1", BACKUP_RETENTION_DAYS="29").run()
    assert result.kept_by_safety_floor == [names[0]] and sorted(result.deleted) == sorted(names[1:])


class FailingDeletes:
    """Any backend, whose delete fails for chosen file ids (a permission error, a Drive 500)."""

    def __init__(self, inner: Storage, fail_ids: set[str]) -> None:
        self.inner = inner
        self.fail_ids = fail_ids

    def __getattr__(self, attr: str) -> object:
        return getattr(self.inner, attr)

    def delete(self, file_id: str) -> None:
        if file_id in self.fail_ids:
            raise StorageError(f"cannot delete {file_id}: Permission denied")
        self.inner.delete(file_id)


def test_a_file_that_fails_to_delete_is_reported_and_the_others_are_still_deleted(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    [world.put(NOW - timedelta(days=d)) for d in (1, 2, 3)]
    expired = [world.put(NOW - timedelta(days=d)) for d in (20, 21, 22)]
    stuck = {f.id for f in world.backend.storage.list(world.folder) if f.name == expired[1]}
    with caplog.at_level(logging.INFO):
        result = world.job(storage=FailingDeletes(world.backend.storage, stuck)).run()  # type: ignore[arg-type]
    assert result.status == "failed"
    assert sorted(result.deleted) == sorted([expired[0], expired[2]])
    assert result.failed == [{"file": expired[1], "reason": f"cannot delete {stuck.pop()}: Permission denied"}]
    assert expired[1] in world.names() and expired[0] not in world.names()
    assert not any(world.deleted_at(expired[1])) and all(world.deleted_at(expired[0]))
    assert "cleanup_failed" in result.alerts
    assert any("Cleanup Failed" in r.getMessage() and expired[1] in r.getMessage() for r in caplog.records)


class RetainedDeletes(FailingDeletes):
    """A store that refuses to delete chosen files before their retention ends (GCS retention
    policy, S3 Object Lock), as the object-store backends report it."""

    def delete(self, file_id: str) -> None:
        if file_id in self.fail_ids:
            raise StorageRetained(f"{file_id} is retained until 2030-01-02 03:04 UTC; not deleted")
        self.inner.delete(file_id)


def test_a_file_its_store_still_retains_is_reported_as_kept_not_as_a_failure(world: World) -> None:
    [world.put(NOW - timedelta(days=d)) for d in (1, 2, 3)]
    expired = [world.put(NOW - timedelta(days=d)) for d in (20, 21)]
    locked = {f.id for f in world.backend.storage.list(world.folder) if f.name == expired[0]}
    result = world.job(storage=RetainedDeletes(world.backend.storage, locked)).run()  # type: ignore[arg-type]
    assert result.status == "success" and result.failed == [] and result.alerts == []
    assert result.deleted == [expired[1]]
    assert [k["file"] for k in result.kept_retained] == [expired[0]]
    assert "retained until 2030-01-02" in result.kept_retained[0]["reason"]
    assert expired[0] in world.names() and not any(world.deleted_at(expired[0]))


def test_a_file_already_gone_counts_as_deleted_and_the_run_goes_on(world: World) -> None:
    expired = [world.put(NOW - timedelta(days=d)) for d in (20, 21)]
    [world.put(NOW - timedelta(days=d)) for d in (1, 2, 3)]
    # By the backend's own id (a path on local, an opaque id on Drive), so the trigger fires on every backend.
    [gone_id] = [f.id for f in world.backend.storage.list(world.folder) if f.name == expired[0]]
    removed_first: list[str] = []

    class VanishesFirst(FailingDeletes):
        def delete(self, file_id: str) -> None:
            if file_id == gone_id:
                self.inner.delete(file_id)  # someone else removed it between listing and deleting
                removed_first.append(file_id)
            self.inner.delete(file_id)

    result = world.job(storage=VanishesFirst(world.backend.storage, set())).run()  # type: ignore[arg-type]
    assert removed_first == [gone_id]  # the job really met a file already gone
    assert result.status == "success" and sorted(result.deleted) == sorted(expired)
    assert world.names().isdisjoint(expired)


def test_dry_run_reports_the_same_plan_and_changes_nothing(world: World) -> None:
    [world.put(NOW - timedelta(days=d)) for d in (1, 2, 3)]
    [world.put(NOW - timedelta(days=d), size=700) for d in (20, 21)]
    before = world.names()
    dry = world.job().run(dry_run=True)
    assert dry.dry_run and world.names() == before
    with psycopg.connect(world.url) as conn:
        assert conn.execute("SELECT count(*) FROM backup_logs WHERE deleted_at IS NOT NULL").fetchone()[0] == 0
    real = world.job().run()
    assert (sorted(dry.deleted), dry.bytes_freed, dry.examined) == (sorted(real.deleted), real.bytes_freed, 5)
    assert len(real.deleted) == 2 and world.names() == before - set(real.deleted)


def test_the_file_of_a_running_backup_is_kept(world: World) -> None:
    running = world.put(NOW - timedelta(days=40), status="in_progress", row="name")
    [world.put(NOW - timedelta(days=d)) for d in (1, 2, 3)]
    with psycopg.connect(world.url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (BACKUP_LOCK_KEY,))
        result = world.job().run()
    assert result.backup_running and result.kept_in_progress == [running]
    assert running in world.names() and result.deleted == []


def test_a_cleanup_never_runs_beside_another_cleanup(world: World) -> None:
    old = world.put(NOW - timedelta(days=40))
    with psycopg.connect(world.url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (CLEANUP_LOCK_KEY,))
        with pytest.raises(LockBusy, match="another cleanup"):
            world.job(BACKUP_KEEP_MIN="1").run()
    assert old in world.names()


def test_a_running_backup_does_not_block_cleanup_and_cleanup_does_not_take_its_lock(world: World) -> None:
    world.put(NOW - timedelta(days=1))
    with psycopg.connect(world.url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (BACKUP_LOCK_KEY,))
        holder_pid = holder.info.backend_pid
        assert world.job().run().status == "success"
    wait_until_gone(world.url, holder_pid)
    with psycopg.connect(world.url, autocommit=True) as other:
        # Released afterwards, and never held by the cleanup's session.
        assert other.execute("SELECT pg_try_advisory_lock(%s)", (BACKUP_LOCK_KEY,)).fetchone()[0]


def test_a_missed_run_is_reported_when_no_backup_succeeded_within_max_age(world: World) -> None:
    world.put(NOW - timedelta(hours=27))
    stale = world.job().run()
    assert stale.missed_run and "missed_run" in stale.alerts
    assert not world.job(BACKUP_MAX_AGE_HOURS="28").run().missed_run
    assert world.job().run(dry_run=True).alerts == []  # a dry run reports, never e-mails
