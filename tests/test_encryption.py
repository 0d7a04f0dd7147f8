"""Encryption at rest with age: backups a stolen folder cannot read, made by a backup side that
holds only public keys, restored by our tool and by stock ``age -d | gunzip | psql`` alike, and
every bad key or damaged file refused without a byte committed."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from pyrage import x25519
from test_roundtrip import OURS, load_variety

from dbbackup.core import naming, seek_index
from dbbackup.dump import age
from dbbackup.errors import ConfigError
from dbbackup.pg import binaries as pgbin
from dbbackup.redact import MASK, redact
from dbbackup.restore import seekable
from dbbackup.restore.sources import Source
from dbbackup.settings import Settings
from dbbackup.wiring import backup_job
from fakes import drive_env
from fakes.drive_fake import DriveFake
from fakes.secretmanager_fake import SecretManagerFake
from support.cli import pg_dump_that_fails, run_cli
from support.db import DbFactory
from support.pgcompare import assert_databases_equal

pytest_plugins = ["fakes.fixtures"]

MARKER = "confidential-note-7f3a"  # a value that must not be readable in the stored file
AGE = shutil.which("age")
needs_age = pytest.mark.skipif(
    AGE is None and not os.environ.get("DBBACKUP_REQUIRE_AGE"),
    reason="Debian's age is not installed (apt-get install age; .ci/run installs it)",
)


@dataclass(frozen=True)
class Key:
    """An age key pair as age-keygen writes it: the identity file and its public key."""

    file: Path
    identity: str
    recipient: str


@pytest.fixture
def keys(tmp_path: Path) -> list[Key]:
    """Two key pairs (an operations key and an escrow key), generated at run time."""
    made = []
    for n in (1, 2):
        identity = x25519.Identity.generate()
        public = str(identity.to_public())
        file = tmp_path / f"key{n}.txt"
        file.write_text(f"# created: 2026-12-02T00:00:00Z\n# public key: {public}\n{identity}\n")
        made.append(Key(file, str(identity), public))
    return made


def encrypted_env(*keys: Key, **extra: str) -> dict[str, str]:
    # Comma and whitespace both separate recipients.
    return {"BACKUP_AGE_RECIPIENTS": ",\n ".join(k.recipient for k in keys), **extra}


def one_line(stderr: str) -> str:
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    return stderr


def tables(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()[0]


@dataclass
class Encrypted:
    url: str
    root: Path
    file: Path
    log_id: str
    keys: list[Key]

    def cli(self, args: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
        return run_cli(args, self.url, BACKUP_LOCAL_ROOT=str(self.root), **extra)


@pytest.fixture
def encrypted(migrated_url: str, tmp_path: Path, keys: list[Key]) -> Encrypted:
    """One encrypted CLI backup of a database of about 1 MB of SQL (several age pieces)."""
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id int PRIMARY KEY, amount numeric, note text)")
        conn.execute(
            "INSERT INTO invoices SELECT g, g * 1.5, %s || md5(g::text) FROM generate_series(1, 20000) g", (MARKER,)
        )
    root = tmp_path / "store"
    proc = run_cli(["backup", "--json"], migrated_url, BACKUP_LOCAL_ROOT=str(root), **encrypted_env(*keys))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    return Encrypted(migrated_url, root, root / out["file_id"], out["backup_log_id"], keys)


def age_decrypt(file: Path, key: Key) -> bytes:
    proc = subprocess.run([str(AGE), "-d", "-i", str(key.file), str(file)], capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def psql(url: str, sql: bytes) -> None:
    proc = subprocess.run(
        [str(pgbin.tool("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url],
        input=sql,
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()


# --- the file ---------------------------------------------------------------------------------


def test_an_encrypted_backup_is_an_age_file_with_no_plaintext_and_a_row_for_the_stored_bytes(
    encrypted: Encrypted,
) -> None:
    data = encrypted.file.read_bytes()
    assert encrypted.file.name.endswith(".sql.gz.age") and naming.parse(encrypted.file.name, ZoneInfo("UTC"))
    assert data.startswith(b"age-encryption.org/v1\n")
    header = age.read_header(data[:4096])
    assert header.recipients == 2
    # Neither the SQL nor the gzip stream is in the file: not the marker, not pg_dump's header, and
    # no 32-byte run of the gzip stream (its first member's header, a piece of its middle). Runs that
    # long, not gzip's 3-byte magic: random ciphertext of this size (500 kB) holds that by chance in
    # about one file in 30, which once failed CI.
    body = data[header.length :]
    for plain in (MARKER.encode(), b"PostgreSQL database dump", b"COPY public.invoices"):
        assert plain not in body, plain
    stream = b"".join(age.decrypt([data], age.parse_identities(encrypted.keys[0].identity, "t")))
    assert stream.startswith(b"\x1f\x8b\x08")
    for at in (0, len(stream) // 2):
        assert stream[at : at + 32] not in body, at
    with psycopg.connect(encrypted.url) as conn:
        size, md5, name = conn.execute(
            "SELECT file_size_bytes, md5_checksum, file_name FROM backup_logs WHERE id = %s", (encrypted.log_id,)
        ).fetchone()
    assert (size, md5, name) == (len(data), hashlib.md5(data).hexdigest(), encrypted.file.name)


def test_either_recipients_identity_decrypts_to_the_complete_dump(encrypted: Encrypted) -> None:
    plain = [
        gzip.decompress(b"".join(age.decrypt([encrypted.file.read_bytes()], age.parse_identities(k.identity, "t"))))
        for k in encrypted.keys
    ]
    assert plain[0] == plain[1] and MARKER.encode() in plain[0]
    assert b"-- PostgreSQL database dump complete" in plain[0]


def test_an_encrypted_backup_records_its_index_and_restores_one_table_by_streaming(
    encrypted: Encrypted, make_db: DbFactory
) -> None:
    """The index's offsets are of the gzip stream inside the age file: recorded, marked
    encrypted; ``restore --table`` then decrypts the file from the start (no range to read)."""
    with psycopg.connect(encrypted.url) as conn:
        manifest = conn.execute("SELECT manifest FROM backup_logs WHERE id = %s", (encrypted.log_id,)).fetchone()[0]
    index = seek_index.index_of(manifest)
    assert index is not None and index.encrypted
    stream = b"".join(age.decrypt([encrypted.file.read_bytes()], age.parse_identities(encrypted.keys[1].identity, "t")))
    assert seek_index.check_cover(index.members, len(stream), len(gzip.decompress(stream))) is None
    # A reader of some members (the parallel restore's) decrypts from the start and cuts them out.
    wanted = index.members[1:3]
    assert len(wanted) == 2
    source = Source(encrypted.file.name, lambda: iter([encrypted.file.read_bytes()]), None)
    identities = age.parse_identities(encrypted.keys[0].identity, "t")
    got = b"".join(seekable.open_members(source, wanted, index, identities))
    assert got == b"".join(gzip.decompress(stream[m.offset : m.offset + m.length]) for m in wanted)
    target = make_db()
    args = ["restore", encrypted.log_id, "--target", target, "--table", "public.invoices", "--json"]
    proc = encrypted.cli([*args, "--identity", str(encrypted.keys[0].file)])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["indexed"] is False
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM invoices").fetchone()[0] == 20000
        assert tables(target) == 1


# --- restore and verify with the identity ----------------------------------------------------


@needs_age
def test_the_varied_database_round_trips_through_the_tool_and_through_stock_age_identically(
    db_url: str, make_db: DbFactory, tmp_path: Path, keys: list[Key]
) -> None:
    load_variety(db_url)
    root = tmp_path / "store"
    proc = run_cli(["backup", "--json"], db_url, BACKUP_LOCAL_ROOT=str(root), **encrypted_env(*keys))
    assert proc.returncode == 0, proc.stderr
    file = root / json.loads(proc.stdout)["file_id"]

    by_tool = make_db()
    restored = run_cli(
        ["restore", "latest", "--target", by_tool, "--identity", str(keys[0].file)], db_url, BACKUP_LOCAL_ROOT=str(root)
    )
    assert restored.returncode == 0, restored.stderr
    assert "decrypted" in restored.stdout
    # The README's command, with the escrow key: age -d -i key.txt FILE | gunzip | psql
    by_age = make_db()
    psql(by_age, gzip.decompress(age_decrypt(file, keys[1])))
    for target in (by_tool, by_age):
        assert_databases_equal(db_url, target, pgbin.tool("pg_dump"), ignore_data=OURS)


@needs_age
def test_a_file_encrypted_by_stock_age_verifies_and_restores_with_the_tool(
    migrated_url: str, make_db: DbFactory, tmp_path: Path, keys: list[Key]
) -> None:
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g")
    root = tmp_path / "store"
    proc = run_cli(["backup", "--json"], migrated_url, BACKUP_LOCAL_ROOT=str(root))
    assert proc.returncode == 0, proc.stderr
    plain = root / json.loads(proc.stdout)["file_id"]
    sealed = tmp_path / (plain.name + ".age")
    subprocess.run([str(AGE), "-r", keys[0].recipient, "-o", str(sealed), str(plain)], check=True)
    checked = run_cli(["verify", str(sealed), "--identity", str(keys[0].file)], None)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ok   decrypt" in checked.stdout and "ok   complete" in checked.stdout
    target = make_db()
    restored = run_cli(["restore", str(sealed), "--target", target, "--identity", str(keys[0].file)], None)
    assert restored.returncode == 0, restored.stderr
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 5000


def test_verify_with_the_identity_checks_contents_size_and_md5_and_a_restore_test(encrypted: Encrypted) -> None:
    proc = encrypted.cli(["verify", "latest", "--restore-test", "--json", "--identity", str(encrypted.keys[1].file)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    for name in ("age", "decrypt", "gzip", "complete", "size", "md5", "sql_bytes", "restore", "restored md5"):
        assert checks[name]["ok"] and not checks[name]["skipped"], (name, checks)


def test_the_identity_can_come_from_the_environment_as_a_file_or_as_the_key_text(
    encrypted: Encrypted, make_db: DbFactory
) -> None:
    key = encrypted.keys[0]
    for value in (str(key.file), key.identity):
        target = make_db()
        proc = encrypted.cli(["restore", encrypted.log_id, "--target", target], BACKUP_AGE_IDENTITY=value)
        assert proc.returncode == 0, proc.stderr
        assert key.identity not in proc.stdout + proc.stderr
        with psycopg.connect(target) as conn:
            assert conn.execute("SELECT count(*) FROM invoices").fetchone()[0] == 20000


def test_the_identity_can_come_from_secret_manager(encrypted: Encrypted) -> None:
    gsm = SecretManagerFake()
    try:
        name = gsm.add(f"age-identity-{uuid.uuid4().hex[:8]}", encrypted.keys[0].identity + "\n")
        proc = encrypted.cli(
            ["verify", encrypted.log_id],
            BACKUP_AGE_IDENTITY_SECRET=name,
            SECRET_MANAGER_ENDPOINT=gsm.endpoint,
        )
    finally:
        gsm.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok   decrypt" in proc.stdout


# --- refusals ---------------------------------------------------------------------------------


def test_restore_without_an_identity_is_refused_in_one_line_before_touching_the_target(
    encrypted: Encrypted, make_db: DbFactory
) -> None:
    target = make_db()
    proc = encrypted.cli(["restore", "latest", "--target", target])
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert "encrypted" in line and "--identity" in line and "BACKUP_AGE_IDENTITY" in line
    assert tables(target) == 0


def test_verify_without_an_identity_checks_header_size_and_md5_and_says_the_contents_were_not_checked(
    encrypted: Encrypted,
) -> None:
    proc = encrypted.cli(["verify", "latest"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok   age" in proc.stdout and "ok   size" in proc.stdout and "ok   md5" in proc.stdout
    assert "skip contents  NOT checked" in proc.stdout and "contents were NOT checked" in proc.stdout
    # A file whose stored bytes differ from the row is caught without the key too.
    data = bytearray(encrypted.file.read_bytes())
    data[len(data) // 2] ^= 0x01
    encrypted.file.write_bytes(bytes(data))
    bad = encrypted.cli(["verify", "latest"])
    assert bad.returncode == 1 and "FAIL md5" in bad.stdout
    # Asking for a restore test without the key is a usage error, not a pass.
    refused = encrypted.cli(["verify", "latest", "--restore-test"])
    assert refused.returncode == 2 and "--restore-test" in one_line(refused.stderr)


def test_a_wrong_identity_fails_with_no_identity_matches(
    encrypted: Encrypted, make_db: DbFactory, tmp_path: Path
) -> None:
    stranger = x25519.Identity.generate()
    other = tmp_path / "other.txt"
    other.write_text(f"{stranger}\n")
    target = make_db()
    restored = encrypted.cli(["restore", "latest", "--target", target, "--identity", str(other)])
    assert restored.returncode == 1
    assert "no identity matches this backup" in one_line(restored.stderr)
    assert tables(target) == 0
    checked = encrypted.cli(["verify", "latest", "--identity", str(other)])
    assert checked.returncode == 1 and "FAIL decrypt" in checked.stdout
    assert "no identity matches this backup" in checked.stdout
    assert str(stranger) not in restored.stderr + checked.stdout + checked.stderr


@pytest.mark.parametrize("damage", ["flipped byte", "truncated"])
def test_a_damaged_file_fails_verify_and_restore_commits_nothing(
    encrypted: Encrypted, make_db: DbFactory, tmp_path: Path, damage: str
) -> None:
    data = bytearray(encrypted.file.read_bytes())
    assert len(data) > 3 * 65536  # several age pieces: the damage is met mid-stream, after SQL went to psql
    if damage == "flipped byte":
        data[-100] ^= 0x40  # in the last piece: everything before it has already streamed into psql
    else:
        del data[-5000:]
    bad = tmp_path / encrypted.file.name
    bad.write_bytes(bytes(data))
    key = str(encrypted.keys[0].file)
    checked = run_cli(["verify", str(bad), "--identity", key], None)
    assert checked.returncode == 1 and "FAIL decrypt" in checked.stdout, checked.stdout
    assert "damaged or truncated" in checked.stdout
    target = make_db()
    restored = run_cli(["restore", str(bad), "--target", target, "--identity", key], None)
    assert restored.returncode == 1, restored.stderr
    assert "damaged or truncated" in one_line(restored.stderr)
    assert tables(target) == 0  # psql was stopped before its COMMIT


def test_a_bad_identity_file_is_one_line_that_never_shows_its_content(encrypted: Encrypted, tmp_path: Path) -> None:
    leaked = "AGE-SECRET-KEY-1NOTAVALIDKEYBUTSECRETLOOKING"
    bad = tmp_path / "bad.txt"
    bad.write_text(f"# comment\n{leaked}\n")
    for path in (str(bad), str(tmp_path / "missing.txt")):
        proc = encrypted.cli(["verify", "latest", "--identity", path])
        assert proc.returncode == 2
        assert "identity" in one_line(proc.stderr) and leaked not in proc.stderr


# --- configuration and secrets ---------------------------------------------------------------


def test_recipients_are_validated_naming_the_variable_and_never_echo_an_identity(keys: list[Key], db_url: str) -> None:
    settings = Settings.from_env({"DATABASE_URL": db_url, **encrypted_env(*keys)})
    assert settings.age_recipients == (keys[0].recipient, keys[1].recipient)
    assert Settings.from_env({"DATABASE_URL": db_url, "BACKUP_AGE_RECIPIENTS": " \n"}).age_recipients == ()
    with pytest.raises(ConfigError, match=r"BACKUP_AGE_RECIPIENTS: entry 2 .*not an age X25519 recipient"):
        Settings.from_env({"DATABASE_URL": db_url, "BACKUP_AGE_RECIPIENTS": f"{keys[0].recipient} age1nope"})
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"DATABASE_URL": db_url, "BACKUP_AGE_RECIPIENTS": keys[0].identity})
    assert "private key" in str(caught.value) and keys[0].identity not in str(caught.value)
    proc = run_cli(["backup"], db_url, BACKUP_AGE_RECIPIENTS=keys[1].identity)
    assert proc.returncode == 2 and "BACKUP_AGE_RECIPIENTS" in one_line(proc.stderr)
    assert keys[1].identity not in proc.stderr


def test_age_identities_are_redacted_by_shape(keys: list[Key]) -> None:
    out = redact(f"loaded {keys[0].identity} from the environment")
    assert keys[0].identity not in out and MASK in out


def test_an_encrypted_backup_whose_pg_dump_fails_at_the_very_end_leaves_no_file(
    encrypted: Encrypted, tmp_path: Path
) -> None:
    """pg_dump writes everything, then exits 1: the age file's last piece is never written and
    nothing is stored (the row says why)."""
    script = pg_dump_that_fails(tmp_path, after_dumping=True)
    before = sorted(p.name for p in encrypted.root.rglob("*") if p.is_file())
    proc = encrypted.cli(["backup", "--json"], PG_DUMP_PATH=str(script), **encrypted_env(*encrypted.keys))
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["status"] == "failed" and "connection lost" in out["reason"]
    assert sorted(p.name for p in encrypted.root.rglob("*") if p.is_file()) == before


# --- Drive ------------------------------------------------------------------------------------


def test_an_encrypted_backup_on_drive_is_validated_restored_and_verified_by_id(
    migrated_url: str, drive_fake: DriveFake, drive_user: dict[str, Any], make_db: DbFactory, keys: list[Key]
) -> None:
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE readings (id int PRIMARY KEY, a text)")
        conn.execute("INSERT INTO readings SELECT g, md5(g::text) FROM generate_series(1, 30000) g")
    env = {**drive_env(drive_fake, drive_user), **encrypted_env(keys[0])}
    outcome = backup_job(Settings.from_env({"DATABASE_URL": migrated_url, **env})).run("manual")
    assert outcome.status == "success", outcome.reason
    stored = drive_fake.files[outcome.file_id]
    assert stored.name.endswith(".sql.gz.age") and stored.mime == "application/octet-stream"
    assert (outcome.file_size_bytes, outcome.md5) == (stored.size, stored.md5)
    target = make_db()
    key = str(keys[0].file)
    restored = run_cli(["restore", outcome.backup_log_id, "--target", target, "--identity", key], migrated_url, **env)
    assert restored.returncode == 0, restored.stderr
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 30000
    blind = run_cli(["verify", outcome.backup_log_id], migrated_url, **env)
    assert blind.returncode == 0 and "ok   md5" in blind.stdout and "NOT checked" in blind.stdout


# --- the stream itself ------------------------------------------------------------------------


def test_the_encrypting_stream_never_ends_a_file_whose_source_failed(keys: list[Key]) -> None:
    def failing() -> Iterator[bytes]:
        yield os.urandom(200_000)
        raise RuntimeError("pg_dump exited with status 1")

    out: list[bytes] = []
    with pytest.raises(RuntimeError, match="status 1"):
        for chunk in age.encrypt(failing(), [keys[0].recipient]):
            out.append(chunk)
    # What was handed on cannot be decrypted as a whole file: the final piece was never written.
    with pytest.raises(age.AgeError):
        b"".join(age.decrypt([b"".join(out)], age.parse_identities(keys[0].identity, "t")))


def test_closing_the_encrypting_stream_closes_its_source(keys: list[Key]) -> None:
    closed = []

    def endless() -> Iterator[bytes]:
        try:
            while True:
                yield os.urandom(1 << 20)
        finally:
            closed.append(True)

    stream = age.encrypt(endless(), [keys[0].recipient])
    next(stream)
    stream.close()  # type: ignore[attr-defined]
    assert closed == [True]


def test_an_identity_variable_that_is_neither_a_key_nor_a_file_is_refused_without_echoing_it(
    encrypted: Encrypted,
) -> None:
    pasted = "AGE-PLUGIN-YUBIKEY-1QQSECRETLOOKINGVALUE"  # a shape the tool does not read
    proc = encrypted.cli(["verify", "latest"], BACKUP_AGE_IDENTITY=pasted)
    assert proc.returncode == 2 and "BACKUP_AGE_IDENTITY is neither" in one_line(proc.stderr)
    assert pasted not in proc.stderr + proc.stdout
