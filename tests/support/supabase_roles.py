"""Supabase's API roles (anon, authenticated, service_role) on the test server.

Roles are cluster-wide: on a server the suite did not start (TEST_DATABASE_URL, as CI's second
pass uses the machine's PostgreSQL), they may already exist, made by an earlier run or another
tool, with other attributes. The tests rely on Supabase's: service_role bypasses row level
security, anon and authenticated do not, none is a superuser. Missing roles are created with
those attributes; a role that exists with others fails the test in one line naming what the
server lacks, instead of a row-level-security error far from the cause.
"""

from __future__ import annotations

import psycopg
import pytest

# role: (the attributes it is created with, (rolsuper, rolbypassrls) the tests rely on)
API_ROLES: dict[str, tuple[str, tuple[bool, bool]]] = {
    "anon": ("NOLOGIN NOINHERIT", (False, False)),
    "authenticated": ("NOLOGIN NOINHERIT", (False, False)),
    "service_role": ("NOLOGIN NOINHERIT BYPASSRLS", (False, True)),
}


def _attributes(superuser: bool, bypassrls: bool) -> str:
    return f"{'SUPERUSER' if superuser else 'NOSUPERUSER'} {'BYPASSRLS' if bypassrls else 'NOBYPASSRLS'}"


def api_roles_problems(admin_url: str) -> list[str]:
    """Create the missing API roles; what the existing ones lack (empty when all is well)."""
    problems = []
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for role, (create, wanted) in API_ROLES.items():
            found = conn.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            if found is None:
                try:
                    conn.execute(f"CREATE ROLE {role} {create}")  # type: ignore[arg-type]
                    continue
                # Created meanwhile by another run: two sessions creating one role at once get
                # UniqueViolation (pg_authid's name index), not DuplicateObject.
                except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
                    found = conn.execute(
                        "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", (role,)
                    ).fetchone()
            assert found is not None
            if tuple(found) != wanted:
                problems.append(f"{role} is {_attributes(*found)}, Supabase's is {_attributes(*wanted)}")
    return problems


def ensure_api_roles(admin_url: str) -> None:
    """The API roles exist with Supabase's attributes, or the test fails in one line."""
    if problems := api_roles_problems(admin_url):
        pytest.fail(
            f"the test server's Supabase API roles differ: {'; '.join(problems)}; fix them with ALTER ROLE"
            " or run the tests without TEST_DATABASE_URL (a throwaway server)",
            pytrace=False,
        )
