"""Supabase Storage's objects in the backup (BACKUP_SUPABASE_STORAGE): moto's standalone S3
server stands in for the project's Storage endpoint (the real S3 protocol on 127.0.0.1, through
boto3), the backups go to a local folder and a second bucket (BACKUP_STORAGE=local,s3). Blobs
are content-addressed, a second unchanged backup stores none, ``storage-restore`` puts back
byte-identical objects, retention keeps the blobs a kept backup refers to, and every failure of
the Storage side fails the backup naming Storage while the dump's own copies stay recorded."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from functions_framework import create_app

from dbbackup.core import storage_objects
from dbbackup.errors import ConfigError, UsageError
from dbbackup.settings import Settings
from dbbackup.wiring import backup_job, cleanup_job, storage_restore
from fakes._http import Fault, Reply
from fakes.object_stores import FaultProxy, MotoS3, bucket_name, s3_error
from support.cli import run_cli
from support.paths import ROOT

pytest_plugins = ["fakes.fixtures"]

FOLDER = "MyDrive/DatabaseBackups"  # the default backup_folder_path
BIG = os.urandom(6 * 1024 * 1024 + 123)  # more than one 5 MiB part in the s3 target
# (key, bytes, content type, user metadata)
OBJECTS: dict[str, list[tuple[str, bytes, str, dict[str, str]]]] = {
    "avatars": [
        ("users/42/me.png", b"\x89PNG fake avatar", "image/png", {"owner": "42"}),
        ("users/43/me.png", b"\x89PNG fake avatar", "image/png", {}),  # same bytes: one blob
        ("empty.txt", b"", "text/plain", {}),
        ("répertoire/ünïcødé 📄.txt", "grüße".encode(), "text/plain; charset=utf-8", {}),
    ],
    "invoices": [
        ("2026/12/INV-0001.pdf", b"%PDF-1.7 invoice one", "application/pdf", {"customer": "acme"}),
        ("2026/12/big.bin", BIG, "application/octet-stream", {}),
    ],
}
COUNT = sum(len(v) for v in OBJECTS.values())
BLOBS = len({data for v in OBJECTS.values() for _, data, _, _ in v})
SIZE = sum(len(d) for v in OBJECTS.values() for _, d, _, _ in v)
REPORT = {"buckets": 2, "objects": COUNT, "bytes": SIZE, "new_blobs": BLOBS, "vanished": 0}
FUNCTION = ROOT / "functions" / "database_backup" / "main.py"


@pytest.fixture
def project(moto_s3: MotoS3) -> dict[str, str]:
    """Two buckets of fresh names (the moto server is the session's), as the project's Storage."""
    s3 = moto_s3.client()
    names = {}
    for logical, objects in OBJECTS.items():
        names[logical] = name = bucket_name(logical)
        s3.create_bucket(Bucket=name)
        for key, data, ctype, meta in objects:
            s3.put_object(Bucket=name, Key=key, Body=data, ContentType=ctype, Metadata=meta)
    return names


def env_for(moto_s3: MotoS3, project: dict[str, str], root: Path, target: str, **extra: str) -> dict[str, str]:
    return {
        **moto_s3.env(target),
        "BACKUP_STORAGE": "local,s3",
        "BACKUP_LOCAL_ROOT": str(root),
        "BACKUP_SUPABASE_STORAGE": "true",
        "SUPABASE_S3_ENDPOINT": moto_s3.url,
        "SUPABASE_S3_REGION": "us-east-1",
        "SUPABASE_S3_ACCESS_KEY_ID": "supabase-key-id",
        "SUPABASE_S3_SECRET_ACCESS_KEY": "supabase-secret-access-key",
        "BACKUP_STORAGE_BUCKETS": ",".join(project.values()),
        **extra,
    }


def manifest(url: str, log_id: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT bucket, object_key, size_bytes, sha256, content_type, metadata FROM storage_manifest"
            " WHERE backup_log_id = %s ORDER BY bucket, object_key",
            (log_id,),
        ).fetchall()


def local_blobs(root: Path) -> set[str]:
    folder = root / FOLDER / "storage-blobs"
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def empty(moto_s3: MotoS3, bucket: str) -> None:
    s3 = moto_s3.client()
    for key in moto_s3.keys(bucket):
        s3.delete_object(Bucket=bucket, Key=key)
    s3.delete_bucket(Bucket=bucket)


@pytest.fixture
def proxied(moto_s3: MotoS3) -> Iterator[FaultProxy]:
    with FaultProxy(moto_s3.url) as proxy:
        yield proxy


def test_objects_are_backed_up_once_and_restored_byte_identical(
    migrated_url: str, moto_s3: MotoS3, project: dict[str, str], proxied: FaultProxy, tmp_path: Path
) -> None:
    root, target = tmp_path / "store", moto_s3.bucket()
    env = env_for(moto_s3, project, root, target)
    settings = Settings.from_env({"DATABASE_URL": migrated_url, **env})
    first = backup_job(settings).run("manual")
    assert first.status == "success", first.reason
    assert first.storage == REPORT
    rows = manifest(migrated_url, first.backup_log_id)
    assert len(rows) == COUNT
    for bucket, key, size, sha, ctype, meta in rows:
        logical = next(k for k, v in project.items() if v == bucket)
        [(data, want_type, want_meta)] = [(d, c, m) for k, d, c, m in OBJECTS[logical] if k == key]
        assert (size, sha, ctype, meta) == (len(data), hashlib.sha256(data).hexdigest(), want_type, want_meta)
    # Every target holds every blob, named by its sha256; the backup folder's listing does not see them.
    shas = {r[3] for r in rows}
    assert local_blobs(root) == shas
    assert {k.rsplit("/", 1)[1] for k in moto_s3.keys(target) if "/storage-blobs/" in k} == shas
    assert (root / FOLDER / "storage-blobs" / hashlib.sha256(BIG).hexdigest()).read_bytes() == BIG

    # Nothing changed: nothing new is stored, and no object is even HEADed or read (the listing's
    # size and ETag are the previous manifest's, blob present): only listings reach the endpoint.
    watched = Settings.from_env({"DATABASE_URL": migrated_url, **env, "SUPABASE_S3_ENDPOINT": proxied.url})
    second = backup_job(watched).run("manual")
    assert second.status == "success", second.reason
    assert second.storage is not None and (second.storage["objects"], second.storage["new_blobs"]) == (COUNT, 0)
    reads = [
        ex.path for ex in proxied.exchanges if ex.method == "GET" and ex.path.count("/") > 1
    ]  # an object, not a listing
    assert reads == [] and sum(ex.method == "HEAD" for ex in proxied.exchanges) == 0
    assert manifest(migrated_url, second.backup_log_id) == rows  # types and metadata carried over
    # One object changed: one new blob.
    moto_s3.client().put_object(Bucket=project["invoices"], Key="2026/12/INV-0001.pdf", Body=b"%PDF-1.7 v2")
    third = backup_job(settings).run("manual")
    assert third.status == "success" and third.storage is not None and third.storage["new_blobs"] == 1

    # Everything gone; storage-restore of the first backup puts it all back, types and metadata kept.
    for bucket in project.values():
        empty(moto_s3, bucket)
    proc = run_cli(["storage-restore", first.backup_log_id, "--json"], migrated_url, **env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["objects"], report["restored"], report["skipped"]) == (COUNT, COUNT, 0)
    assert sorted(report["buckets_created"]) == sorted(project.values())
    s3 = moto_s3.client()
    for logical, objects in OBJECTS.items():
        for key, data, ctype, meta in objects:
            got = s3.get_object(Bucket=project[logical], Key=key)
            assert got["Body"].read() == data, key
            assert (got["ContentType"], got["Metadata"]) == (ctype, meta), key
    # Again: idempotent, every object already there with the same bytes. One changed object is put back.
    s3.put_object(Bucket=project["avatars"], Key="empty.txt", Body=b"not empty any more", ContentType="text/plain")
    # Through another endpoint (--endpoint: another project; here the same server behind a proxy).
    again = run_cli(
        ["storage-restore", first.backup_log_id, "--bucket", project["avatars"], "--endpoint", proxied.url],
        migrated_url,
        **env,
    )
    assert again.returncode == 0, again.stderr
    assert f"into {proxied.url}: 4 objects in 1 buckets; restored 1 (0 bytes), skipped 3" in again.stdout, again.stdout
    assert s3.get_object(Bucket=project["avatars"], Key="empty.txt")["Body"].read() == b""
    with pytest.raises(UsageError, match="holds no object of bucket 'nope'"):
        storage_restore(settings, env, first.backup_log_id, "nope")


def test_retention_deletes_only_blobs_no_kept_backup_refers_to(
    migrated_url: str, moto_s3: MotoS3, project: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, target = tmp_path / "store", moto_s3.bucket()
    env = env_for(moto_s3, project, root, target, BACKUP_STORAGE="local")
    # The first backup through the function: its answer counts the Storage objects.
    for key, value in {**env, "DATABASE_URL": migrated_url, "AUTH_MODE": "disabled"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("K_SERVICE", raising=False)
    answer = create_app("database_backup", str(FUNCTION)).test_client().post("/", json={"trigger": "manual"})
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["storage"] == REPORT
    first = SimpleNamespace(file_name=answer.get_json()["file_name"])
    old = hashlib.sha256(b"%PDF-1.7 invoice one").hexdigest()
    moto_s3.client().put_object(Bucket=project["invoices"], Key="2026/12/INV-0001.pdf", Body=b"%PDF-1.7 v2")
    later = Settings.from_env(
        {"DATABASE_URL": migrated_url, **env, "BACKUP_KEEP_MIN": "1", "BACKUP_RETENTION_DAYS": "1"}
    )
    future = datetime.now(UTC) + timedelta(days=2)
    second = backup_job(later, clock=lambda: future).run("manual")
    assert second.status == "success" and second.storage is not None and second.storage["new_blobs"] == 1
    assert len(local_blobs(root)) == BLOBS + 1

    # The dry run lists the one blob only the expiring backup refers to, and deletes nothing.
    dry = cleanup_job(later, clock=lambda: future + timedelta(minutes=5)).run(dry_run=True)
    assert (dry.deleted, dry.blobs_deleted, dry.blob_bytes_freed) == ([first.file_name], [old], 20)
    assert old in local_blobs(root)
    result = cleanup_job(later, clock=lambda: future + timedelta(minutes=5)).run()
    assert result.status == "success", result.failed
    assert (result.deleted, result.blobs_deleted, result.blobs_examined) == ([first.file_name], [old], BLOBS + 1)
    assert local_blobs(root) == {r[3] for r in manifest(migrated_url, second.backup_log_id)}  # all still referenced
    assert "Storage blobs: deleted 1 of 6 (20 bytes)" in result.summary()


def drop(exchange: Any) -> None:
    from fakes._http import Dropped

    raise Dropped


FAILURES: dict[str, tuple[Any, str, str]] = {
    # name: (fault, extra env, what the reason must say)
    "unreachable": (Fault(drop, times=999), "", r"cannot reach http://127\.0\.0\.1:\d+ \(\w+\)"),
    "bad keys": (
        Fault(lambda ex: s3_error(403, "InvalidAccessKeyId", "The key does not exist"), times=999),
        "",
        r"access denied by \S+ \(InvalidAccessKeyId\): check SUPABASE_S3_ACCESS_KEY_ID",
    ),
    "missing bucket": (None, "nope-bucket", r"bucket\(s\) nope-bucket \(BACKUP_STORAGE_BUCKETS\) do not exist"),
    "unreadable object": (
        Fault(lambda ex: s3_error(500, "InternalError"), method="GET", path="/{invoices}/2026/12/big.bin", times=999),
        "",
        r"read {invoices}/2026/12/big\.bin: HTTP 500 InternalError",
    ),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_a_storage_failure_fails_the_backup_naming_storage_and_keeps_the_dump(
    migrated_url: str, moto_s3: MotoS3, project: dict[str, str], proxied: FaultProxy, tmp_path: Path, case: str
) -> None:
    fault, bucket, expected = FAILURES[case]
    root = tmp_path / "store"
    buckets = ",".join(project.values()) + (f",{bucket}" if bucket else "")
    env = env_for(
        moto_s3, project, root, "unused", BACKUP_STORAGE="local", SUPABASE_S3_ENDPOINT=proxied.url,
        BACKUP_STORAGE_BUCKETS=buckets,
    )  # fmt: skip
    if fault is not None:
        armed = Fault(**{**fault.__dict__, "seen": 0, "path": fault.path.format(**project)})
        proxied.arm(armed)
    outcome = backup_job(Settings.from_env({"DATABASE_URL": migrated_url, **env})).run("manual")
    assert outcome.status == "failed" and outcome.storage is None
    reason = outcome.reason or ""
    assert reason.startswith("Supabase Storage: ") and re.search(expected.format(**project), reason), reason
    assert "the database dump itself is complete and kept" in reason and "\n" not in reason
    assert "supabase-secret-access-key" not in reason
    with psycopg.connect(migrated_url) as conn:
        log_id = outcome.backup_log_id
        status, why = conn.execute("SELECT status, failure_reason FROM backup_logs WHERE id = %s", (log_id,)).fetchone()
        copy = conn.execute("SELECT status FROM backup_copies WHERE backup_log_id = %s", (log_id,)).fetchall()
        objects = conn.execute("SELECT count(*) FROM storage_manifest").fetchone()[0]
    assert (status, why, copy, objects) == ("failed", reason, [("success",)], 0)
    assert (root / FOLDER / outcome.file_name).exists()  # the dump's complete copy, recorded as the attempt's


def test_an_object_that_changes_while_it_is_copied_is_read_again_and_never_stored_torn(
    migrated_url: str, moto_s3: MotoS3, project: dict[str, str], proxied: FaultProxy, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    env = env_for(moto_s3, project, root, "unused", BACKUP_STORAGE="local", SUPABASE_S3_ENDPOINT=proxied.url)
    key = f"/{project['invoices']}/2026/12/INV-0001.pdf"
    # The second read (the copy, after the hash) sees other bytes, once.
    proxied.arm(Fault(lambda ex: Reply(200, b"%PDF-1.7 edited meanwhile"), nth=2, method="GET", path=key))
    outcome = backup_job(Settings.from_env({"DATABASE_URL": migrated_url, **env})).run("manual")
    assert outcome.status == "success", outcome.reason
    assert sum(ex.method == "GET" and ex.path == key for ex in proxied.exchanges) == 4  # hash, torn copy, again
    blobs = root / FOLDER / "storage-blobs"
    assert all(hashlib.sha256(p.read_bytes()).hexdigest() == p.name for p in blobs.iterdir())
    assert (blobs / hashlib.sha256(b"%PDF-1.7 invoice one").hexdigest()).exists()


def test_settings_name_the_missing_variable() -> None:
    base = {"DATABASE_URL": "postgresql://x@localhost/db", "BACKUP_SUPABASE_STORAGE": "true"}
    with pytest.raises(ConfigError, match="SUPABASE_S3_ENDPOINT is not set"):
        Settings.from_env(base)
    full = {
        **base,
        "SUPABASE_S3_ENDPOINT": "https://ref.supabase.co/storage/v1/s3",
        "SUPABASE_S3_REGION": "eu-central-1",
    }
    with pytest.raises(ConfigError, match="SUPABASE_S3_ACCESS_KEY_ID is not set"):
        Settings.from_env(full)
    with pytest.raises(ConfigError, match="plain http is only allowed"):
        Settings.from_env({**full, "SUPABASE_S3_ENDPOINT": "http://ref.supabase.co/storage/v1/s3"})
    with pytest.raises(ConfigError, match="BACKUP_SUPABASE_STORAGE='maybe'"):
        Settings.from_env({**base, "BACKUP_SUPABASE_STORAGE": "maybe"})
    # Blobs are not encrypted: the combination with an encrypted dump is refused, naming both.
    recipient = "age1km596nhaxkmvw3nzna9cvlqhcjgrkvarrafghjrgarfjyxvv25pqlvfhme"
    with pytest.raises(ConfigError, match="BACKUP_SUPABASE_STORAGE=true cannot be combined with BACKUP_AGE_RECIPIENTS"):
        Settings.from_env({**full, "SUPABASE_S3_ACCESS_KEY_ID": "i", "SUPABASE_S3_SECRET_ACCESS_KEY": "s",
                           "BACKUP_AGE_RECIPIENTS": recipient})  # fmt: skip
    keys = {"SUPABASE_S3_ACCESS_KEY_ID": "id", "SUPABASE_S3_SECRET_ACCESS_KEY": "s3cr3t-value"}
    s = Settings.from_env({**full, **keys, "BACKUP_STORAGE_BUCKETS": " a , b "})
    assert s.supabase_storage is not None and s.supabase_storage.buckets == ("a", "b")
    assert "s3cr3t-value" in s.secrets and "s3cr3t-value" not in repr(s) + repr(s.supabase_storage)
    assert Settings.from_env({"DATABASE_URL": "postgresql://x@localhost/db"}).supabase_storage is None


def test_blobs_are_not_collected_while_a_backup_holds_the_blob_lock(
    migrated_url: str, moto_s3: MotoS3, project: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backup holds the storage-blobs lock shared from listing the blobs through succeed();
    the cleanup collects only holding it exclusively, and reads the referenced set after that."""
    from dbbackup.pg.backup_log import BLOB_LOCK_KEY

    root = tmp_path / "store"
    env = env_for(moto_s3, project, root, "unused", BACKUP_STORAGE="local")
    settings = Settings.from_env({"DATABASE_URL": migrated_url, **env})
    (root / FOLDER / "storage-blobs").mkdir(parents=True)
    stray = "ab" * 32  # a blob no manifest refers to: what a running backup may just have written
    (root / FOLDER / "storage-blobs" / stray).write_bytes(b"new")
    with psycopg.connect(migrated_url, autocommit=True) as backup:
        backup.execute("SELECT pg_advisory_lock_shared(%s)", (BLOB_LOCK_KEY,))  # a backup copying objects
        held = cleanup_job(settings).run()
        assert held.blobs_skipped and "copying Storage objects" in held.blobs_skipped
        assert held.blobs_deleted == [] and stray in local_blobs(root)
    freed = cleanup_job(settings).run()
    assert (freed.blobs_skipped, freed.blobs_deleted) == (None, [stray])
    # And the backup's side: it takes the lock shared before listing the blobs, and gives it back.
    seen: list[bool] = []
    original = storage_objects.BlobStore.__init__
    with psycopg.connect(migrated_url, autocommit=True) as probe:

        def spy(self: Any, targets: Any, **kwargs: Any) -> None:
            got = probe.execute("SELECT pg_try_advisory_lock(%s)", (BLOB_LOCK_KEY,)).fetchone()[0]
            seen.append(got)
            if got:
                probe.execute("SELECT pg_advisory_unlock(%s)", (BLOB_LOCK_KEY,))
            original(self, targets, **kwargs)

        monkeypatch.setattr(storage_objects.BlobStore, "__init__", spy)
        outcome = backup_job(settings).run("manual")
        assert outcome.status == "success", outcome.reason
        assert seen == [False]  # the exclusive lock was refused: the backup held it shared
        assert probe.execute("SELECT pg_try_advisory_lock(%s)", (BLOB_LOCK_KEY,)).fetchone()[0]  # released


def test_an_object_deleted_during_the_backup_is_left_out_counted_and_named(
    migrated_url: str, moto_s3: MotoS3, project: dict[str, str], proxied: FaultProxy, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    env = env_for(moto_s3, project, root, "unused", BACKUP_STORAGE="local", SUPABASE_S3_ENDPOINT=proxied.url)
    gone = Reply(404, b"", {})  # a HEAD's 404 has no body
    at_head = f"/{project['avatars']}/empty.txt"
    at_read = f"/{project['invoices']}/2026/12/INV-0001.pdf"
    proxied.arm(Fault(lambda ex: gone, method="HEAD", path=at_head, times=999))
    proxied.arm(Fault(lambda ex: s3_error(404, "NoSuchKey"), method="GET", path=at_read, times=999))
    outcome = backup_job(Settings.from_env({"DATABASE_URL": migrated_url, **env})).run("manual")
    assert outcome.status == "success", outcome.reason
    assert outcome.storage is not None and (outcome.storage["objects"], outcome.storage["vanished"]) == (COUNT - 2, 2)
    [line] = outcome.warnings
    assert "2 object(s) deleted while the backup ran" in line
    assert f"{project['avatars']}/empty.txt" in line and f"{project['invoices']}/2026/12/INV-0001.pdf" in line
    keys = {r[1] for r in manifest(migrated_url, outcome.backup_log_id)}
    assert "empty.txt" not in keys and "2026/12/INV-0001.pdf" not in keys


def test_a_blob_of_the_wrong_size_is_rewritten_and_a_short_write_deleted(
    migrated_url: str, moto_s3: MotoS3, project: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from dbbackup.storage.local import LocalStorage

    root = tmp_path / "store"
    env = env_for(moto_s3, project, root, "unused", BACKUP_STORAGE="local")
    settings = Settings.from_env({"DATABASE_URL": migrated_url, **env})
    folder = root / FOLDER / "storage-blobs"
    folder.mkdir(parents=True)
    pdf = b"%PDF-1.7 invoice one"
    (folder / hashlib.sha256(pdf).hexdigest()).write_bytes(pdf[:5])  # torn: the right name, not the bytes
    first = backup_job(settings).run("manual")
    assert first.status == "success", first.reason
    assert (folder / hashlib.sha256(pdf).hexdigest()).read_bytes() == pdf
    assert first.storage is not None and first.storage["new_blobs"] == BLOBS

    # A target that reports another size than was written: the blob is deleted, the backup fails.
    moto_s3.client().put_object(Bucket=project["invoices"], Key="2026/12/INV-0001.pdf", Body=b"%PDF v3")
    put = LocalStorage.put

    def short(self: LocalStorage, folder: Any, name: str, chunks: Any) -> Any:
        stored = put(self, folder, name, chunks)
        return replace(stored, size=1) if len(name) == 64 else stored  # a blob, not the dump

    monkeypatch.setattr(LocalStorage, "put", short)
    second = backup_job(settings).run("manual")
    assert second.status == "failed" and "1 bytes, 7 were read; the blob was deleted" in (second.reason or "")
    assert hashlib.sha256(b"%PDF v3").hexdigest() not in local_blobs(root)


def test_storage_restore_checks_its_input_and_creates_no_folder(
    migrated_url: str, moto_s3: MotoS3, project: dict[str, str], tmp_path: Path
) -> None:
    root, target = tmp_path / "store", moto_s3.bucket()
    env = env_for(moto_s3, project, root, target, BACKUP_STORAGE="s3")
    settings = Settings.from_env({"DATABASE_URL": migrated_url, **env})
    proc = run_cli(["storage-restore", "not-a-uuid"], migrated_url, **env)
    assert proc.returncode == 2 and "not-a-uuid: not a backup_logs id" in proc.stderr, proc.stderr
    failed = backup_job(Settings.from_env({"DATABASE_URL": migrated_url, **env, "BACKUP_STORAGE_BUCKETS": "nope"})).run(
        "manual"
    )
    assert failed.status == "failed"
    with pytest.raises(UsageError, match="is failed, not a successful backup"):
        storage_restore(settings, env, failed.backup_log_id)
    done = backup_job(settings).run("manual")
    assert done.status == "success", done.reason
    # A local target first, that has no blob folder: it is skipped, not created; the s3 one serves.
    both = {**env, "BACKUP_STORAGE": "local,s3"}
    (root / FOLDER).mkdir(parents=True)
    dry = cleanup_job(Settings.from_env({"DATABASE_URL": migrated_url, **both})).run(dry_run=True)
    assert dry.status == "success", dry.failed
    report = storage_restore(Settings.from_env({"DATABASE_URL": migrated_url, **both}), both, done.backup_log_id)
    assert (report.objects, report.skipped) == (COUNT, COUNT)
    assert not (root / FOLDER / "storage-blobs").exists()
    # An unreachable target (its bucket gone) does not stop the restore from another.
    (root / FOLDER / "storage-blobs").mkdir()
    for sha in {r[3] for r in manifest(migrated_url, done.backup_log_id)}:
        body = moto_s3.client().get_object(Bucket=target, Key=f"{FOLDER}/storage-blobs/{sha}")["Body"].read()
        (root / FOLDER / "storage-blobs" / sha).write_bytes(body)
    gone = {**both, "BACKUP_STORAGE": "s3,local", "BACKUP_S3_BUCKET": "no-such-bucket"}
    empty(moto_s3, project["avatars"])
    report = storage_restore(Settings.from_env({"DATABASE_URL": migrated_url, **gone}), gone, done.backup_log_id)
    assert (report.objects, report.restored, report.buckets_created) == (COUNT, 4, [project["avatars"]])


def test_interrupted_blob_uploads_are_discarded_by_the_next_backup(
    migrated_url: str, moto_s3: MotoS3, project: dict[str, str], tmp_path: Path
) -> None:
    from dbbackup.storage.local import TEMP_PREFIX

    root, target = tmp_path / "store", moto_s3.bucket()
    env = env_for(moto_s3, project, root, target)
    blobs = root / FOLDER / "storage-blobs"
    blobs.mkdir(parents=True)
    leftover = blobs / f"{TEMP_PREFIX}0123456789ab-{'cd' * 32}"
    leftover.write_bytes(b"half a blob")  # a killed run's temporary file
    moto_s3.client().create_multipart_upload(Bucket=target, Key=f"{FOLDER}/storage-blobs/{'cd' * 32}")
    outcome = backup_job(Settings.from_env({"DATABASE_URL": migrated_url, **env})).run("manual")
    assert outcome.status == "success", outcome.reason
    assert not leftover.exists() and moto_s3.open_uploads(target) == []


def test_a_restore_upload_buffers_at_most_two_parts() -> None:
    """A non-seekable upload_fileobj reads ahead up to max_in_memory_upload_chunks parts."""
    from boto3.s3.transfer import create_transfer_manager

    from dbbackup.storage.s3_objects import PART_SIZE, transfer_config

    config = transfer_config()
    assert (config.max_in_memory_upload_chunks, config.multipart_chunksize, config.max_concurrency) == (2, PART_SIZE, 1)
    import boto3

    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    manager = create_transfer_manager(client, config)
    assert type(manager).__name__ == "TransferManager" and manager.config.max_in_memory_upload_chunks == 2


def test_over_a_thousand_objects_and_blobs_are_listed_page_by_page(
    migrated_url: str, moto_s3: MotoS3, tmp_path: Path
) -> None:
    """Both listings paginate (1,000 keys a page): every object of the bucket is in the manifest,
    and every blob already in the target is found (none written again). The objects are those
    of a previous manifest (same size and ETag), so the backup sends listings only."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    bucket, spare, target = bucket_name("many"), bucket_name("spare"), moto_s3.bucket()
    moto_s3.client().create_bucket(Bucket=bucket)
    moto_s3.client().create_bucket(Bucket=spare)
    env = env_for(moto_s3, {"many": bucket}, tmp_path, target, BACKUP_STORAGE="s3")
    before = backup_job(Settings.from_env({"DATABASE_URL": migrated_url, **env, "BACKUP_STORAGE_BUCKETS": spare}))
    earlier = before.run("manual")
    assert earlier.status == "success", earlier.reason
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]  # the server's own store: no request per object
    count, rows = 1001, []
    for n in range(count):
        data = f"object {n}".encode()
        sha = hashlib.sha256(data).hexdigest()
        backend.put_object(bucket, f"k/{n:04d}", data)
        backend.put_object(target, f"{FOLDER}/storage-blobs/{sha}", data)
        etag = hashlib.md5(data).hexdigest()
        rows.append((earlier.backup_log_id, bucket, f"k/{n:04d}", len(data), sha, "text/plain", "{}", etag))
    with psycopg.connect(migrated_url) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO storage_manifest (backup_log_id, bucket, object_key, size_bytes, sha256, content_type,"
            " metadata, etag) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )
    outcome = backup_job(Settings.from_env({"DATABASE_URL": migrated_url, **env})).run("manual")
    assert outcome.status == "success", outcome.reason
    assert outcome.storage is not None and (outcome.storage["objects"], outcome.storage["new_blobs"]) == (count, 0)
    assert len(manifest(migrated_url, outcome.backup_log_id)) == count


def test_blob_retention_with_two_targets_keeps_a_weekly_backups_blobs(
    migrated_url: str, moto_s3: MotoS3, project: dict[str, str], tmp_path: Path
) -> None:
    root, target = tmp_path / "store", moto_s3.bucket()
    env = env_for(
        moto_s3, project, root, target, BACKUP_KEEP_MIN="1", BACKUP_RETENTION_DAYS="1", BACKUP_KEEP_WEEKLY="4"
    )
    settings = Settings.from_env({"DATABASE_URL": migrated_url, **env})
    now = datetime.now(UTC).replace(hour=12, minute=0) + timedelta(days=30)
    s3 = moto_s3.client()
    sha: dict[str, str] = {}
    # Two backups in one week two weeks ago (the newer is that week's weekly), one now.
    for version, when in (("v1", now - timedelta(days=14)), ("v2", now - timedelta(days=14, minutes=-2)), ("v3", now)):
        body = f"%PDF-1.7 {version}".encode()
        sha[version] = hashlib.sha256(body).hexdigest()
        s3.put_object(Bucket=project["invoices"], Key="2026/12/INV-0001.pdf", Body=body)
        done = backup_job(settings, clock=lambda when=when: when).run("manual")  # type: ignore[misc]
        assert done.status == "success", done.reason

    def s3_blobs() -> set[str]:
        return {k.rsplit("/", 1)[1] for k in moto_s3.keys(target) if "/storage-blobs/" in k}

    result = cleanup_job(settings, clock=lambda: now + timedelta(minutes=5)).run()
    assert result.status == "success", result.failed
    assert len(result.deleted) == 2 and len(result.kept_weekly) == 2  # v1's backup, in both targets
    assert sorted(result.blobs_deleted) == [f"local:{sha['v1']}", f"s3:{sha['v1']}"]
    for held in (local_blobs(root), s3_blobs()):
        assert sha["v1"] not in held and {sha["v2"], sha["v3"], hashlib.sha256(BIG).hexdigest()} <= held
