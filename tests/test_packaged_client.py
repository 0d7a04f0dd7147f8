"""The PostgreSQL client the deployed functions carry (issue 18): pg_dump, pg_dumpall and psql
load every library from the package itself, except glibc and what Python links on the runtime
image (OpenSSL 3, zlib), and nothing needs a glibc newer than Ubuntu 22.04's 2.35 (the Cloud
Functions python312 image). Checked with ldd and objdump on what ``make package`` builds, and by
dumping a real database with an empty environment. The same for verify_backup's source, whose
tarball adds the restore drill's server (issue 16): it starts from the package alone and loads the
extensions a Supabase dump creates (uuid-ossp needs Debian's libossp-uuid16 on the build machine;
without it the server's tests skip, unless DBBACKUP_REQUIRE_SERVER_PACKAGE=1, as in CI)."""

from __future__ import annotations

import os
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from dbbackup.pg.embedded import EmbeddedPostgres
from support.infra import built_source

# What the runtime image is promised to have: glibc's own libraries, libssl3, libcrypto3, zlib.
FROM_THE_IMAGE = {
    "libstdc++.so.6",  # the server's ICU needs C++'s runtime: on every Ubuntu image (apt needs it)
    "libgcc_s.so.1",
    "linux-vdso.so.1",
    "ld-linux-x86-64.so.2",
    "libc.so.6",
    "libm.so.6",
    "libresolv.so.2",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libssl.so.3",
    "libcrypto.so.3",
    "libz.so.1",
}
UBUNTU_2204_GLIBC = (2, 35)
UBUNTU_2204_GLIBCXX = (3, 4, 30)  # its libstdc++6 is GCC 12's


@pytest.fixture(scope="module", params=["client", "server"])
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The PostgreSQL tree as a function unpacks it from the built source: the client of
    function-source, and verify-source's client and server (verify_backup's restore drill)."""
    server = request.param == "server"
    source = built_source(server)
    (tarball,) = (source / "dbbackup" / "_bundled").glob(f"postgresql-*-{request.param}.tar.gz")
    out = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(tarball) as tar:
        tar.extractall(out, filter="data")
    (tree,) = out.iterdir()
    if server:
        os.chmod(out, 0o755)  # as root, the throwaway server runs as another user, who must reach it
        for parent in out.parents:
            if parent == Path(tempfile.gettempdir()):
                break
            os.chmod(parent, os.stat(parent).st_mode | 0o005)
    return tree


def elves(tree: Path) -> list[Path]:
    return [
        p for p in sorted(tree.rglob("*")) if p.is_file() and not p.is_symlink() and p.open("rb").read(4) == b"\x7fELF"
    ]


def objdump(flag: str, path: Path) -> str:
    return subprocess.run(["objdump", flag, str(path)], capture_output=True, text=True, check=True).stdout


def test_the_client_holds_pg_dump_pg_dumpall_and_psql(client: Path) -> None:
    names = {p.name for p in elves(client)}
    assert {"pg_dump", "pg_dumpall", "psql"} <= names
    # The libraries the issue found taken from the system are in the package now.
    assert {"libzstd.so.1", "liblz4.so.1", "libgssapi_krb5.so.2", "libkrb5.so.3"} <= names


def test_every_library_is_bundled_or_from_the_image(client: Path) -> None:
    lib = client / "lib"
    for elf in elves(client):
        dynamic = objdump("-p", elf)
        needed = re.findall(r"^\s*NEEDED\s+(\S+)", dynamic, re.MULTILINE)
        [runpath] = re.findall(r"^\s*RUNPATH\s+(\S+)", dynamic, re.MULTILINE)
        assert runpath == ("$ORIGIN/../lib" if elf.parent.name == "bin" else "$ORIGIN"), elf.name
        for soname in needed:
            assert soname in FROM_THE_IMAGE or (lib / soname).exists(), f"{elf.name} needs {soname}"
        # What the loader actually picks, with nothing in the environment to help it.
        ldd = subprocess.run(["ldd", str(elf)], capture_output=True, text=True, env={}, check=True).stdout
        assert "not found" not in ldd, ldd
        for soname, path in re.findall(r"^\s*(\S+)\s+=>\s+(\S+)", ldd, re.MULTILINE):
            if soname not in FROM_THE_IMAGE:
                assert Path(path).resolve().is_relative_to(client.resolve()), f"{elf.name}: {soname} from {path}"


def test_nothing_needs_a_glibc_newer_than_the_runtime_images(client: Path) -> None:
    assert glibc_of(client / "bin" / "pg_dump")  # the check below reads real versions
    for elf in elves(client):
        versions = {tuple(map(int, v)) for v in re.findall(r"GLIBC_(\d+)\.(\d+)", objdump("-T", elf))}
        # (ICU's data library has no code, hence no versions.)
        assert max(versions, default=(0, 0)) <= UBUNTU_2204_GLIBC, (elf.name, max(versions))
        cxx = {tuple(map(int, v)) for v in re.findall(r"GLIBCXX_(\d+)\.(\d+)\.(\d+)", objdump("-T", elf))}
        assert max(cxx, default=(0, 0, 0)) <= UBUNTU_2204_GLIBCXX, (elf.name, max(cxx))


def glibc_of(elf: Path) -> set[str]:
    return set(re.findall(r"GLIBC_\d+\.\d+", objdump("-T", elf)))


def test_the_packaged_client_dumps_a_database_with_an_empty_environment(client: Path, db_url: str) -> None:
    with_table = subprocess.run(
        [str(client / "bin" / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-d", db_url, "-c", "CREATE TABLE t (x int)"],
        env={},
        capture_output=True,
        text=True,
        check=False,
    )
    assert with_table.returncode == 0, with_table.stderr
    dump = subprocess.run(
        [str(client / "bin" / "pg_dump"), "--no-owner", f"--dbname={db_url}"],
        env={},
        capture_output=True,
        text=True,
        check=False,
    )
    assert dump.returncode == 0, dump.stderr
    assert "CREATE TABLE public.t" in dump.stdout and "-- PostgreSQL database dump complete" in dump.stdout


@pytest.mark.parametrize("client", ["server"], indirect=True)
def test_verify_backups_server_starts_and_loads_extensions_with_an_empty_environment(client: Path) -> None:
    """The drill's throwaway server as verify_backup unpacks it: initdb and postgres find their
    share/ and modules beside themselves, and the extensions a Supabase dump creates load."""
    env_before = dict(os.environ)
    os.environ.clear()  # initdb and pg_ctl inherit this environment: nothing of this machine's may help
    os.environ["PATH"] = "/nonexistent"
    try:
        server = EmbeddedPostgres(bin_dir=client / "bin").start()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    try:
        sql = (
            'CREATE EXTENSION "uuid-ossp"; CREATE EXTENSION pgcrypto; CREATE EXTENSION pg_trgm;'
            " SELECT uuid_generate_v4() IS NOT NULL, digest('x', 'sha256') IS NOT NULL, similarity('ab', 'ab');"
        )
        out = subprocess.run(
            [
                str(client / "bin" / "psql"),
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                server.url("postgres"),
                "-c",
                sql,
            ],
            env={},
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().splitlines()[-1] == "t|t|1"
    finally:
        server.stop()
