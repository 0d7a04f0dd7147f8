"""The app's own objects on tables of Supabase's managed schemas (auth, storage, realtime, ...):
the catalog question a supabase-profile backup asks, and the guarded statements that re-create
them in a fresh project (README: Supabase; docs/supabase.md).

The structure of the managed schemas is never dumped (the new project has it), so what the app
attached to those tables would be lost: a trigger on ``auth.users`` calling
``public.handle_new_user()``, triggers and RLS policies on ``storage.objects``, the grants the app
made. Platform-made objects are left out by owner and function schema: a trigger counts as the
app's when its function lives outside the managed schemas or is owned by the dumping role; a
grant when the dumping role made it (the grantor). Policies have no owner: all of them are
carried, and each is created only when the target has none of that name on the table.

Every statement runs in its own ``DO`` block: an object the target already has is left alone
(a NOTICE says so), and a statement the restoring role may not run stops the restore (nothing
committed) with the statement and the reason, unless the restore runs with
``dbbackup.skip_managed_errors = on`` (``restore --skip-managed-errors``), when it is printed as
skipped and the restore goes on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

SKIP_SETTING = "dbbackup.skip_managed_errors"
SECTION_HEADER = b"-- dbbackup: the app's own objects on managed schemas (triggers, RLS, policies, grants, comments)\n"

# The dumping role's oid, asked once per query.
_ME = "(SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)"
_SYSTEM = "n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'"

TRIGGERS_SQL = f"""
SELECT n.nspname, pg_catalog.format('%I.%I', n.nspname, c.relname), t.tgname, pg_catalog.pg_get_triggerdef(t.oid),
       t.tgenabled::text, pn.nspname, p.proowner = {_ME},
       pg_catalog.format('%I.%I(%s)', pn.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)),
       CASE WHEN p.proowner = {_ME} THEN pg_catalog.pg_get_functiondef(p.oid) END,
       pg_catalog.obj_description(t.oid, 'pg_trigger')
FROM pg_catalog.pg_trigger t
JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
WHERE NOT t.tgisinternal AND {_SYSTEM}
ORDER BY 2, 3
"""

POLICIES_SQL = f"""
SELECT n.nspname, pg_catalog.format('%I.%I', n.nspname, c.relname), pol.polname,
       pg_catalog.format('CREATE POLICY %I ON %I.%I AS %s FOR %s TO %s%s%s', pol.polname, n.nspname, c.relname,
           CASE WHEN pol.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
           CASE pol.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                           WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
           (SELECT pg_catalog.string_agg(CASE WHEN r.oid = 0 THEN 'PUBLIC'
                                              ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(r.oid)) END,
                                         ', ' ORDER BY r.n)
            FROM pg_catalog.unnest(pol.polroles) WITH ORDINALITY AS r(oid, n)),
           ' USING (' || pg_catalog.pg_get_expr(pol.polqual, pol.polrelid) || ')',
           ' WITH CHECK (' || pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid) || ')'),
       pg_catalog.obj_description(pol.oid, 'pg_policy')
FROM pg_catalog.pg_policy pol
JOIN pg_catalog.pg_class c ON c.oid = pol.polrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE {_SYSTEM}
ORDER BY 2, 3
"""

RLS_SQL = f"""
SELECT n.nspname, pg_catalog.format('%I.%I', n.nspname, c.relname), c.relrowsecurity, c.relforcerowsecurity
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND (c.relrowsecurity OR c.relforcerowsecurity) AND {_SYSTEM}
ORDER BY 2
"""

# Grants the dumping role made (it is their grantor) on tables, sequences and schemas.
GRANTS_SQL = f"""
SELECT n.nspname, CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
       pg_catalog.format('%I.%I', n.nspname, c.relname), a.privilege_type, a.grantee,
       CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END,
       a.is_grantable
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace,
     LATERAL pg_catalog.aclexplode(c.relacl) a
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND a.grantor = {_ME} AND a.grantee <> a.grantor AND {_SYSTEM}
UNION ALL
SELECT n.nspname, 'SCHEMA', pg_catalog.quote_ident(n.nspname), a.privilege_type, a.grantee,
       CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END,
       a.is_grantable
FROM pg_catalog.pg_namespace n, LATERAL pg_catalog.aclexplode(n.nspacl) a
WHERE a.grantor = {_ME} AND a.grantee <> a.grantor AND {_SYSTEM}
ORDER BY 2, 3, 6, 4
"""


@dataclass(frozen=True)
class Statement:
    """One statement of the section: ``shown`` is what a person reads when it is left out."""

    sql: str
    shown: str
    exists: str = "false"  # an SQL condition: the target already has it, leave it alone
    check: str = ""  # an SQL condition that must hold before running it (else: permission denied)


def _literal(text: str) -> str:
    """An SQL string constant on one line (E'' form: newlines become \\n)."""
    escaped = text.replace("\\", "\\\\").replace("'", "''").replace("\n", "\\n").replace("\r", "\\r")
    return "E'" + escaped.replace("\t", "\\t") + "'"


def _one_line(text: str, limit: int = 240) -> str:
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


_ENABLED = {"D": "DISABLE TRIGGER", "R": "ENABLE REPLICA TRIGGER", "A": "ENABLE ALWAYS TRIGGER"}


def app_objects(conn: psycopg.Connection, managed: Callable[[str], bool]) -> list[Statement]:
    """What the app attached to tables (and schemas) for which ``managed(schema)`` holds, as
    statements in restore order: functions the dumping role owns there that its triggers call,
    triggers, their enabled state and comments, RLS switches, policies and their comments,
    grants. Run it in the backup's snapshot transaction."""
    conn.execute("SELECT pg_catalog.set_config('search_path', '', true)")  # every name qualified
    functions: list[Statement] = []
    triggers: list[Statement] = []
    for schema, table, name, definition, enabled, fschema, fmine, fname, fdef, comment in conn.execute(
        TRIGGERS_SQL
    ).fetchall():
        if not managed(schema) or (managed(fschema) and not fmine):
            continue  # the platform's own: its function lives in a managed schema, made by another role
        if managed(fschema) and fdef and fname not in {s.shown for s in functions}:
            functions.append(
                Statement(str(fdef), str(fname), f"pg_catalog.to_regprocedure({_literal(str(fname))}) IS NOT NULL")
            )
        trigger = (
            f"(SELECT oid FROM pg_catalog.pg_trigger WHERE tgrelid = pg_catalog.to_regclass({_literal(table)})"
            f" AND tgname = {_literal(name)})"
        )
        triggers.append(Statement(str(definition), _one_line(str(definition)), f"{trigger} IS NOT NULL"))
        if enabled in _ENABLED:
            sql = f"ALTER TABLE {table} {_ENABLED[enabled]} {_ident(name)}"
            triggers.append(
                Statement(
                    sql,
                    sql,
                    f"(SELECT tgenabled::text FROM pg_catalog.pg_trigger WHERE oid = {trigger}) = {_literal(enabled)}",
                )
            )
        if comment is not None:
            sql = f"COMMENT ON TRIGGER {_ident(name)} ON {table} IS {_literal(str(comment))}"
            exists = (
                f"pg_catalog.obj_description({trigger}, 'pg_trigger') IS NOT DISTINCT FROM {_literal(str(comment))}"
            )
            triggers.append(Statement(sql, _one_line(sql), exists))
    rls: list[Statement] = []
    for schema, table, enabled, forced in conn.execute(RLS_SQL).fetchall():
        if not managed(schema):
            continue
        for on, column, words in ((enabled, "relrowsecurity", "ENABLE"), (forced, "relforcerowsecurity", "FORCE")):
            if on:
                sql = f"ALTER TABLE {table} {words} ROW LEVEL SECURITY"
                exists = (
                    f"(SELECT {column} FROM pg_catalog.pg_class WHERE oid = pg_catalog.to_regclass({_literal(table)}))"
                )
                rls.append(Statement(sql, sql, exists))
    policies: list[Statement] = []
    for schema, table, name, definition, comment in conn.execute(POLICIES_SQL).fetchall():
        if not managed(schema):
            continue
        policy = (
            f"(SELECT oid FROM pg_catalog.pg_policy WHERE polrelid = pg_catalog.to_regclass({_literal(table)})"
            f" AND polname = {_literal(name)})"
        )
        policies.append(Statement(str(definition), _one_line(str(definition)), f"{policy} IS NOT NULL"))
        if comment is not None:
            sql = f"COMMENT ON POLICY {_ident(name)} ON {table} IS {_literal(str(comment))}"
            said = _literal(str(comment))
            exists = f"pg_catalog.obj_description({policy}, 'pg_policy') IS NOT DISTINCT FROM {said}"
            policies.append(Statement(sql, _one_line(sql), exists))
    grants: list[Statement] = []
    for schema, kind, target, privilege, grantee_oid, grantee, grantable in conn.execute(GRANTS_SQL).fetchall():
        if not managed(schema):
            continue
        sql = f"GRANT {privilege} ON {kind} {target} TO {grantee}" + (" WITH GRANT OPTION" if grantable else "")
        acl = (
            f"(SELECT nspacl FROM pg_catalog.pg_namespace WHERE nspname = {_literal(str(schema))})"
            if kind == "SCHEMA"
            else f"(SELECT relacl FROM pg_catalog.pg_class WHERE oid = pg_catalog.to_regclass({_literal(target)}))"
        )
        role = (
            "0"
            if int(grantee_oid) == 0
            else f"(SELECT oid FROM pg_catalog.pg_roles WHERE rolname = {_literal(_unquote(grantee))})"
        )
        exists = (
            f"EXISTS (SELECT FROM pg_catalog.aclexplode({acl}) a WHERE a.grantee = {role}"
            f" AND a.privilege_type = {_literal(str(privilege))}" + (" AND a.is_grantable" if grantable else "") + ")"
        )
        # Without the grant option GRANT only warns ("no privileges were granted"): check first.
        has = {"SCHEMA": "has_schema_privilege", "SEQUENCE": "has_sequence_privilege"}.get(kind, "has_table_privilege")
        check = f"pg_catalog.{has}({_literal(target)}, {_literal(f'{privilege} WITH GRANT OPTION')})"
        grants.append(Statement(sql, sql, exists, check))
    return functions + triggers + rls + policies + grants


def _ident(name: str) -> str:
    return name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else '"' + name.replace('"', '""') + '"'


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


def _block(statement: Statement) -> str:
    sql, shown = _literal(statement.sql), _literal(statement.shown)
    check = (
        f"IF NOT {statement.check} THEN RAISE EXCEPTION 'permission denied: the restoring role lacks the grant option'"
        " USING ERRCODE = 'insufficient_privilege'; END IF; "
        if statement.check
        else ""
    )
    body = (
        f"BEGIN IF {statement.exists} THEN "
        f"RAISE NOTICE 'dbbackup: the target already has it, left as it is: %', {shown}; "
        f"ELSE {check}EXECUTE {sql}; END IF; "
        "EXCEPTION WHEN OTHERS THEN "
        f"IF pg_catalog.current_setting('{SKIP_SETTING}', true) = 'on' THEN "
        f"RAISE WARNING 'dbbackup: skipped (--skip-managed-errors): % (%)', {shown}, SQLERRM; "
        f"ELSE RAISE EXCEPTION 'dbbackup: the restoring role cannot run: % (%)', {shown}, SQLERRM "
        "USING ERRCODE = SQLSTATE; END IF; END"
    )
    tag = "$dbbackup$"
    n = 0
    while tag in body:
        n += 1
        tag = f"$dbbackup{n}$"
    return f"DO {tag} {body} {tag};"


def section(statements: list[Statement]) -> bytes:
    """The SQL of the section (each statement one guarded line), for after the data."""
    lines = [
        "",
        SECTION_HEADER.decode().rstrip("\n"),
        f"-- {len(statements)} statement(s); each left alone when the target has it already",
        "SET client_min_messages = notice;",  # pg_dump's sections set warning; our NOTICEs say what was left
        *(_block(s) for s in statements),
        "",
    ]
    return "\n".join(lines).encode() + b"\n"
