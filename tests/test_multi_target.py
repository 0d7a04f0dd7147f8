"""Several targets from one dump (BACKUP_STORAGE=local,google_drive): byte-identical copies, a
``backup_copies`` row each, an attempt that succeeds only when every target holds a validated
copy, and retention per target. Drive runs through its fake server and the real client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dbbackup.core.fanout import QUEUE_DEPTH, fan_out
from dbbackup.core.ports import StoredFile
from dbbackup.errors import ConfigError
from dbbackup.settings import Settings
from dbbackup.wiring import backup_job, cleanup_job
from fakes import drive_env
from fakes.drive_fake import DriveFake
from support.cli import pg_dump_that_fails, run_cli
from support.db import DbFactory

pytest_plugins = ["fakes.fixtures"]


@pytest.fixture
def data_db(migrated_url: str) -> str:
    """About 1.5 MB of gzip: several Drive chunks."""
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE readings (id int PRIMARY KEY, a text, b text)")
        conn.execute("INSERT INTO readings SELECT g, md5(g::text), md5((g * 7)::text) FROM generate_series(1, 40000) g")
    return migrated_url


def env_for(drive_fake: DriveFake, drive_user: dict[str, Any], root: Path, targets: str) -> dict[str, str]:
    return drive_env(drive_fake, drive_user, BACKUP_STORAGE=targets, BACKUP_LOCAL_ROOT=str(root))


def copies(url: str, log_id: str) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            "SELECT target, status, file_id, path, file_size_bytes, md5_checksum, failure_reason, deleted_at"
            " FROM backup_copies WHERE backup_log_id = %s ORDER BY target",
            (log_id,),
        ).fetchall()


def local_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_one_dump_lands_byte_identical_in_every_target_with_a_copy_row_each(
    data_db: str, drive_fake: DriveFake, drive_user: dict[str, Any], tmp_path: Path, make_db: DbFactory
) -> None:
    root = tmp_path / "store"
    env = env_for(drive_fake, drive_user, root, "local,google_drive")
    outcome = backup_job(Settings.from_env({"DATABASE_URL": data_db, **env})).run("manual")
    assert outcome.status == "success", outcome.reason
    [local] = local_files(root)
    [on_drive] = [f for f in drive_fake.files.values() if f.name == local.name]
    assert on_drive.content == local.read_bytes()  # one dump, the same bytes in both
    rows = copies(data_db, outcome.backup_log_id)
    assert [(r["target"], r["status"]) for r in rows] == [("google_drive", "success"), ("local", "success")]
    assert all(r["file_size_bytes"] == local.stat().st_size and r["md5_checksum"] == outcome.md5 for r in rows)
    assert outcome.file_id == rows[1]["file_id"]  # the first target (local) fills backup_logs' columns
    assert [c["target"] for c in outcome.copies] == ["local", "google_drive"]
    # A restore from the second copy gives the same database.
    target = make_db()
    proc = run_cli(["restore", outcome.backup_log_id, "--target", target, "--from", "google_drive"], data_db, **env)
    assert proc.returncode == 0, proc.stderr
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 40000
    checked = run_cli(["verify", outcome.backup_log_id, "--from", "google_drive"], data_db, **env)
    assert checked.returncode == 0 and "ok   md5" in checked.stdout, checked.stdout + checked.stderr


def test_a_target_that_fails_fails_the_attempt_naming_it_and_the_complete_copy_is_kept_and_listed(
    data_db: str, drive_fake: DriveFake, drive_user: dict[str, Any], tmp_path: Path
) -> None:
    root = tmp_path / "store"
    env = env_for(drive_fake, drive_user, root, "local,google_drive")
    drive_fake.fail(500, method="PUT", path="/upload/", times=50)  # every chunk, past the retries
    outcome = backup_job(Settings.from_env({"DATABASE_URL": data_db, **env})).run("manual")
    assert outcome.status == "failed"
    assert outcome.reason.startswith("not every target holds a copy: google_drive: ")
    assert "complete copies kept in local" in outcome.reason
    rows = {r["target"]: r for r in copies(data_db, outcome.backup_log_id)}
    assert rows["local"]["status"] == "success" and rows["google_drive"]["status"] == "failed"
    assert rows["google_drive"]["failure_reason"] and rows["google_drive"]["file_id"] is None
    assert len(local_files(root)) == 1  # kept: a complete, validated copy
    assert not [f for f in drive_fake.files.values() if f.name.startswith("DB_Backup_")]  # no partial object
    with psycopg.connect(data_db) as conn:
        status, file_id = conn.execute(
            "SELECT status, google_drive_file_id FROM backup_logs WHERE id = %s", (outcome.backup_log_id,)
        ).fetchone()
    assert (status, file_id) == ("failed", None)


def test_a_dump_that_fails_leaves_no_copy_anywhere(
    data_db: str, drive_fake: DriveFake, drive_user: dict[str, Any], tmp_path: Path
) -> None:
    root = tmp_path / "store"
    env = env_for(drive_fake, drive_user, root, "google_drive,local")
    script = pg_dump_that_fails(tmp_path, after_dumping=True)
    outcome = backup_job(Settings.from_env({"DATABASE_URL": data_db, **env, "PG_DUMP_PATH": str(script)})).run("manual")
    assert outcome.status == "failed" and "connection lost" in outcome.reason
    assert local_files(root) == []
    assert not [f for f in drive_fake.files.values() if f.name.startswith("DB_Backup_")]


def test_retention_deletes_expired_copies_in_every_target_and_marks_each_copy(
    data_db: str, drive_fake: DriveFake, drive_user: dict[str, Any], tmp_path: Path
) -> None:
    root = tmp_path / "store"
    env = env_for(drive_fake, drive_user, root, "local,google_drive")
    settings = Settings.from_env({"DATABASE_URL": data_db, **env})
    outcome = backup_job(settings).run("manual")
    assert outcome.status == "success", outcome.reason
    later = Settings.from_env({"DATABASE_URL": data_db, **env, "BACKUP_KEEP_MIN": "1", "BACKUP_RETENTION_DAYS": "1"})
    # A second backup two days later: the first is now past retention in both targets.
    from datetime import UTC, datetime, timedelta

    future = datetime.now(UTC) + timedelta(days=2)
    second = backup_job(later, clock=lambda: future).run("manual")
    assert second.status == "success", second.reason
    result = cleanup_job(later, clock=lambda: future + timedelta(minutes=5)).run()
    assert result.status == "success", result.failed
    assert sorted(result.deleted) == sorted([f"local:{outcome.file_name}", f"google_drive:{outcome.file_name}"])
    assert all(r["deleted_at"] is not None for r in copies(data_db, outcome.backup_log_id))
    assert all(r["deleted_at"] is None for r in copies(data_db, second.backup_log_id))
    assert [p.name for p in local_files(root)] == [second.file_name]


def test_backup_storage_lists_known_backends_once() -> None:
    for bad in ("local,ftp", "local,,google_drive", "local,local"):
        with pytest.raises(ConfigError, match="BACKUP_STORAGE"):
            Settings.from_env({"DATABASE_URL": "postgresql://x@localhost/db", "BACKUP_STORAGE": bad})
    s = Settings.from_env({"DATABASE_URL": "postgresql://x@localhost/db", "BACKUP_STORAGE": " local "})
    assert (s.storage, s.storage_targets) == ("local", ("local",))


# --- the fan-out itself -----------------------------------------------------------------------


def test_the_slowest_target_sets_the_pace_and_memory_stays_at_a_few_chunks() -> None:
    produced = 0
    in_flight_max = 0
    consumed = {"fast": 0, "slow": 0}
    lock = threading.Lock()

    def source() -> Iterator[bytes]:
        nonlocal produced, in_flight_max
        for _ in range(40):
            with lock:
                produced += 1
                in_flight_max = max(in_flight_max, produced - consumed["slow"])
            yield b"x" * 1024

    def writer(name: str, delay: float):  # type: ignore[no-untyped-def]
        def write(chunks: Iterator[bytes]) -> StoredFile:
            size = 0
            for chunk in chunks:
                time.sleep(delay)
                size += len(chunk)
                with lock:
                    consumed[name] += 1
            return StoredFile(id=name, name=name, size=size, path=name)

        return write

    results = fan_out(source(), {"fast": writer("fast", 0), "slow": writer("slow", 0.01)})
    assert {k: v.size for k, v in results.items()} == {"fast": 40 * 1024, "slow": 40 * 1024}  # type: ignore[union-attr]
    # The dump never runs ahead of the slowest target by more than its queue and the chunks in hand.
    assert in_flight_max <= QUEUE_DEPTH + 2, in_flight_max


def test_a_failing_target_is_dropped_and_the_others_complete() -> None:
    def broken(chunks: Iterator[bytes]) -> StoredFile:
        next(chunks)
        raise OSError("quota exceeded")

    def good(chunks: Iterator[bytes]) -> StoredFile:
        return StoredFile(id="g", name="g", size=sum(len(c) for c in chunks), path="g")

    results = fan_out(iter([b"a" * 10] * 30), {"broken": broken, "good": good})
    assert isinstance(results["broken"], OSError) and results["good"].size == 300  # type: ignore[union-attr]


# --- the object stores: moto's S3 server and the GCS emulator ---------------------------------


def test_local_and_s3_hold_byte_identical_copies_and_restore_from_s3_is_the_source(
    data_db: str, moto_s3: Any, tmp_path: Path, make_db: DbFactory
) -> None:
    root, bucket = tmp_path / "store", moto_s3.bucket()
    env = moto_s3.env(bucket, BACKUP_STORAGE="local,s3", BACKUP_LOCAL_ROOT=str(root))
    outcome = backup_job(Settings.from_env({"DATABASE_URL": data_db, **env})).run("manual")
    assert outcome.status == "success", outcome.reason
    [local] = local_files(root)
    rows = {r["target"]: r for r in copies(data_db, outcome.backup_log_id)}
    assert set(rows) == {"local", "s3"} and all(r["status"] == "success" for r in rows.values())
    body = moto_s3.client().get_object(Bucket=bucket, Key=rows["s3"]["file_id"])["Body"].read()
    assert body == local.read_bytes()
    target = make_db()
    proc = run_cli(["restore", outcome.backup_log_id, "--target", target, "--from", "s3"], data_db, **env)
    assert proc.returncode == 0, proc.stderr
    assert "from s3" in proc.stdout
    with psycopg.connect(data_db) as src, psycopg.connect(target) as dst:
        query = "SELECT count(*), md5(string_agg(a || b, ',' ORDER BY id)) FROM readings"
        assert src.execute(query).fetchone() == dst.execute(query).fetchone()


def test_a_missing_bucket_fails_the_attempt_naming_s3_and_keeps_the_local_copy(
    data_db: str, moto_s3: Any, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    env = moto_s3.env("no-such-bucket-here", BACKUP_STORAGE="local,s3", BACKUP_LOCAL_ROOT=str(root))
    outcome = backup_job(Settings.from_env({"DATABASE_URL": data_db, **env})).run("manual")
    assert outcome.status == "failed"
    assert outcome.reason.startswith("not every target holds a copy: s3: ") and "no-such-bucket-here" in outcome.reason
    rows = {r["target"]: r for r in copies(data_db, outcome.backup_log_id)}
    assert (rows["local"]["status"], rows["s3"]["status"]) == ("success", "failed")
    assert len(local_files(root)) == 1


def test_drive_and_gcs_hold_byte_identical_copies(
    data_db: str, drive_fake: DriveFake, drive_user: dict[str, Any], gcs_emulator: Any
) -> None:
    bucket = gcs_emulator.bucket()
    env = {**drive_env(drive_fake, drive_user), **gcs_emulator.env(bucket), "BACKUP_STORAGE": "google_drive,gcs"}
    outcome = backup_job(Settings.from_env({"DATABASE_URL": data_db, **env})).run("manual")
    assert outcome.status == "success", outcome.reason
    rows = {r["target"]: r for r in copies(data_db, outcome.backup_log_id)}
    assert set(rows) == {"google_drive", "gcs"} and all(r["status"] == "success" for r in rows.values())
    on_drive = drive_fake.files[rows["google_drive"]["file_id"]].content
    in_gcs = gcs_emulator.client().bucket(bucket).blob(rows["gcs"]["file_id"]).download_as_bytes()
    assert on_drive == in_gcs and len(in_gcs) == rows["gcs"]["file_size_bytes"]
    assert outcome.file_id == rows["google_drive"]["file_id"]  # the first target fills backup_logs


def test_the_functions_answer_lists_the_copies_when_there_are_several_targets(
    data_db: str, drive_fake: DriveFake, drive_user: dict[str, Any], tmp_path: Path
) -> None:
    from dbbackup.http.endpoints import run_backup

    env = env_for(drive_fake, drive_user, tmp_path / "store", "local,google_drive")
    body, status = run_backup(Settings.from_env({"DATABASE_URL": data_db, **env}), "manual")
    assert status == 200 and [(c["target"], c["status"]) for c in body["copies"]] == [
        ("local", "success"),
        ("google_drive", "success"),
    ]
    one, _ = run_backup(Settings.from_env({"DATABASE_URL": data_db, "BACKUP_LOCAL_ROOT": str(tmp_path)}), "manual")
    assert "copies" not in one  # one target: the answer is as it always was


def test_a_backup_whose_primary_copy_retention_deleted_restores_from_a_surviving_copy(
    data_db: str, drive_fake: DriveFake, drive_user: dict[str, Any], tmp_path: Path, make_db: DbFactory
) -> None:
    root = tmp_path / "store"
    env = env_for(drive_fake, drive_user, root, "local,google_drive")
    outcome = backup_job(Settings.from_env({"DATABASE_URL": data_db, **env})).run("manual")
    assert outcome.status == "success", outcome.reason
    # As a cleanup does when the other store still retains its copy (S3 Object Lock, GCS policy).
    [local] = local_files(root)
    local.unlink()
    with psycopg.connect(data_db, autocommit=True) as conn:
        conn.execute("UPDATE backup_logs SET deleted_at = now() WHERE id = %s", (outcome.backup_log_id,))
        conn.execute(
            "UPDATE backup_copies SET deleted_at = now() WHERE backup_log_id = %s AND target = 'local'",
            (outcome.backup_log_id,),
        )
    for source in (outcome.backup_log_id, "latest"):
        target = make_db()
        proc = run_cli(["restore", source, "--target", target], data_db, **env)
        assert proc.returncode == 0, proc.stderr
        assert "from google_drive" in proc.stdout


def test_restore_moves_on_to_the_next_copy_when_a_target_is_out_of_reach(
    data_db: str, drive_fake: DriveFake, drive_user: dict[str, Any], tmp_path: Path, make_db: DbFactory
) -> None:
    root = tmp_path / "store"
    env = env_for(drive_fake, drive_user, root, "google_drive,local")
    outcome = backup_job(Settings.from_env({"DATABASE_URL": data_db, **env})).run("manual")
    assert outcome.status == "success", outcome.reason
    drive_fake.fail(500, method="GET", path="/drive/v3/files/", times=1000)  # Drive down for reads
    target = make_db()
    proc = run_cli(["restore", outcome.backup_log_id, "--target", target], data_db, **env)
    assert proc.returncode == 0, proc.stderr
    assert "from local" in proc.stdout


def test_when_every_target_has_failed_the_dump_is_not_read_to_the_end() -> None:
    read = 0

    def source() -> Iterator[bytes]:
        nonlocal read
        for _ in range(2000):
            read += 1
            yield b"x" * 1024

    def broken(chunks: Iterator[bytes]) -> StoredFile:
        next(chunks)
        raise OSError("403 Forbidden")

    results = fan_out(source(), {"a": broken, "b": broken})
    assert all(isinstance(r, OSError) for r in results.values())
    assert read < 100, read


def test_an_interrupted_fan_out_aborts_every_target_without_a_thread_traceback() -> None:
    hooks: list[object] = []
    previous = threading.excepthook
    threading.excepthook = hooks.append  # type: ignore[assignment]
    aborted: list[str] = []

    def source() -> Iterator[bytes]:
        yield b"x" * 1024
        raise KeyboardInterrupt

    def writer(name: str):  # type: ignore[no-untyped-def]
        def write(chunks: Iterator[bytes]) -> StoredFile:
            try:
                for _ in chunks:
                    pass
            except BaseException:
                aborted.append(name)
                raise
            return StoredFile(id=name, name=name, size=0, path=name)

        return write

    try:
        with pytest.raises(KeyboardInterrupt):
            fan_out(source(), {"a": writer("a"), "b": writer("b")})
    finally:
        threading.excepthook = previous
    assert sorted(aborted) == ["a", "b"] and hooks == []
