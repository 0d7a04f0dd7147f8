"""`dbbackup migrate`: the spec's backup_logs, the settings rows, and row level security."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from dbbackup.pg.app_settings import SCHEDULE_KEYS
from support.cli import run_cli
from support.db import OwnerDb
from support.paths import FIXTURES
from support.supabase_roles import api_roles_problems, ensure_api_roles

MANAGER = "00000000-0000-0000-0000-00000000000a"
ADMIN = "00000000-0000-0000-0000-00000000000b"
CLERK = "00000000-0000-0000-0000-00000000000c"

SPEC_COLUMNS = {
    "id": ("uuid", "NO", "gen_random_uuid()"),
    "backup_type": ("character varying(20)", "NO", None),
    "status": ("character varying(20)", "NO", None),
    "file_name": ("character varying(255)", "NO", None),
    "file_size_bytes": ("bigint", "YES", None),
    "google_drive_file_id": ("character varying(255)", "YES", None),
    "google_drive_path": ("text", "YES", None),
    "failure_reason": ("text", "YES", None),
    "deleted_at": ("timestamp with time zone", "YES", None),
}


def columns(conn: psycopg.Connection, table: str) -> dict[str, tuple[str, str, str | None]]:
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod),"
        " CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END, pg_get_expr(d.adbin, d.adrelid)"
        " FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        " WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
        (table,),
    ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def test_migrate_creates_the_spec_table_and_is_idempotent(db_url: str) -> None:
    first = run_cli(["migrate"], db_url, check=True)
    assert "applied 001_backup_logs" in first.stdout
    second = run_cli(["migrate"], db_url, check=True)
    assert "applied" not in second.stdout.replace("already applied", "")
    with psycopg.connect(db_url) as conn:
        cols = columns(conn, "public.backup_logs")
        for name, spec in SPEC_COLUMNS.items():
            assert cols[name] == spec, name
        for name in ("started_at", "completed_at", "created_at", "updated_at"):
            assert cols[name][0] == "timestamp with time zone"
        indexes = {
            r[0]: r[1]
            for r in conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'backup_logs'")
        }
        assert any("(status)" in d for d in indexes.values())
        assert any("(backup_type)" in d for d in indexes.values())
        assert any("(started_at DESC)" in d for d in indexes.values())
        assert any("(created_at DESC)" in d for d in indexes.values())
        checks = " ".join(
            r[0]
            for r in conn.execute(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid = 'public.backup_logs'::regclass AND contype = 'c'"
            )
        )
        assert "automatic" in checks and "in_progress" in checks
        versions = [r[0] for r in conn.execute("SELECT version FROM public.dbbackup_migrations")]
        assert versions == [
            "001_backup_logs",
            "002_invoice_configurations",
            "003_backup_logs_rls",
            "004_backup_logs_size_warning",
            "005_manual_rate_limit",
            "006_protect_settings",
            "007_backup_logs_schedule_time",
            "008_backup_logs_storage_backend",
            "009_backup_logs_manifest_verify",
            "011_backup_copies",
            "012_restore_logs",
            "013_schedule_settings",
        ]
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO backup_logs (backup_type, status, file_name) VALUES ('weekly', 'success', 'x')")


def test_updated_at_is_maintained_by_a_trigger(migrated_url: str) -> None:
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        row_id, before = conn.execute(
            "INSERT INTO backup_logs (backup_type, status, file_name, updated_at)"
            " VALUES ('manual', 'in_progress', 'x', now() - interval '1 day') RETURNING id, updated_at"
        ).fetchone()
        conn.execute("UPDATE backup_logs SET status = 'failed' WHERE id = %s", (row_id,))
        after = conn.execute("SELECT updated_at FROM backup_logs WHERE id = %s", (row_id,)).fetchone()[0]
        assert after > before


def test_settings_rows_are_added_but_never_overwritten(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE invoice_configurations (id serial PRIMARY KEY, config_key varchar(100) UNIQUE,"
            " config_value text, config_type varchar(50), description text)"
        )
        conn.execute(
            "INSERT INTO invoice_configurations (config_key, config_value) VALUES"
            " ('backup_folder_path', 'MyDrive/Custom'), ('invoice_prefix', 'INV')"
        )
    run_cli(["migrate"], db_url, check=True)
    with psycopg.connect(db_url) as conn:
        values = dict(conn.execute("SELECT config_key, config_value FROM invoice_configurations"))
    # The schedule settings of migration 013 start empty: the deployment's own settings apply.
    schedule = {key: None for key in SCHEDULE_KEYS}
    assert values == {
        "backup_folder_path": "MyDrive/Custom",
        "invoice_prefix": "INV",
        "backup_notification_email": "pega2023test@gmail.com",
        "backup_enabled": "true",
        **schedule,
    }


def test_migrate_says_what_it_skipped_on_plain_postgresql(db_url: str) -> None:
    out = run_cli(["migrate"], db_url, check=True).stdout
    assert "skipped: manager read policy" in out


@pytest.fixture
def supabase_db(owner_db: OwnerDb) -> tuple[str, str]:
    """A database shaped like Supabase's, owned by a non-superuser role that runs migrate and
    backup (on Supabase, `postgres` is not a superuser). Returns (owner URL, superuser URL)."""
    ensure_api_roles(owner_db.admin_url)
    with psycopg.connect(owner_db.admin_url, autocommit=True) as conn:
        conn.execute((FIXTURES / "supabase_auth.sql").read_text())
        conn.execute(f"GRANT anon, authenticated, service_role TO {owner_db.role}")
    with psycopg.connect(owner_db.url, autocommit=True) as conn:
        conn.execute((FIXTURES / "supabase_app.sql").read_text())
    return owner_db.url, owner_db.admin_url


def as_user(conn: psycopg.Connection, role: str, sub: str | None) -> None:
    conn.execute(f"SET ROLE {role}")
    claims = json.dumps({"sub": sub, "role": role}) if sub else ""
    conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (claims,))


def assert_refused(
    conn: psycopg.Connection, callers: tuple[tuple[str, str | None], ...], statements: tuple[str, ...]
) -> None:
    """Each statement, as each (role, sub), fails with insufficient privilege."""
    for role, sub in callers:
        for stmt in statements:
            as_user(conn, role, sub)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(stmt)
            conn.execute("RESET ROLE")


def test_rls_managers_read_nobody_signed_in_writes(supabase_db: tuple[str, str]) -> None:
    owner_url, admin_url = supabase_db
    out = run_cli(["migrate"], owner_url, check=True).stdout
    assert "skipped: manager read policy" not in out
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO backup_logs (backup_type, status, file_name) VALUES"
            " ('automatic', 'success', 'a'), ('manual', 'failed', 'b')"
        )
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for sub in (MANAGER, ADMIN):
            as_user(conn, "authenticated", sub)
            assert conn.execute("SELECT count(*) FROM backup_logs").fetchone()[0] == 2
            conn.execute("RESET ROLE")
        as_user(conn, "authenticated", CLERK)
        assert conn.execute("SELECT count(*) FROM backup_logs").fetchone()[0] == 0
        conn.execute("RESET ROLE")
        as_user(conn, "authenticated", str(uuid.uuid4()))  # signed in, no profile
        assert conn.execute("SELECT count(*) FROM backup_logs").fetchone()[0] == 0
        conn.execute("RESET ROLE")
        assert_refused(
            conn,
            (("authenticated", MANAGER), ("authenticated", CLERK), ("anon", None)),
            (
                "INSERT INTO backup_logs (backup_type, status, file_name) VALUES ('manual', 'success', 'x')",
                "UPDATE backup_logs SET status = 'failed'",
                "DELETE FROM backup_logs",
                "TRUNCATE backup_logs",
            ),
        )
        as_user(conn, "anon", None)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM backup_logs")
        conn.execute("RESET ROLE")
        conn.execute("SET ROLE service_role")
        conn.execute("INSERT INTO backup_logs (backup_type, status, file_name) VALUES ('manual', 'success', 'c')")
        assert conn.execute("SELECT count(*) FROM backup_logs").fetchone()[0] == 3
        conn.execute("RESET ROLE")


def test_migrate_and_backup_work_as_a_non_superuser(supabase_db: tuple[str, str], tmp_path) -> None:
    owner_url, _ = supabase_db
    run_cli(["migrate"], owner_url, check=True)
    proc = run_cli(["backup", "--json"], owner_url, BACKUP_LOCAL_ROOT=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "success"
    assert (tmp_path / result["file_id"]).stat().st_size == result["file_size_bytes"]
    password = psycopg.conninfo.conninfo_to_dict(owner_url)["password"]
    assert password not in proc.stdout + proc.stderr


def test_nobody_signed_in_may_change_the_backup_settings_or_the_migration_record(
    supabase_db: tuple[str, str],
) -> None:
    """Supabase's default privileges let anon/authenticated write new tables in public; the
    backup_* settings and dbbackup_migrations must not be writable through the Supabase API."""
    owner_url, admin_url = supabase_db
    run_cli(["migrate"], owner_url, check=True)
    change = "UPDATE invoice_configurations SET config_value = 'false' WHERE config_key = 'backup_enabled'"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        assert_refused(
            conn,
            (("anon", None), ("authenticated", CLERK)),
            (
                change,
                "DELETE FROM invoice_configurations WHERE config_key = 'backup_notification_email'",
                "INSERT INTO invoice_configurations (config_key, config_value) VALUES ('backup_extra', 'x')",
                "TRUNCATE invoice_configurations",
                "INSERT INTO dbbackup_migrations (version) VALUES ('999_forged')",
                "DELETE FROM dbbackup_migrations",
            ),
        )
        # The app's own rows stay the app's business; a manager may change the backup settings.
        as_user(conn, "authenticated", CLERK)
        conn.execute("INSERT INTO invoice_configurations (config_key, config_value) VALUES ('invoice_prefix', 'INV')")
        conn.execute("RESET ROLE")
        as_user(conn, "authenticated", MANAGER)
        assert conn.execute(change).rowcount == 1
        conn.execute("RESET ROLE")
    with psycopg.connect(owner_url) as conn:
        assert [r[0] for r in conn.execute("SELECT version FROM dbbackup_migrations WHERE version LIKE '9%'")] == []


def test_api_roles_left_with_other_attributes_fail_in_one_line_naming_them() -> None:
    """A shared server where service_role exists without BYPASSRLS (another tool made it): the
    RLS tests fail up front saying so, not with "new row violates row-level security policy"."""
    from dbbackup.pg.embedded import EmbeddedPostgres

    with EmbeddedPostgres() as pg:
        with psycopg.connect(pg.url(), autocommit=True) as conn:
            conn.execute("CREATE ROLE service_role NOLOGIN NOBYPASSRLS; CREATE ROLE anon NOLOGIN BYPASSRLS")
        with pytest.raises(pytest.fail.Exception) as failed:
            ensure_api_roles(pg.url())
        message = str(failed.value)
        assert "\n" not in message and "TEST_DATABASE_URL" in message
        assert "service_role is NOSUPERUSER NOBYPASSRLS, Supabase's is NOSUPERUSER BYPASSRLS" in message
        assert "anon is NOSUPERUSER BYPASSRLS" in message
        assert api_roles_problems(pg.url()) == [
            "anon is NOSUPERUSER BYPASSRLS, Supabase's is NOSUPERUSER NOBYPASSRLS",
            "service_role is NOSUPERUSER NOBYPASSRLS, Supabase's is NOSUPERUSER BYPASSRLS",
        ]
        with psycopg.connect(pg.url()) as conn:  # the missing one was made as Supabase has it
            assert conn.execute("SELECT rolbypassrls FROM pg_roles WHERE rolname = 'authenticated'").fetchone() == (
                False,
            )
