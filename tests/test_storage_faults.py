"""The object stores failing under the ``s3`` and ``gcs`` backends: a 5xx mid-upload, a cut
connection, a missing bucket, a refused permission, a throttle or quota. Each is one readable
``StorageError`` line naming the store, and leaves no object behind (nor, on S3, an open
multipart upload). A ``FaultProxy`` in front of moto / the GCS emulator injects the failures.
Retention: an S3 Object Lock (moto enforces it) and a GCS retention policy (the emulator has
none: GCS's answer is injected) make ``delete`` raise ``StorageRetained`` with the date."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dbbackup.errors import StorageError, StorageRetained
from fakes._http import Exchange, Fault, Reply
from fakes.object_stores import GCS_TEST_CHUNK, S3_TEST_PART, FaultProxy, GcsEmulator, MotoS3, gcs_error, s3_error

pytest_plugins = ["fakes.fixtures"]

PACKAGE = Path(__file__).resolve().parent.parent / "shared" / "dbbackup"
NAME = "DB_Backup_2026-01-01_01-00.sql.gz"
DATA = bytes(range(256)) * (3 * S3_TEST_PART // 256 + 100)  # a little over three parts / chunks


def pieces(data: bytes = DATA, size: int = 64 * 1024) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def drop(exchange: Exchange) -> Reply:
    exchange.take(1024)
    exchange.drop()


def one_line(exc: pytest.ExceptionInfo[StorageError]) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text and len(text) < 400, text
    return text


# -- S3 ------------------------------------------------------------------------------------------


@pytest.fixture
def s3(moto_s3: MotoS3) -> Iterator[tuple[MotoS3, FaultProxy, str]]:
    bucket = moto_s3.bucket()
    with FaultProxy(moto_s3.url) as proxy:
        yield moto_s3, proxy, bucket


def part(n: int) -> Callable[[Exchange], bool]:
    return lambda ex: ex.query.get("partNumber") == str(n)


S3_FAULTS: dict[str, tuple[Fault, str]] = {
    "5xx_mid_upload": (
        Fault(lambda ex: s3_error(500, "InternalError"), method="PUT", when=part(2), times=10),
        r"upload part 2 of s3://\S+ failed: HTTP 500 InternalError",
    ),
    "dropped_connection": (
        Fault(drop, method="PUT", when=part(2), times=10),
        r"upload part 2 of s3://\S+ failed: connection to http://127\.0\.0\.1:\d+ lost",
    ),
    "permission_denied": (
        Fault(lambda ex: s3_error(403, "AccessDenied", "Access Denied"), method="PUT", when=part(1), times=10),
        r"s3: permission denied to upload part 1 of s3://\S+ \(AccessDenied\)",
    ),
    "slow_down": (
        Fault(
            lambda ex: s3_error(503, "SlowDown", "Please reduce your request rate."),
            method="PUT",
            when=part(3),
            times=10,
        ),
        r"s3: upload part 3 of s3://\S+ was throttled by the server \(SlowDown\)",
    ),
    "quota": (
        Fault(lambda ex: s3_error(403, "QuotaExceeded", "quota"), method="POST", when=lambda ex: "uploads" in ex.query),
        r"s3: permission denied to start the multipart upload of s3://\S+ \(QuotaExceeded\)",
    ),
}


@pytest.mark.parametrize("fault", sorted(S3_FAULTS))
def test_s3_faults_are_one_line_and_leave_no_object_and_no_open_upload(
    s3: tuple[MotoS3, FaultProxy, str], fault: str
) -> None:
    moto, proxy, bucket = s3
    storage = moto.storage(bucket, url=proxy.url)
    folder = storage.ensure_folder("backups")
    armed, expected = S3_FAULTS[fault]
    proxy.arm(Fault(**{**armed.__dict__, "seen": 0}))
    with pytest.raises(StorageError) as exc:
        storage.put(folder, NAME, pieces())
    assert re.search(expected, one_line(exc)), str(exc.value)
    assert moto.keys(bucket) == []
    assert moto.open_uploads(bucket) == []


def test_s3_missing_bucket_is_named(moto_s3: MotoS3) -> None:
    storage = moto_s3.storage("dbbackup-no-such-bucket")
    with pytest.raises(StorageError) as exc:
        storage.ensure_folder("backups")
    assert one_line(exc) == "s3: bucket 'dbbackup-no-such-bucket' does not exist (list)"


def test_s3_multipart_upload_is_byte_identical_and_its_etag_checked(s3: tuple[MotoS3, FaultProxy, str]) -> None:
    moto, proxy, bucket = s3
    storage = moto.storage(bucket, url=proxy.url)
    folder = storage.ensure_folder("backups/nightly")
    stored = storage.put(folder, NAME, pieces())
    parts = [ex for ex in proxy.exchanges if ex.method == "PUT" and "partNumber" in ex.query]
    assert len(parts) == 4 and all(len(ex.data or b"") <= S3_TEST_PART for ex in parts)  # memory: one part
    assert stored.id == f"backups/nightly/{NAME}" and stored.size == len(DATA)
    assert b"".join(storage.open(stored.id)) == DATA
    assert moto.client().head_object(Bucket=bucket, Key=stored.id)["ETag"].strip('"').endswith("-4")


def test_s3_a_dump_failing_after_some_parts_aborts_the_upload(s3: tuple[MotoS3, FaultProxy, str]) -> None:
    moto, _proxy, bucket = s3
    storage = moto.storage(bucket)
    folder = storage.ensure_folder("backups")

    def dump() -> Iterator[bytes]:
        yield from pieces(DATA[: 2 * S3_TEST_PART + 10])
        raise RuntimeError("pg_dump died")

    with pytest.raises(RuntimeError, match="pg_dump died"):
        storage.put(folder, NAME, dump())
    assert moto.keys(bucket) == [] and moto.open_uploads(bucket) == []


def test_s3_discard_incomplete_aborts_what_a_killed_upload_left(moto_s3: MotoS3) -> None:
    bucket = moto_s3.bucket()
    moto_s3.client().create_multipart_upload(Bucket=bucket, Key=f"backups/{NAME}")
    storage = moto_s3.storage(bucket)
    assert storage.discard_incomplete(storage.ensure_folder("backups")) == 1
    assert moto_s3.open_uploads(bucket) == []


def test_s3_object_lock_keeps_the_copy_and_delete_says_until_when(moto_s3: MotoS3) -> None:
    bucket = moto_s3.bucket(lock=True)
    storage = moto_s3.storage(bucket, object_lock_days=2)
    folder = storage.ensure_folder("backups")
    stored = storage.put(folder, NAME, pieces(DATA[:1000]))
    head = moto_s3.client().head_object(Bucket=bucket, Key=stored.id)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=1)
    with pytest.raises(StorageRetained) as exc:
        storage.delete(stored.id)
    assert re.fullmatch(
        rf"s3://{bucket}/backups/{NAME} is under S3 Object Lock \(COMPLIANCE\) until \d{{4}}-\d\d-\d\d \d\d:\d\d UTC;"
        " not deleted",
        one_line(exc),
    )
    assert exc.value.until is not None
    assert storage.stat(stored.id).size == 1000
    # Not even a direct delete of the version (what a compromised function could try) removes it.
    with pytest.raises(Exception, match="AccessDenied"):
        moto_s3.client().delete_object(Bucket=bucket, Key=stored.id, VersionId=head["VersionId"])


def test_s3_secrets_never_appear_in_repr_or_errors(moto_s3: MotoS3) -> None:
    storage = moto_s3.storage("dbbackup-no-such-bucket")
    assert "testing-secret-access-key" not in repr(storage.config)
    assert storage.config.secrets == ("testing-secret-access-key",)


# -- GCS -----------------------------------------------------------------------------------------


@pytest.fixture
def gcs(gcs_emulator: GcsEmulator) -> Iterator[tuple[GcsEmulator, FaultProxy, str]]:
    bucket = gcs_emulator.bucket()
    with FaultProxy(gcs_emulator.url) as proxy:
        yield gcs_emulator, proxy, bucket


def chunk_put(n: int) -> Callable[[Exchange], bool]:
    """The nth chunk of a resumable upload (its Content-Range starts at (n-1) chunks)."""
    return lambda ex: ex.header("Content-Range").startswith(f"bytes {(n - 1) * GCS_TEST_CHUNK}-")


GCS_FAULTS: dict[str, tuple[Fault, str]] = {
    "5xx_mid_upload": (
        Fault(lambda ex: gcs_error(503, "Backend Error"), method="PUT", path="/upload/", when=chunk_put(2), times=50),
        r"gcs: upload gs://\S+ failed: HTTP 503",
    ),
    "dropped_connection": (
        Fault(drop, method="PUT", path="/upload/", when=chunk_put(2), times=50),
        r"gcs: upload gs://\S+ failed: connection lost \(\w+\)",
    ),
    "permission_denied": (
        Fault(
            lambda ex: gcs_error(403, "backup@p.iam.gserviceaccount.com does not have storage.objects.create access"),
            method="POST",
            path="/upload/",
            times=5,
        ),
        r"gcs: permission denied to upload gs://\S+ \(HTTP 403: backup@\S+ does not have storage\.objects\.create",
    ),
    "quota": (
        Fault(lambda ex: gcs_error(429, "rate limit", "rateLimitExceeded"), method="PUT", path="/upload/", times=50),
        r"gcs: upload gs://\S+ was rate-limited or over quota \(HTTP 429\)",
    ),
}


@pytest.mark.parametrize("fault", sorted(GCS_FAULTS))
def test_gcs_faults_are_one_line_and_leave_no_object(gcs: tuple[GcsEmulator, FaultProxy, str], fault: str) -> None:
    emulator, proxy, bucket = gcs
    storage = emulator.storage(bucket, url=proxy.url)
    folder = storage.ensure_folder("backups")
    armed, expected = GCS_FAULTS[fault]
    proxy.arm(Fault(**{**armed.__dict__, "seen": 0}))
    with pytest.raises(StorageError) as exc:
        storage.put(folder, NAME, pieces())
    assert re.search(expected, one_line(exc)), str(exc.value)
    assert emulator.names(bucket) == []


def test_gcs_missing_bucket_is_named(gcs_emulator: GcsEmulator) -> None:
    storage = gcs_emulator.storage("dbbackup-no-such-bucket")
    with pytest.raises(StorageError) as exc:
        storage.ensure_folder("backups")
    assert one_line(exc) == "gcs: bucket 'dbbackup-no-such-bucket' does not exist (list)"


def test_gcs_upload_is_chunked_and_byte_identical(gcs: tuple[GcsEmulator, FaultProxy, str]) -> None:
    emulator, proxy, bucket = gcs
    storage = emulator.storage(bucket, url=proxy.url)
    folder = storage.ensure_folder("backups/nightly")
    stored = storage.put(folder, NAME, pieces())
    chunks = [ex for ex in proxy.exchanges if ex.method == "PUT" and ex.path.startswith("/upload/")]
    assert len(chunks) == 4 and all(len(ex.data or b"") <= GCS_TEST_CHUNK for ex in chunks)  # memory: one chunk
    assert (stored.id, stored.size) == (f"backups/nightly/{NAME}", len(DATA))
    assert b"".join(storage.open(stored.id)) == DATA
    assert storage.stat(stored.id).md5 == stored.md5


def test_gcs_a_failing_dump_cancels_the_session(gcs: tuple[GcsEmulator, FaultProxy, str]) -> None:
    emulator, proxy, bucket = gcs
    storage = emulator.storage(bucket, url=proxy.url)
    folder = storage.ensure_folder("backups")

    def dump() -> Iterator[bytes]:
        yield from pieces(DATA[: 2 * GCS_TEST_CHUNK + 10])
        raise RuntimeError("pg_dump died")

    with pytest.raises(RuntimeError, match="pg_dump died"):
        storage.put(folder, NAME, dump())
    assert emulator.names(bucket) == []
    assert [ex.method for ex in proxy.exchanges if ex.path.startswith("/upload/")][-1] == "DELETE"  # the cancel


RETAINED = "Object 'backups/x' is subject to bucket's retention policy or object retention and cannot be deleted"


def test_gcs_delete_under_a_retention_policy_is_storage_retained_with_its_date(
    gcs: tuple[GcsEmulator, FaultProxy, str],
) -> None:
    emulator, proxy, bucket = gcs
    storage = emulator.storage(bucket, url=proxy.url)
    stored = storage.put(storage.ensure_folder("backups"), NAME, iter([b"locked"]))
    until = "2030-01-02T03:04:05.000Z"

    def with_retention(ex: Exchange) -> Reply:
        # The emulator has no retention policy: the metadata GCS would return, then its refusal.
        reply = proxy.respond(ex)
        meta: dict[str, Any] = json.loads(reply.body)
        return Reply.json(200, {**meta, "retentionExpirationTime": until})

    proxy.arm(Fault(with_retention, method="GET", path=f"/storage/v1/b/{bucket}/o/", times=10))
    proxy.arm(Fault(lambda ex: gcs_error(403, RETAINED, "retentionPolicyNotMet"), method="DELETE", times=10))
    with pytest.raises(StorageRetained) as exc:
        storage.delete(stored.id)
    assert one_line(exc) == (
        f"gs://{bucket}/backups/{NAME} is retained by the bucket's retention policy until 2030-01-02 03:04 UTC;"
        " not deleted"
    )
    assert exc.value.until == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert emulator.names(bucket) == [stored.id]


# -- boundaries -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sdk", "adapters"),
    [
        # Supabase Storage's objects (issue 22) are read over S3 by the second boto3 adapter.
        (r"\bboto3\b|\bbotocore\b", {"s3.py", "s3_objects.py"}),
        (r"google\.cloud\.storage|google\.cloud import storage", {"gcs.py"}),
    ],
)
def test_each_object_store_sdk_is_imported_by_its_adapter_only(sdk: str, adapters: set[str]) -> None:
    # import-linter can forbid only top-level external packages ("google" is every Google library).
    importers = {
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*.py")
        if re.search(rf"^\s*(import|from)\s+({sdk})", p.read_text(), re.MULTILINE)
    }
    assert importers == {f"storage/{a}" for a in adapters}
