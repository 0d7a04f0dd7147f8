"""Connecting the way Supabase's network needs: no pg_dump through the transaction pooler, the
pooler's user form, TLS by default for remote hosts, and errors that name the likely cause
without the password (docs/supabase.md, "Connecting")."""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dbbackup.dump.profiles import DumpProfile
from dbbackup.dump.runner import pg_dump_command
from dbbackup.errors import ConfigError, DatabaseUnavailable
from dbbackup.pg import binaries as pgbin
from dbbackup.pg import connect as db
from dbbackup.pg.conninfo import check_dump_url, explain, session_url, with_tls_default
from dbbackup.pg.embedded import EmbeddedPostgres
from dbbackup.settings import Settings
from support.cli import run_cli
from support.db import with_params
from support.tls import make_tls_cert

REF = "abcdefghijklmnopqrst"
POOLER = "aws-0-eu-central-1.pooler.supabase.com"
SECRET = "s3cret-Pa55word"


def test_a_backup_through_the_transaction_pooler_is_refused_naming_the_session_pooler_url() -> None:
    # 127.0.0.1:6543 listens to nothing: the refusal must come before any connection matters.
    proc = run_cli(["backup"], f"postgresql://postgres.{REF}:{SECRET}@127.0.0.1:6543/postgres")
    assert proc.returncode == 2
    assert "port 6543, Supabase's transaction pooler" in proc.stderr
    assert f"postgresql://postgres.{REF}:[YOUR-PASSWORD]@127.0.0.1:5432/postgres" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr


def test_the_session_url_suggested_for_the_shared_pooler_keeps_host_user_and_tls() -> None:
    params = {"host": POOLER, "port": "6543", "user": f"postgres.{REF}", "password": SECRET, "sslmode": "verify-full"}
    assert (
        session_url(params) == f"postgresql://postgres.{REF}:[YOUR-PASSWORD]@{POOLER}:5432/postgres?sslmode=verify-full"
    )
    with pytest.raises(ConfigError) as caught:
        check_dump_url(f"postgresql://postgres:{SECRET}@{POOLER}:6543/postgres")
    assert f"postgres.<project-ref>:[YOUR-PASSWORD]@{POOLER}:5432/postgres" in str(caught.value)
    assert SECRET not in str(caught.value)
    check_dump_url(f"postgresql://postgres.{REF}:{SECRET}@{POOLER}:5432/postgres")  # session mode is fine


def test_a_restore_through_the_transaction_pooler_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "DB_Backup_2026-01-01_00-00.sql.gz"
    file.write_bytes(b"")
    proc = run_cli(["restore", str(file), "--target", f"postgresql://postgres:{SECRET}@127.0.0.1:6543/postgres"], None)
    assert proc.returncode == 2
    assert "--target uses port 6543" in proc.stderr and SECRET not in proc.stderr


def test_the_shared_pooler_without_the_project_ref_in_the_user_is_a_configuration_error() -> None:
    proc = run_cli(["logs"], f"postgresql://postgres:{SECRET}@{POOLER}:5432/postgres")
    assert proc.returncode == 2
    assert "needs the user postgres.<project-ref>" in proc.stderr
    assert SECRET not in proc.stderr
    Settings.from_env({"DATABASE_URL": f"postgresql://postgres.{REF}:{SECRET}@{POOLER}:5432/postgres"})


def test_tls_is_required_for_remote_hosts_unless_the_url_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGSSLMODE", raising=False)
    assert with_tls_default({"host": f"db.{REF}.supabase.co"})["sslmode"] == "require"
    assert with_tls_default({"host": POOLER, "sslmode": "verify-full"})["sslmode"] == "verify-full"
    for local in ({"host": "127.0.0.1"}, {"host": "localhost"}, {"host": "/var/run/postgresql"}, {}):
        assert "sslmode" not in with_tls_default(local)
    monkeypatch.setenv("PGSSLMODE", "disable")
    assert "sslmode" not in with_tls_default({"host": POOLER})


def _remote_name(url: str, **params: str) -> str:
    """The same server under a remote host name (libpq connects to hostaddr, no DNS involved)."""
    return with_params(url, host=f"db.{REF}.supabase.co", hostaddr="127.0.0.1", **params)


def test_a_remote_server_without_tls_is_refused_by_psycopg_and_pg_dump_alike(
    password_server: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGSSLMODE", raising=False)
    plain = password_server.url()  # this server has no TLS at all
    url = _remote_name(plain)
    with pytest.raises(DatabaseUnavailable) as caught:
        db.connect(url, attempts=1)
    assert "SSL was required" in str(caught.value) and "TLS is required by default" in str(caught.value)

    sections, env = pg_dump_command(url, DumpProfile(), str(pgbin.tool("pg_dump")))
    dump = subprocess.run(sections[0][1], env=env, capture_output=True, text=True, check=False)  # type: ignore[arg-type]
    assert dump.returncode != 0 and "SSL was required" in dump.stderr

    with db.connect(_remote_name(plain, sslmode="disable"), attempts=1) as conn:  # the URL's choice wins
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with db.connect(plain, attempts=1) as conn:  # a local host keeps libpq's default
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_remote_host_gets_an_encrypted_connection_by_default(
    pg_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGSSLMODE", raising=False)
    with psycopg.connect(pg_admin_url) as conn:
        if conn.execute("SHOW ssl").fetchone() != ("on",):
            pytest.skip("this server has TLS off")
    url = psycopg.conninfo.make_conninfo(
        **{k: v for k, v in psycopg.conninfo.conninfo_to_dict(_remote_name(pg_admin_url)).items() if k != "sslmode"}
    )
    with db.connect(url, attempts=1) as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)


def test_verify_full_with_a_ca_file_is_passed_through_and_a_wrong_ca_is_explained(
    pg_admin_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(pg_admin_url) as conn:
        cert = (
            Path(conn.execute("SHOW data_directory").fetchone()[0]) / conn.execute("SHOW ssl_cert_file").fetchone()[0]
        )
        ssl_on = conn.execute("SHOW ssl").fetchone() == ("on",)
    if not ssl_on or not Path(cert).is_file():
        pytest.skip("this server has no readable TLS certificate")
    url = with_params(pg_admin_url, host="127.0.0.1", sslmode="verify-full", sslrootcert=cert)
    try:
        conn = db.connect(url, attempts=1)
    except DatabaseUnavailable as exc:
        if "does not match host name" in str(exc):
            pytest.skip("the server certificate is not issued for 127.0.0.1")
        raise
    with conn:
        assert conn.info.get_parameters() is not None
    sections, _ = pg_dump_command(url, DumpProfile(), "pg_dump")
    assert "sslmode=verify-full" in " ".join(sections[0][1]) and "sslrootcert=" in " ".join(sections[0][1])  # type: ignore[arg-type]
    other_ca, _ = make_tls_cert(tmp_path)
    with pytest.raises(DatabaseUnavailable) as caught:
        db.connect(with_params(url, sslrootcert=str(other_ca)), attempts=1)
    assert "certificate" in str(caught.value) and "sslrootcert=" in str(caught.value)


def test_a_wrong_password_is_named_without_the_password(password_server: EmbeddedPostgres) -> None:
    role = f"sbpw_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(password_server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'right-{SECRET}'")
    try:
        url = with_params(password_server.url(), user=role, password=SECRET)
        with pytest.raises(DatabaseUnavailable) as caught:
            db.connect(url, attempts=1, secrets=(SECRET,))
        message = str(caught.value)
        assert "password authentication failed" in message and "the password is wrong" in message
        assert SECRET not in message
    finally:
        with psycopg.connect(password_server.url(), autocommit=True) as conn:
            conn.execute(f"DROP ROLE {role}")


@pytest.fixture
def supavisor_like() -> Iterator[int]:
    """A server speaking the PostgreSQL protocol the way Supabase's pooler answers a user without
    the project ref: it refuses TLS, reads the startup message and sends FATAL XX000."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            with sock:
                while True:
                    (length,) = struct.unpack("!I", sock.recv(4))
                    body = sock.recv(length - 4)
                    if body[:4] in (struct.pack("!I", 80877103), struct.pack("!I", 80877104)):
                        sock.sendall(b"N")  # SSLRequest / GSSENCRequest: not here
                        continue
                    break
                fields = b"SFATAL\0VFATAL\0CXX000\0MTenant or user not found\0\0"
                sock.sendall(b"E" + struct.pack("!I", len(fields) + 4) + fields)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    listener.close()


def test_the_poolers_unknown_tenant_error_names_the_user_form(supavisor_like: int) -> None:
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:{supavisor_like}/postgres"
    with pytest.raises(DatabaseUnavailable) as caught:
        db.connect(url, attempts=3, secrets=(SECRET,), sleep=lambda s: pytest.fail("a permanent error is not retried"))
    assert "Tenant or user not found" in str(caught.value)
    assert "postgres.<project-ref>" in str(caught.value) and SECRET not in str(caught.value)


# libpq's messages when the direct host's IPv6 address cannot be reached, as Supabase's
# troubleshooting page quotes them (supabase discussion #20951).
IPV6_ERRORS = (
    f'connection to server at "db.{REF}.supabase.co" (2001:db8:3333:4444:5555:6666:7777:8888), port 5432 failed:'
    " Network is unreachable",
    f'could not translate host name "db.{REF}.supabase.co" to address: nodename nor servname provided, or not known',
    "(2001:db8:3333:4444:5555:6666:7777:8888), port 5432 failed: could not create socket: Address family not"
    " supported by protocol",
)


@pytest.mark.parametrize("message", IPV6_ERRORS)
def test_an_unreachable_direct_host_points_to_the_session_pooler(message: str) -> None:
    hint = explain(message, f"postgresql://postgres:{SECRET}@db.{REF}.supabase.co:5432/postgres")
    assert "IPv6" in hint and "Session pooler" in hint and f"postgres.{REF}" in hint
    assert explain(message, "postgresql://postgres@db.example.com/postgres") == ""  # not Supabase: no guess


def test_a_real_unreachable_ipv6_address_gets_the_hint() -> None:
    params = {"host": f"db.{REF}.supabase.co", "hostaddr": "2001:db8::1", "user": "postgres", "dbname": "postgres"}
    try:
        psycopg.connect(**params, connect_timeout=2, sslmode="disable").close()  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        message = str(exc)
    else:
        pytest.fail("2001:db8::/32 is documentation space and must not answer")
    if not any(s in message.lower() for s in ("unreachable", "address family", "no route", "cannot assign")):
        pytest.skip(f"this network does not fail fast for IPv6: {message}")
    assert "Session pooler" in explain(message, params)


def test_sslrootcert_system_keeps_libpqs_verify_full_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGSSLMODE", raising=False)
    assert "sslmode" not in with_tls_default({"host": POOLER, "sslrootcert": "system"})
