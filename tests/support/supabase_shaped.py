"""The Supabase-shaped fixture (tests/fixtures/supabase_shaped.sql) on a real PostgreSQL.

One project role per test (a unique name: roles are cluster-wide) stands in for Supabase's
``postgres``: not a superuser, CREATEROLE, BYPASSRLS. ``project()`` makes a database as a live
project has it (managed schemas and the user's data); ``fresh()`` one as a new project has it
(managed schemas only), the restore target of a disaster recovery. On a server other test
workers share, make, use and close one only inside ``one_at_a_time`` (tests/test_supabase_profile.py
holds it for each whole test).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import psycopg.conninfo

from support.supabase_roles import ensure_api_roles

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "supabase_shaped.sql"
PLATFORM, _, _rest = FIXTURE.read_text().partition("\n-- @@ project")
PROJECT = "\n-- @@ project" + _rest


def with_params(url: str, **params: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info.update(params)
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})


@contextlib.contextmanager
def one_at_a_time(admin_url: str) -> Iterator[None]:
    """Supabase's shape grants on server-wide parameters (session_replication_role, work_mem) and
    its restores replay those grants; every GRANT or REVOKE rewrites the parameter's one row, so
    two test workers doing so at once on one server fail with "tuple concurrently updated" (seen
    in CI's pass on the machine's PostgreSQL). They take turns, by a file lock per server."""
    info = psycopg.conninfo.conninfo_to_dict(admin_url)
    key = hashlib.sha256(f"{info.get('host')}:{info.get('port')}".encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"dbbackup-supabase-shaped-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@dataclass
class SupabaseCluster:
    admin_url: str  # a superuser on the server
    role: str = field(default_factory=lambda: f"pgsb_{uuid.uuid4().hex[:10]}")
    password: str = field(default_factory=lambda: f"pw-{uuid.uuid4().hex}")
    databases: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        ensure_api_roles(self.admin_url)
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {self.role} LOGIN NOSUPERUSER CREATEROLE BYPASSRLS PASSWORD '{self.password}'")

    def _database(self, sql: str) -> tuple[str, str]:
        name = f"t_sb_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" OWNER {self.role}')
        self.databases.append(name)
        admin = with_params(self.admin_url, dbname=name)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.replace("{{postgres}}", self.role))  # type: ignore[arg-type]
        return with_params(admin, user=self.role, password=self.password), admin

    def project(self) -> tuple[str, str]:
        """(URL as the project role, superuser URL) of a live project with data."""
        return self._database(PLATFORM + PROJECT)

    def fresh(self) -> tuple[str, str]:
        """(URL as the project role, superuser URL) of a newly created project."""
        return self._database(PLATFORM)

    def let_postgres_own_managed_tables(self) -> None:
        """What Supabase does so that its postgres may manage triggers and policies on the auth
        and storage tables (supabase/postgres migration 20220609081115: ``grant
        supabase_auth_admin, supabase_storage_admin to postgres``). Roles are cluster-wide: call it
        after the backup, in a test whose source no longer matters."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"GRANT supabase_auth_admin, supabase_storage_admin TO {self.role}")

    def close(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in self.databases:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            app = f"{self.role}_app"
            conn.execute(
                f"DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{app}') THEN"
                f" REVOKE ALL ON PARAMETER work_mem FROM {app}; END IF; END $$"
            )
            conn.execute(f"DROP ROLE IF EXISTS {app}, {self.role}_reader")  # the project's custom roles
            conn.execute(f"REVOKE SET ON PARAMETER session_replication_role FROM {self.role}")
            conn.execute(f"DROP ROLE IF EXISTS {self.role}")
