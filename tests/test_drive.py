"""The Google Drive backend against the Drive fake: the real google-auth and
google-api-python-client talk HTTP to a server on 127.0.0.1; faults are injected server-side."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from dbbackup.errors import ConfigError, StorageError, StorageExists
from dbbackup.settings import Settings
from fakes import ROBOT, TEST_CHUNK, USER, drive_env, make_drive_storage
from fakes.drive_fake import DriveFake

pytest_plugins = ["fakes.fixtures"]  # the fake servers' fixtures (drive_fake, drive_storage, ...)

CHUNK = TEST_CHUNK


def payload(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def pieces(data: bytes, piece: int = 100_000) -> Iterator[bytes]:
    """The way DumpStream hands gzip output over: pieces unrelated to the chunk size."""
    for start in range(0, len(data), piece):
        yield data[start : start + piece]


def puts(fake: DriveFake) -> list[Any]:
    return [s for s in fake.log if s.method == "PUT"]


def initiations(fake: DriveFake) -> int:
    return sum(1 for s in fake.log if s.method == "POST" and s.path.startswith("/upload/"))


def names(fake: DriveFake, folder_id: str) -> list[str]:
    return sorted(f.name for f in fake.children(folder_id))


# ---- streaming and the protocol ---------------------------------------------------------------


def test_a_multi_chunk_upload_streams_chunk_by_chunk_and_reads_back(drive_fake: DriveFake, drive_storage) -> None:
    folder = drive_storage.ensure_folder("MyDrive/DatabaseBackups")
    data = payload(5 * CHUNK + 12_345)
    stored = drive_storage.put(folder, "f.sql.gz", pieces(data))
    assert (stored.size, b"".join(drive_storage.open(stored.id))) == (len(data), data)
    ranges = [s.content_range for s in puts(drive_fake)]
    # Size unknown while streaming ("*"), announced with the last chunk; one session only.
    assert ranges[:5] == [f"bytes {i * CHUNK}-{(i + 1) * CHUNK - 1}/*" for i in range(5)]
    assert ranges[5] == f"bytes {5 * CHUNK}-{len(data) - 1}/{len(data)}"
    assert initiations(drive_fake) == 1


def test_a_stream_of_exactly_whole_chunks_is_finalised_with_its_size(drive_fake: DriveFake, drive_storage) -> None:
    folder = drive_storage.ensure_folder("A")
    data = payload(3 * CHUNK)
    stored = drive_storage.put(folder, "f.sql.gz", pieces(data))
    assert b"".join(drive_storage.open(stored.id)) == data
    assert puts(drive_fake)[-1].content_range == f"bytes {2 * CHUNK}-{3 * CHUNK - 1}/{3 * CHUNK}"


def test_every_call_declares_shared_drive_support(drive_fake: DriveFake) -> None:
    creds = drive_fake.service_account_key(ROBOT)
    drive_fake.add_shared_drive("Team Backups", [ROBOT])
    storage = make_drive_storage(drive_fake, creds)
    folder = storage.ensure_folder("SharedDrives/Team Backups/db/nightly")
    stored = storage.put(folder, "f.sql.gz", pieces(payload(2 * CHUNK + 5)))
    assert [f.name for f in storage.list(folder)] == ["f.sql.gz"]
    assert len(b"".join(storage.open(stored.id))) == 2 * CHUNK + 5
    storage.delete(stored.id)
    api = [
        s for s in drive_fake.log if s.path.startswith(("/drive/v3/files", "/upload/")) and "upload_id" not in s.query
    ]
    assert api and all(s.query.get("supportsAllDrives") == "true" for s in api)


# ---- retries ----------------------------------------------------------------------------------


RETRIED = [(503, "backendError"), (500, "internalError"), (429, "rateLimitExceeded"), (403, "userRateLimitExceeded")]


@pytest.mark.parametrize(("status", "reason"), RETRIED)
def test_a_failed_chunk_is_retried_and_the_upload_succeeds(
    drive_fake: DriveFake, drive_storage, status: int, reason: str
) -> None:
    folder = drive_storage.ensure_folder("A")
    drive_fake.fail(status, nth=3, method="PUT", path="/upload/", reason=reason)
    data = payload(5 * CHUNK + 1)
    stored = drive_storage.put(folder, "f.sql.gz", pieces(data))
    assert b"".join(drive_storage.open(stored.id)) == data
    assert [s.status for s in puts(drive_fake)].count(status) == 1 and initiations(drive_fake) == 1


def test_a_chunk_failing_every_attempt_fails_cleanly_and_leaves_nothing(drive_fake: DriveFake, drive_storage) -> None:
    folder = drive_storage.ensure_folder("A")
    drive_fake.fail(503, nth=2, method="PUT", path="/upload/", times=10)
    with pytest.raises(
        StorageError, match=r"upload of MyDrive/A/f.sql.gz at byte 262144 failed \(HTTP 503.*gave up after 3"
    ):
        drive_storage.put(folder, "f.sql.gz", pieces(payload(5 * CHUNK)))
    assert names(drive_fake, folder.id) == [] and drive_storage.list(folder) == []
    assert len(drive_fake.open_sessions()) == 1  # abandoned, never finalised
    assert len(puts(drive_fake)) == 1 + 3  # the first chunk, then 3 attempts at the second


def test_a_dropped_connection_mid_chunk_resumes_from_the_servers_offset(drive_fake: DriveFake) -> None:
    storage = make_drive_storage(drive_fake, drive_fake.authorized_user(USER), GOOGLE_DRIVE_CHUNK_SIZE=str(2 * CHUNK))
    folder = storage.ensure_folder("A")
    # The second chunk (bytes 512 KiB-1 MiB) is cut after 300 KiB each time httplib2 sends it
    # (it re-sends once by itself); the fake keeps the first whole 256 KiB of it.
    drive_fake.drop(nth=2, after_bytes=300 * 1024, times=3)
    data = payload(6 * CHUNK + 99)
    stored = storage.put(folder, "f.sql.gz", pieces(data))
    assert b"".join(storage.open(stored.id)) == data
    ranges = [s.content_range for s in puts(drive_fake)]
    # The third cut hits the first status query; the next one is answered (308, Range 0-786431).
    status_query = len(ranges) - 1 - ranges[::-1].index("bytes */*")
    assert ranges[status_query + 1] == f"bytes {3 * CHUNK}-{5 * CHUNK - 1}/*"  # from the reported offset
    assert initiations(drive_fake) == 1


def test_a_slow_answer_times_out_and_is_retried(drive_fake: DriveFake) -> None:
    storage = make_drive_storage(drive_fake, drive_fake.authorized_user(USER), GOOGLE_DRIVE_TIMEOUT_SECONDS="0.3")
    folder = storage.ensure_folder("A")
    drive_fake.slow(1.0, nth=2, method="PUT")
    data = payload(4 * CHUNK + 7)
    stored = storage.put(folder, "f.sql.gz", pieces(data))
    assert b"".join(storage.open(stored.id)) == data
    assert "bytes */*" in [s.content_range for s in puts(drive_fake)]


def test_an_access_token_expiring_mid_upload_is_refreshed_without_restarting(
    drive_fake: DriveFake, drive_storage
) -> None:
    folder = drive_storage.ensure_folder("A")
    drive_fake.expire_token(nth=3, method="PUT")
    data = payload(5 * CHUNK + 3)
    stored = drive_storage.put(folder, "f.sql.gz", pieces(data))
    assert b"".join(drive_storage.open(stored.id)) == data
    assert drive_fake.grants == [USER, USER] and initiations(drive_fake) == 1
    assert [s.status for s in puts(drive_fake)].count(401) == 1


def test_a_lost_upload_session_fails_clearly_and_leaves_nothing(drive_fake: DriveFake, drive_storage) -> None:
    folder = drive_storage.ensure_folder("A")
    drive_fake.lose_session(nth=3)
    with pytest.raises(StorageError, match=r"upload session of MyDrive/A/f.sql.gz expired or was lost \(HTTP 404\)"):
        drive_storage.put(folder, "f.sql.gz", pieces(payload(5 * CHUNK)))
    assert names(drive_fake, folder.id) == []


def test_bytes_corrupted_in_storage_fail_the_upload_and_the_file_is_deleted(
    drive_fake: DriveFake, drive_storage
) -> None:
    folder = drive_storage.ensure_folder("A")
    drive_fake.corrupt_next_upload()
    with pytest.raises(StorageError, match=r"MD5 .* were sent; the bad file was deleted"):
        drive_storage.put(folder, "f.sql.gz", pieces(payload(2 * CHUNK)))
    assert names(drive_fake, folder.id) == [] and drive_fake.find("f.sql.gz") == []


def test_folder_creation_retries_without_making_duplicates(drive_fake: DriveFake, drive_storage) -> None:
    # The create reaches the server, but its answer is lost: the retry must find it, not re-create.
    drive_fake.drop(nth=1, method="POST", path="/drive/v3/files", times=2)
    folder = drive_storage.ensure_folder("MyDrive/Backups")
    assert len(drive_fake.find("Backups")) <= 1 and drive_storage.ensure_folder("MyDrive/Backups") == folder


# ---- folders and paths ------------------------------------------------------------------------


def test_missing_folders_are_created_once(drive_fake: DriveFake, drive_storage) -> None:
    first = drive_storage.ensure_folder("MyDrive/Company/DB Backups")
    assert drive_storage.ensure_folder("MyDrive/Company/DB Backups") == first
    assert first.path == "MyDrive/Company/DB Backups"
    assert [len(drive_fake.find(n)) for n in ("Company", "DB Backups")] == [1, 1]
    creates = [s for s in drive_fake.log if s.method == "POST" and s.path == "/drive/v3/files"]
    assert len(creates) == 2


def test_names_with_quotes_and_backslashes_are_escaped(drive_fake: DriveFake, drive_storage) -> None:
    name = 'O\'Brien \\ "nightly"'
    folder = drive_storage.ensure_folder(f"MyDrive/{name}")
    assert drive_storage.ensure_folder(f"MyDrive/{name}") == folder and len(drive_fake.find(name)) == 1
    drive_storage.put(folder, "it's.sql.gz", iter([b"x"]))
    with pytest.raises(StorageExists):
        drive_storage.put(folder, "it's.sql.gz", iter([b"y"]))


def test_two_folders_with_the_same_name_are_an_error_naming_both(drive_fake: DriveFake, drive_storage) -> None:
    root = drive_fake.roots[USER]
    ids = [drive_fake.add_folder("Backups", root, USER) for _ in range(2)]
    with pytest.raises(StorageError, match="exists 2 times") as info:
        drive_storage.ensure_folder("MyDrive/Backups/db")
    assert all(i in str(info.value) for i in ids)
    assert drive_fake.find("db") == []


def test_a_folder_id_is_accepted(drive_fake: DriveFake, drive_storage) -> None:
    folder_id = drive_fake.add_folder("Shared with the job", drive_fake.roots[USER], USER)
    folder = drive_storage.ensure_folder(f"id:{folder_id}")
    assert folder.id == folder_id
    drive_storage.put(folder, "f.sql.gz", iter([b"abc"]))
    assert names(drive_fake, folder_id) == ["f.sql.gz"]


def test_a_missing_shared_drive_is_named(drive_fake: DriveFake) -> None:
    storage = make_drive_storage(drive_fake, drive_fake.service_account_key(ROBOT))
    with pytest.raises(StorageError, match="no Shared drive named 'Nope'"):
        storage.ensure_folder("SharedDrives/Nope/db")


def test_listing_follows_pages(drive_fake: DriveFake, drive_storage) -> None:
    folder = drive_storage.ensure_folder("A")
    for i in range(5):
        drive_storage.put(folder, f"f{i}.sql.gz", iter([b"x" * i]))
    drive_fake.page_size_cap = 2
    assert sorted(f.name for f in drive_storage.list(folder)) == [f"f{i}.sql.gz" for i in range(5)]


# ---- credentials ------------------------------------------------------------------------------


def test_a_service_account_in_my_drive_is_told_what_to_do(drive_fake: DriveFake) -> None:
    storage = make_drive_storage(drive_fake, drive_fake.service_account_key(ROBOT))
    folder = storage.ensure_folder("MyDrive/Backups")
    with pytest.raises(StorageError) as info:
        storage.put(folder, "f.sql.gz", iter([b"abc"]))
    message = str(info.value)
    assert "has no storage quota of its own" in message
    assert all(s in message for s in ("Shared drive", "GOOGLE_DRIVE_SUBJECT", "authorized_user"))


def test_domain_wide_delegation_acts_as_the_user(drive_fake: DriveFake) -> None:
    drive_fake.add_user(USER)
    storage = make_drive_storage(
        drive_fake, drive_fake.service_account_key(ROBOT, delegation=True), GOOGLE_DRIVE_SUBJECT=USER
    )
    folder = storage.ensure_folder("MyDrive/Backups")
    stored = storage.put(folder, "f.sql.gz", iter([b"abc"]))
    assert drive_fake.files[stored.id].owner == USER


def test_credential_secrets_never_appear_in_errors(drive_fake: DriveFake) -> None:
    creds = drive_fake.authorized_user(USER)
    wrong = {**creds, "refresh_token": "1//revoked-" + "r" * 30}
    with pytest.raises(StorageError) as info:
        make_drive_storage(drive_fake, wrong).ensure_folder("A")
    text = str(info.value)
    assert "could not get a Google access token" in text and "invalid_grant" in text
    assert all(secret not in text for secret in (wrong["refresh_token"], creds["client_secret"]))


def test_settings_validate_the_drive_variables_by_name(drive_fake: DriveFake) -> None:
    base = {"DATABASE_URL": "postgresql://u:pw@localhost/db"}
    creds = drive_fake.service_account_key(ROBOT)
    env = drive_env(drive_fake, creds)
    settings = Settings.from_env(base | env)
    assert settings.google_drive is not None and settings.google_drive.chunk_size == CHUNK
    assert creds["private_key"].splitlines()[1] not in repr(settings) + repr(settings.google_drive)
    assert creds["private_key"] in settings.secrets
    bad = {
        "GOOGLE_DRIVE_CHUNK_SIZE": "300000",
        "GOOGLE_DRIVE_ROOT_URL": "http://drive.example.com/",
        "GOOGLE_DRIVE_CREDENTIALS": "{not json",
        "GOOGLE_DRIVE_MAX_ATTEMPTS": "0",
        "GOOGLE_DRIVE_SUBJECT": "not-an-email",
    }
    for variable, value in bad.items():
        with pytest.raises(ConfigError, match=variable):
            Settings.from_env(base | env | {variable: value})
    with pytest.raises(ConfigError, match="GOOGLE_DRIVE_CREDENTIALS is not set"):
        Settings.from_env(base | {"BACKUP_STORAGE": "google_drive"})
    with pytest.raises(ConfigError, match=r"GOOGLE_DRIVE_SUBJECT .* needs a service account"):
        Settings.from_env(base | drive_env(drive_fake, drive_fake.authorized_user(USER), GOOGLE_DRIVE_SUBJECT=USER))


def test_the_default_endpoint_is_googles_and_local_runs_never_import_google() -> None:
    code = (
        "import sys, json\n"
        "from dbbackup.settings import Settings\n"
        "from dbbackup.wiring import make_storage\n"
        "make_storage(Settings.from_env({'DATABASE_URL': 'postgresql://localhost/db'}))\n"
        "google = ('googleapiclient', 'google.auth', 'google.oauth2', 'google_auth_httplib2', 'httplib2')\n"
        "assert not any(m.startswith(google) for m in sys.modules), 'a Google library was imported'\n"
        "from dbbackup.storage.drive import DriveStorage\n"
        "from dbbackup.storage.drive_config import drive_config_from_env\n"
        "creds = {'type': 'authorized_user', 'client_id': 'c', 'client_secret': 's', 'refresh_token': 'r'}\n"
        "s = DriveStorage(drive_config_from_env({'GOOGLE_DRIVE_CREDENTIALS': json.dumps(creds)}))\n"
        "print(s._service._baseUrl, s._files.create(body={}, media_body=None).uri.split('?')[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["https://www.googleapis.com/drive/v3/", "https://www.googleapis.com/drive/v3/files"]


def test_the_fake_runs_on_its_own_and_prints_how_to_use_it(tmp_path) -> None:
    script = os.path.join(os.path.dirname(__file__), "fakes", "drive_fake.py")
    proc = subprocess.Popen(
        [sys.executable, script, "--port", "0", "--dir", str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        lines = [proc.stdout.readline() for _ in range(4)]  # type: ignore[union-attr]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert "export BACKUP_STORAGE=google_drive" in "".join(lines)
    assert json.loads((tmp_path / "user.json").read_text())["type"] == "authorized_user"
