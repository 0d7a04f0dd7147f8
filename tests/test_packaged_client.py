"""The PostgreSQL client the deployed functions carry (issue 18): pg_dump, pg_dumpall and psql
load every library from the package itself, except glibc and what Python links on the runtime
image (OpenSSL 3, zlib), and nothing needs a glibc newer than Ubuntu 22.04's 2.35 (the Cloud
Functions python312 image). Checked with ldd and objdump on what ``make package`` builds, and by
dumping a real database with an empty environment."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from support.infra import INFRA

sys.path.insert(0, str(INFRA))
import package

# What the runtime image is promised to have: glibc's own libraries, libssl3, libcrypto3, zlib.
FROM_THE_IMAGE = {
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


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The client tree as a function unpacks it from the built source."""
    source = package.build(tmp_path_factory.mktemp("source") / "function-source")
    (tarball,) = (source / "dbbackup" / "_bundled").glob("postgresql-*-client.tar.gz")
    out = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(tarball) as tar:
        tar.extractall(out, filter="data")
    (tree,) = out.iterdir()
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
    for elf in elves(client):
        versions = {tuple(map(int, v)) for v in re.findall(r"GLIBC_(\d+)\.(\d+)", objdump("-T", elf))}
        assert versions and max(versions) <= UBUNTU_2204_GLIBC, (elf.name, max(versions))


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
