"""Backing up a Supabase-shaped database as Supabase's non-superuser ``postgres``, and restoring a
``supabase``-profile backup into a fresh project (docs/supabase.md)."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import psycopg.conninfo
import pytest

from dbbackup.dump.rewrite import DumpRewriter
from dbbackup.errors import BackupFailed
from dbbackup.pg import binaries as pgbin
from support.cli import run_cli
from support.pgcompare import data_fingerprint, normalise_schema_dump
from support.supabase_shaped import SupabaseCluster, one_at_a_time

# The user's data and the auth/storage rows a restored project must have again.
USER_DATA = (
    "auth.users",
    "auth.identities",
    "auth.refresh_tokens",
    "storage.buckets",
    "storage.objects",
    "supabase_functions.hooks",
    "public.profiles",
    "public.todos",
    "sequence:auth.refresh_tokens_id_seq",
    "sequence:public.todos_id_seq",
)


@pytest.fixture(autouse=True)
def one_test_at_a_time(pg_admin_url: str) -> Iterator[None]:
    """Each test, with its fixtures' setup and teardown, grants or revokes on server-wide
    parameters or restores a file that does: on a server shared by several test workers, these
    tests run one at a time (support.supabase_shaped.one_at_a_time). Autouse: set up before, and
    torn down after, the test's other function fixtures."""
    with one_at_a_time(pg_admin_url):
        yield


@pytest.fixture
def cluster(pg_admin_url: str) -> Iterator[SupabaseCluster]:
    made = SupabaseCluster(pg_admin_url)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def project(cluster: SupabaseCluster) -> tuple[str, str]:
    url, admin = cluster.project()
    run_cli(["migrate"], url, check=True)
    return url, admin


def backup(url: str, root: Path, **env: str) -> dict[str, object]:
    proc = run_cli(["backup", "--manual", "--json"], url, BACKUP_LOCAL_ROOT=str(root), **env)
    result = json.loads(proc.stdout)
    result["exit"] = proc.returncode
    return result


def sql_of(root: Path, result: dict[str, object]) -> str:
    return gzip.decompress((root / str(result["file_id"])).read_bytes()).decode()


def project_role(url: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(url)["user"])


def public_schema(url: str) -> str:
    proc = subprocess.run(
        [str(pgbin.tool("pg_dump")), "--schema-only", "--no-owner", "--schema=public", "--dbname", url],
        capture_output=True,
        text=True,
        check=True,
    )
    return normalise_schema_dump(proc.stdout)


def test_the_role_is_not_a_superuser_and_cannot_read_the_platform_tables(project: tuple[str, str]) -> None:
    url, _ = project
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user").fetchone() == (
            False,
            True,
        )
        for table in ("storage.migrations", "vault.secrets", "supabase_functions.migrations"):
            readable = conn.execute(
                "SELECT has_table_privilege(c.oid, 'SELECT') FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname || '.' || c.relname = %s",
                (table,),
            ).fetchone()
            assert readable == (False,), table


def test_full_profile_names_every_unreadable_table_and_the_setting_to_change(
    project: tuple[str, str], tmp_path: Path
) -> None:
    url, _ = project
    result = backup(url, tmp_path)
    assert result["exit"] == 1 and result["status"] == "failed"
    reason = str(result["reason"])
    for table in ("storage.migrations", "vault.secrets", "supabase_functions.migrations", "realtime.messages"):
        assert table in reason
    assert "BACKUP_PROFILE=supabase" in reason and "BACKUP_EXCLUDE_TABLES" in reason
    assert not any(tmp_path.rglob("*.sql.gz*"))


def test_supabase_profile_dumps_user_structure_and_auth_storage_data_in_one_file(
    project: tuple[str, str], tmp_path: Path
) -> None:
    url, _ = project
    result = backup(url, tmp_path, BACKUP_PROFILE="supabase")
    assert result["exit"] == 0, result
    assert len(list(tmp_path.rglob("*.sql.gz"))) == 1
    sql = sql_of(tmp_path, result)
    lines = sql.splitlines()
    assert lines[0].startswith("-- dbbackup profile: supabase")
    # managed schemas' structure is left out, the user's is in
    assert "CREATE TABLE public.todos (" in sql and "CREATE POLICY" in sql
    assert not any(ln.startswith(("CREATE TABLE auth.", "CREATE TABLE storage.", "CREATE SCHEMA")) for ln in lines)
    # auth and storage rows are kept, the platform's migration tables and vault are not
    for table in ("auth.users", "auth.identities", "storage.buckets", "storage.objects", "supabase_functions.hooks"):
        assert any(ln.startswith(f"COPY {table} (") for ln in lines), table
    for table in ("auth.schema_migrations", "storage.migrations", "supabase_functions.migrations", "vault.secrets"):
        assert f"COPY {table} " not in sql
    # what a non-superuser cannot replay in a fresh project is commented out
    live = [ln for ln in lines if not ln.startswith("--")]
    assert not any("EVENT TRIGGER" in ln or "FOR ROLE supabase_admin" in ln for ln in live)
    assert not any(ln.startswith("CREATE PUBLICATION") for ln in live)
    assert "ALTER PUBLICATION supabase_realtime ADD TABLE ONLY public.todos;" in live
    # privileges are kept (a revoke from anon must survive a restore)
    assert any(ln.startswith("GRANT ") and ln.endswith(" ON TABLE public.todos TO anon;") for ln in live)
    assert not any(ln.startswith("GRANT") and "public.profiles TO anon" in ln for ln in live)
    # data after structure, loaded without triggers
    replica = live.index("SET session_replication_role = replica;")
    assert replica > max(i for i, ln in enumerate(live) if ln.startswith("CREATE TABLE"))
    assert replica < min(i for i, ln in enumerate(live) if ln.startswith("COPY "))
    # roles first, without passwords; Supabase's own roles and the dumping role are left to the project
    roles = [ln for ln in live if "CREATE ROLE" in ln or "ALTER ROLE" in ln]
    assert roles and all(ln.startswith("DO $dbbackup$") for ln in roles)
    assert live.index(next(ln for ln in live if "CREATE ROLE" in ln)) < live.index(
        "SET session_replication_role = replica;"
    )
    assert "PASSWORD" not in "".join(roles) and "never-in-a-backup" not in sql
    for reserved in ("anon", "supabase_admin", project_role(url)):
        assert not any(re.search(rf"(CREATE|ALTER) ROLE {reserved}[ ;]", ln) for ln in live), reserved
    assert sql.count("-- PostgreSQL database dump complete") == 2
    # after the data: the app's own objects on the managed tables, never the platform's
    managed = live[live.index(max(ln for ln in live if ln.startswith("COPY "))) :]
    app = [ln for ln in live if ln.startswith("DO $dbbackup$ BEGIN IF") and "EXECUTE E'" in ln]
    for expected in (
        "CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth.users",
        "CREATE TRIGGER on_avatar_uploaded AFTER INSERT ON storage.objects",
        'CREATE POLICY "read own objects" ON storage.objects',
        'CREATE POLICY "upload own avatar" ON storage.objects',
        "ALTER TABLE storage.buckets ENABLE ROW LEVEL SECURITY",
        f"GRANT SELECT ON TABLE storage.objects TO {project_role(url)}_reader",
    ):
        assert any(expected in ln for ln in app) and any(expected in ln for ln in managed), expected
    assert "update_objects_updated_at" not in sql and "update_updated_at_column" not in sql  # the platform's
    assert lines[-1] == "-- dbbackup: end of backup"
    verify = run_cli(["verify", str(tmp_path / str(result["file_id"]))], None)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # A plain throwaway server lacks the auth/storage schemas: the restore test says so, not "FAIL".
    restore_test = run_cli(["verify", str(tmp_path / str(result["file_id"])), "--restore-test"], None)
    assert restore_test.returncode == 0, restore_test.stdout + restore_test.stderr
    assert "skip restore   skipped: a supabase-profile backup restores only into a Supabase project" in (
        restore_test.stdout
    )


def test_a_file_cut_after_the_structure_section_is_not_a_backup(project: tuple[str, str], tmp_path: Path) -> None:
    url, _ = project
    result = backup(url, tmp_path, BACKUP_PROFILE="supabase")
    sql = sql_of(tmp_path, result).encode()
    cut = sql.index(b"SET session_replication_role = replica;")  # the first pg_dump run ended cleanly here
    whole = DumpRewriter([])
    whole.feed(sql)
    whole.finish()
    first_only = DumpRewriter([])
    first_only.feed(sql[:cut] + b"SET session_replication_role = replica;\n")
    with pytest.raises(BackupFailed, match="completion marker"):
        first_only.finish()


def test_a_table_the_profile_keeps_but_the_role_cannot_read_fails_naming_it_until_excluded(
    project: tuple[str, str], tmp_path: Path
) -> None:
    url, admin = project
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("SET ROLE supabase_auth_admin")
        conn.execute("CREATE TABLE auth.sso_secrets (id int PRIMARY KEY, secret text)")
    result = backup(url, tmp_path, BACKUP_PROFILE="supabase")
    assert result["exit"] == 1
    assert "auth.sso_secrets" in str(result["reason"]) and "BACKUP_EXCLUDE_TABLES" in str(result["reason"])
    result = backup(url, tmp_path, BACKUP_PROFILE="supabase", BACKUP_EXCLUDE_TABLES="auth.sso_secrets")
    assert result["exit"] == 0, result
    assert "COPY auth.sso_secrets " not in sql_of(tmp_path, result)


def test_a_supabase_backup_restores_into_a_fresh_project(
    cluster: SupabaseCluster, project: tuple[str, str], tmp_path: Path
) -> None:
    url, admin = project
    result = backup(url, tmp_path, BACKUP_PROFILE="supabase")
    assert result["exit"] == 0, result
    custom = (f"{cluster.role}_app", f"{cluster.role}_reader")
    source_schema = public_schema(url)
    with psycopg.connect(admin, autocommit=True) as conn:  # the old project, and its roles, are gone
        # (DROP OWNED leaves a grant whose grantor is not the owner: revoke it as its grantor)
        conn.execute(f"SET ROLE {cluster.role}; REVOKE ALL ON storage.objects FROM {custom[1]}; RESET ROLE")
        conn.execute(f"DROP OWNED BY {custom[0]}, {custom[1]}")
        conn.execute(f"DROP ROLE {custom[0]}, {custom[1]}")
    target, target_admin = cluster.fresh()
    cluster.let_postgres_own_managed_tables()  # as on Supabase: its postgres may create Storage's policies
    with psycopg.connect(target_admin) as conn:
        migrations_before = conn.execute("SELECT count(*) FROM auth.schema_migrations").fetchone()

    proc = run_cli(["restore", str(tmp_path / str(result["file_id"])), "--target", target], None)
    assert proc.returncode == 0, proc.stderr
    # a privilege the new project's postgres lacks is a NOTICE naming it, not a failed restore
    refused = f"GRANT SET ON PARAMETER work_mem TO {custom[0]};"
    assert f"dbbackup: not restored, the restoring role lacks the privilege: {refused}" in proc.stderr
    assert "the target already has it, left as it is: ALTER TABLE storage.objects ENABLE ROW LEVEL SECURITY" in (
        proc.stderr
    )

    source_data, target_data = data_fingerprint(admin), data_fingerprint(target_admin)
    for key in USER_DATA:
        assert target_data[key] == source_data[key], key
    assert target_data["public.todos"].startswith("rows=25 ")  # and no trigger rewrote them again
    assert public_schema(target) == source_schema
    with psycopg.connect(target_admin) as conn:
        assert conn.execute("SELECT count(*) FROM auth.schema_migrations").fetchone() == migrations_before
        assert conn.execute("SELECT count(*) FROM pg_event_trigger").fetchone() == (1,)  # the project's own
        status = conn.execute(
            "SELECT status FROM public.backup_logs WHERE id = %s", (result["backup_log_id"],)
        ).fetchone()
        assert status == ("success",)
        roles = conn.execute(
            "SELECT rolname, rolcanlogin, rolconnlimit, rolpassword IS NULL FROM pg_authid"
            " WHERE rolname = ANY(%s) ORDER BY rolname",
            (list(custom),),
        ).fetchall()
        assert roles == [(custom[0], True, -1, True), (custom[1], False, 5, True)]  # no password travels
        assert conn.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", custom).fetchone() == (True,)
        assert conn.execute("SELECT has_table_privilege(%s, 'public.todos', 'SELECT')", (custom[1],)).fetchone() == (
            True,
        )
        published = conn.execute(
            "SELECT tablename FROM pg_publication_tables WHERE pubname = 'supabase_realtime'"
        ).fetchall()
        assert published == [("todos",)]
    assert_app_objects_on_managed_tables_behave(admin, target_admin, custom[1])


def triggers_and_policies(url: str) -> tuple[list[tuple[str, str]], list[tuple[str, ...]]]:
    with psycopg.connect(url) as conn:
        triggers = conn.execute(
            "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal"
            " AND tgrelid IN ('auth.users'::regclass, 'storage.objects'::regclass) ORDER BY 1, 2"
        ).fetchall()
        policies = conn.execute(
            "SELECT tablename, policyname, cmd, roles::text, qual, with_check FROM pg_policies"
            " WHERE schemaname IN ('auth', 'storage') ORDER BY 1, 2"
        ).fetchall()
    return triggers, policies


def assert_app_objects_on_managed_tables_behave(source_admin: str, target_admin: str, reader: str) -> None:
    """The restored project behaves like the source for sign-ups and Storage access."""
    triggers, policies = triggers_and_policies(target_admin)
    assert (triggers, policies) == triggers_and_policies(source_admin)  # nothing lost, nothing twice
    assert triggers == [
        ("auth.users", "on_auth_user_created"),
        ("storage.objects", "on_avatar_uploaded"),
        ("storage.objects", "update_objects_updated_at"),  # the project's own, once
    ]
    assert [p[1] for p in policies] == ["read own objects", "upload own avatar"]
    user1 = "00000000-0000-4000-8000-000000000001"
    with psycopg.connect(target_admin, autocommit=True) as conn:
        assert conn.execute(
            "SELECT relrowsecurity FROM pg_class WHERE oid = 'storage.buckets'::regclass"
        ).fetchone() == (True,)
        assert conn.execute(
            "SELECT obj_description(oid, 'pg_policy') FROM pg_policy WHERE polname = 'read own objects'"
        ).fetchone() == ("each user sees only their own files",)
        assert conn.execute("SELECT has_table_privilege(%s, 'storage.objects', 'SELECT')", (reader,)).fetchone() == (
            True,
        )
        # a sign-up gets its profile row (as GoTrue inserts it)
        conn.execute("SET ROLE supabase_auth_admin")
        conn.execute(
            "INSERT INTO auth.users (id, aud, role, email, raw_user_meta_data)"
            " VALUES ('00000000-0000-4000-8000-000000000099', 'authenticated', 'authenticated',"
            " 'new@example.com', '{\"name\": \"Newcomer\"}')"
        )
        conn.execute("RESET ROLE")
        assert conn.execute(
            "SELECT username FROM public.profiles WHERE id = '00000000-0000-4000-8000-000000000099'"
        ).fetchone() == ("Newcomer",)
        # Storage as a signed-in user: only their own objects, uploads only as themselves
        conn.execute("SET ROLE authenticated")
        conn.execute("SELECT set_config('request.jwt.claim.sub', %s, false)", (user1,))
        assert conn.execute("SELECT name FROM storage.objects").fetchall() == [("u1.png",)]
        conn.execute(
            "INSERT INTO storage.objects (bucket_id, name, owner) VALUES ('avatars', 'u1-new.png', %s)", (user1,)
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute(
                "INSERT INTO storage.objects (bucket_id, name, owner)"
                " VALUES ('avatars', 'not-mine.png', '00000000-0000-4000-8000-000000000002')"
            )
        conn.execute("RESET ROLE")
        assert conn.execute("SELECT avatar_path FROM public.profiles WHERE id = %s", (user1,)).fetchone() == (
            "avatars/u1-new.png",
        )


def test_an_app_object_the_restoring_role_may_not_create_stops_the_restore_unless_skipped(
    cluster: SupabaseCluster, project: tuple[str, str], tmp_path: Path
) -> None:
    url, _ = project
    result = backup(url, tmp_path, BACKUP_PROFILE="supabase")
    assert result["exit"] == 0, result
    target, target_admin = cluster.fresh()  # postgres is no owner of Storage's tables here
    file = str(tmp_path / str(result["file_id"]))
    proc = run_cli(["restore", file, "--target", target], None)
    assert proc.returncode == 1
    error = proc.stderr.strip().splitlines()[-1]
    assert "dbbackup: the restoring role cannot run: ALTER TABLE storage.buckets ENABLE ROW LEVEL SECURITY" in error
    assert "must be owner of table buckets" in error and "nothing was committed" in error
    assert "--skip-managed-errors" in error
    with psycopg.connect(target_admin) as conn:
        assert conn.execute("SELECT to_regclass('public.todos')").fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'on_auth_user_created'").fetchone() == (0,)

    proc = run_cli(["restore", file, "--target", target, "--skip-managed-errors"], None)
    assert proc.returncode == 0, proc.stderr
    skipped = [ln for ln in proc.stderr.splitlines() if ln.startswith("dbbackup: skipped (--skip-managed-errors): ")]
    assert [ln.split(": ", 2)[2].split(" (")[0] for ln in skipped] == [
        "ALTER TABLE storage.buckets ENABLE ROW LEVEL SECURITY",
        'CREATE POLICY "read own objects" ON storage.objects AS PERMISSIVE FOR SELECT TO authenticated USING',
        "COMMENT ON POLICY \"read own objects\" ON storage.objects IS E'each user sees only their own files'",
        'CREATE POLICY "upload own avatar" ON storage.objects AS PERMISSIVE FOR INSERT TO authenticated WITH CHECK',
    ]
    assert all("must be owner" in ln or "does not exist" in ln for ln in skipped)
    triggers, policies = triggers_and_policies(target_admin)
    assert ("auth.users", "on_auth_user_created") in triggers and policies == []


def test_a_full_backup_into_a_fresh_project_says_to_use_the_supabase_profile(
    cluster: SupabaseCluster, project: tuple[str, str], tmp_path: Path
) -> None:
    url, _ = project
    result = backup(
        url, tmp_path, BACKUP_EXCLUDE_TABLES="storage.migrations,vault.secrets,supabase_functions.migrations,realtime.*"
    )
    assert result["exit"] == 0, result
    target, _ = cluster.fresh()
    for force in ([], ["--force"]):
        proc = run_cli(["restore", str(tmp_path / str(result["file_id"])), "--target", target, *force], None)
        assert proc.returncode == 2
        assert proc.stderr == (
            "dbbackup: error: this is a full-profile backup; the target is a Supabase project:"
            " restore a backup taken with BACKUP_PROFILE=supabase (README: Supabase)\n"
        )


def test_a_role_that_may_not_disable_triggers_gets_a_hint_and_nothing_is_committed(
    cluster: SupabaseCluster, project: tuple[str, str], tmp_path: Path
) -> None:
    url, _ = project
    result = backup(url, tmp_path, BACKUP_PROFILE="supabase")
    assert result["exit"] == 0, result
    target, target_admin = cluster.fresh()
    with psycopg.connect(cluster.admin_url, autocommit=True) as conn:
        conn.execute(f"REVOKE SET ON PARAMETER session_replication_role FROM {cluster.role}")
    proc = run_cli(["restore", str(tmp_path / str(result["file_id"])), "--target", target], None)
    assert proc.returncode == 1
    assert "session_replication_role" in proc.stderr and "SET ON PARAMETER" in proc.stderr
    with psycopg.connect(target_admin) as conn:
        assert conn.execute("SELECT to_regclass('public.todos')").fetchone() == (None,)  # rolled back
