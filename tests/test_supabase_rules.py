"""The supabase profile's line rules on the shapes pg_dump / pg_dumpall write (quoted or not);
the end-to-end proof is tests/test_supabase_profile.py."""

from __future__ import annotations

import pytest

from dbbackup.dump.profiles import profile_from_env, roles_rules, supabase_rules
from dbbackup.errors import ConfigError


def apply(rules: list, lines: list[bytes]) -> list[bytes]:  # type: ignore[type-arg]
    out = []
    for line in lines:
        for rule in rules:
            line = rule(line)
        out.append(line)
    return out


@pytest.mark.parametrize(
    "line",
    [
        b"CREATE PUBLICATION \"supabase_realtime\" WITH (publish = 'insert, update, delete, truncate');",
        b"CREATE PUBLICATION supabase_realtime;",
        b'ALTER PUBLICATION "supabase_realtime_messages_publication" ADD TABLE ONLY "realtime"."messages";',
        b'ALTER DEFAULT PRIVILEGES FOR ROLE "supabase_admin" IN SCHEMA "public" GRANT ALL ON TABLES TO "anon";',
        b"COMMENT ON EXTENSION pg_graphql IS 'GraphQL support';",
        b"ALTER EVENT TRIGGER pgrst_ddl_watch OWNER TO supabase_admin;",
        b"GRANT USAGE ON SCHEMA auth TO anon;",
        b'REVOKE ALL ON FUNCTION "vault"."create_secret"(text) FROM PUBLIC;',
    ],
)
def test_lines_a_fresh_project_rejects_are_commented_out(line: bytes) -> None:
    assert apply(supabase_rules(), [line])[0].startswith(b"-- " + line)


@pytest.mark.parametrize(
    "line",
    [
        b"CREATE PUBLICATION my_feed FOR TABLE public.todos;",
        b"ALTER PUBLICATION supabase_realtime ADD TABLE ONLY public.todos;",
        b"ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT ALL ON TABLES TO anon;",
        b"GRANT SELECT ON TABLE public.auth_log TO authenticated;",
        b"CREATE TRIGGER t AFTER INSERT ON public.x FOR EACH ROW EXECUTE FUNCTION public.f();",
    ],
)
def test_the_users_own_lines_pass_untouched(line: bytes) -> None:
    assert apply(supabase_rules(), [line]) == [line]


def test_an_event_trigger_is_commented_out_to_its_semicolon_and_no_further() -> None:
    lines = [
        b"CREATE EVENT TRIGGER issue_pg_net_access ON ddl_command_end",
        b"         WHEN TAG IN ('CREATE EXTENSION')",
        b"   EXECUTE FUNCTION extensions.grant_pg_net_access();",
        b"CREATE TABLE public.after (id int);",
    ]
    out = apply(supabase_rules(), lines)
    assert all(ln.startswith(b"-- ") for ln in out[:3]) and out[3] == lines[3]


def test_extension_options_supabase_manages_are_trimmed() -> None:
    line = b'CREATE EXTENSION IF NOT EXISTS "pgsodium" WITH SCHEMA "pgsodium" VERSION \'3.1.8\';'
    assert apply(supabase_rules(), [line]) == [b'CREATE EXTENSION IF NOT EXISTS "pgsodium";']


def test_roles_are_created_only_when_missing_and_reserved_ones_left_alone() -> None:
    out = apply(
        roles_rules("postgres"),
        [
            b"CREATE ROLE anon;",
            b"CREATE ROLE cli_login_postgres;",
            b"CREATE ROLE postgres;",
            b'CREATE ROLE "Report ""Reader""";',
            b'ALTER ROLE "Report ""Reader""" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN'
            b" NOREPLICATION NOBYPASSRLS;",
            b"ALTER ROLE quiet WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;",
            b'GRANT authenticated TO "Report ""Reader""" WITH INHERIT TRUE GRANTED BY supabase_admin;',
            b"GRANT app TO authenticator GRANTED BY postgres;",
            b"-- PostgreSQL database dump",
            b"CREATE ROLE inside_a_function_body;",
        ],
    )
    assert all(ln.startswith(b"-- ") for ln in out[:3])
    assert b'WHERE rolname = \'Report "Reader"\') THEN CREATE ROLE "Report ""Reader""";' in out[3]
    assert b' THEN ALTER ROLE "Report ""Reader""" WITH LOGIN; END IF; EXCEPTION WHEN insufficient_privilege' in out[4]
    assert out[5].startswith(b"-- ")  # nothing but defaults
    assert b"GRANTED BY" not in out[6] and b'GRANT authenticated TO "Report ""Reader""" WITH INHERIT TRUE;' in out[6]
    assert out[7].startswith(b"-- ")  # a reserved member
    assert out[9] == b"CREATE ROLE inside_a_function_body;"  # pg_dump's part is not pg_dumpall's


def test_parameter_privileges_are_guarded_so_a_missing_grant_option_is_a_notice() -> None:
    line = b"GRANT SET ON PARAMETER session_replication_role TO postgres;"
    out = apply(roles_rules("postgres"), [line, b'REVOKE ALL ON PARAMETER work_mem FROM "it\'s";'])
    assert out[0] == (
        b"DO $dbbackup$ BEGIN EXECUTE 'GRANT SET ON PARAMETER session_replication_role TO postgres';"
        b" EXCEPTION WHEN insufficient_privilege THEN RAISE NOTICE"
        b" 'dbbackup: not restored, the restoring role lacks the privilege: % (%)',"
        b" 'GRANT SET ON PARAMETER session_replication_role TO postgres;', SQLERRM; END $dbbackup$;"
    )
    assert b"EXECUTE 'REVOKE ALL ON PARAMETER work_mem FROM \"it''s\"';" in out[1]


@pytest.mark.parametrize("value", ["public", "public.t;drop", "'a'.b"])
def test_exclude_tables_must_be_schema_dot_table(value: str) -> None:
    with pytest.raises(ConfigError, match="BACKUP_EXCLUDE_TABLES"):
        profile_from_env({"BACKUP_EXCLUDE_TABLES": value})


def test_an_unknown_profile_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="BACKUP_PROFILE='supabse'"):
        profile_from_env({"BACKUP_PROFILE": "supabse"})
    assert profile_from_env({}).name == "full"
    assert profile_from_env(
        {"BACKUP_PROFILE": "supabase", "BACKUP_EXCLUDE_TABLES": "auth.x, storage.*"}
    ).exclude_tables == (
        "auth.x",
        "storage.*",
    )
