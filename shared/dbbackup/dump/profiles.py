"""What a backup holds: the ``full`` and ``supabase`` profiles (BACKUP_PROFILE).

``full`` (default) is one ``pg_dump --no-owner --no-acl`` of everything the role can read.

``supabase`` follows the Supabase CLI's ``db dump`` (pkg/migration/dump.go and
scripts/dump_schema.sh / dump_data.sh, see docs/supabase.md) so the file restores into a fresh
Supabase project, which already has the managed schemas:

1. the custom roles (``pg_dumpall --roles-only --no-role-passwords``, reserved roles commented
   out, the others created only when missing: ``roles_rules``);
2. a block clearing the restoring role's default privileges (``CLEAR_DEFAULT_PRIVILEGES``);
3. the structure of the user's schemas only (``INTERNAL_SCHEMAS`` left out), with the lines a
   fresh project rejects commented out (event triggers, default privileges of supabase_admin,
   the supabase_realtime publication, extension comments: ``supabase_rules``);
4. ``SET session_replication_role = replica;`` so the data load fires no triggers;
5. the data of every schema but ``DATA_EXCLUDED_SCHEMAS`` (auth and storage rows are kept: the
   users and bucket metadata), without the platform's migration tables;
6. the app's own objects on the managed schemas' tables (its triggers on ``auth.users``, policies
   on ``storage.objects``, grants: ``pg.managed``), each guarded, then ``END_MARKER``.

All three runs write into the one rewrite/gzip stream of the backup (one ``.sql.gz``); each is
checked for its exit status, and only the last pg_dump's completion marker may end the file.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dbbackup.dump.rewrite import END_MARKER, Rule
from dbbackup.errors import BackupFailed, ConfigError
from dbbackup.pg.catalog import Relation

PROFILES = ("full", "supabase")
PROFILE_MARKER = b"-- dbbackup profile: supabase"

# supabase/cli pkg/migration/dump.go InternalSchemas: structure never dumped.
INTERNAL_SCHEMAS = (
    "information_schema",
    "pg_*",
    "_analytics",
    "_realtime",
    "_supavisor",
    "auth",
    "etl",
    "extensions",
    "pgbouncer",
    "realtime",
    "storage",
    "supabase_functions",
    "supabase_migrations",
    "cron",
    "dbdev",
    "graphql",
    "graphql_public",
    "net",
    "pgmq",
    "pgsodium",
    "pgsodium_masks",
    "pgtle",
    "repack",
    "tiger",
    "tiger_data",
    "timescaledb_*",
    "_timescaledb_*",
    "topology",
    "vault",
)
# dump.go excludedSchemas: data never dumped (auth, storage, supabase_functions, cron, net and
# pgmq data are kept, as the CLI keeps them "for migrating to new project").
DATA_EXCLUDED_SCHEMAS = (
    "information_schema",
    "pg_*",
    "graphql",
    "graphql_public",
    "pgsodium",
    "pgsodium_masks",
    "pgtle",
    "repack",
    "tiger",
    "tiger_data",
    "timescaledb_*",
    "_timescaledb_*",
    "topology",
    "vault",
    "etl",
    "extensions",
    "pgbouncer",
    "realtime",
    "supabase_migrations",
    "_analytics",
    "_realtime",
    "_supavisor",
)
# dump_data.sh: the platform writes these itself in a new project (duplicate keys otherwise).
MIGRATION_TABLES = ("auth.schema_migrations", "storage.migrations", "supabase_functions.migrations")

_TABLE_PATTERN = re.compile(r"^[A-Za-z0-9_$*?-]+\.[A-Za-z0-9_$*?-]+$")
LOCK_WAIT = "--lock-wait-timeout=300000"  # waiting forever behind a lock would hold the backup lock forever

Section = tuple[str, Sequence[str] | bytes]  # (label, argv of a program) or (label, SQL text to write)


@dataclass(frozen=True)
class DumpProfile:
    name: str = "full"
    exclude_tables: tuple[str, ...] = ()  # BACKUP_EXCLUDE_TABLES, schema.table patterns

    @property
    def supabase(self) -> bool:
        return self.name == "supabase"


def profile_from_env(env: Mapping[str, str]) -> DumpProfile:
    name = env.get("BACKUP_PROFILE", "").strip().lower() or "full"
    if name not in PROFILES:
        raise ConfigError(f"BACKUP_PROFILE={name!r}: expected one of {', '.join(PROFILES)}")
    tables = tuple(t.strip() for t in env.get("BACKUP_EXCLUDE_TABLES", "").split(",") if t.strip())
    for table in tables:
        if not _TABLE_PATTERN.match(table):
            raise ConfigError(
                f"BACKUP_EXCLUDE_TABLES: {table!r} is not schema.table (letters, digits, _ and * wildcards)"
            )
    return DumpProfile(name, tables)


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def dump_sections(
    profile: DumpProfile,
    pg_dump: str,
    conninfo: str,
    snapshot: str | None = None,
    pg_dumpall: str | None = None,
    dbname: str = "postgres",
    managed: bytes = b"",
) -> list[Section]:
    """What the backup stream runs and writes, in order; ``managed`` is the SQL of the app's
    objects on managed schemas (``pg.managed.section``), written after the data."""
    excludes = [f"--exclude-table={t}" for t in profile.exclude_tables]
    common = ["--format=plain", "--no-owner", LOCK_WAIT, *excludes]
    if snapshot:
        common.append(f"--snapshot={snapshot}")  # schema and data from one moment
    if not profile.supabase:
        return [("pg_dump", [pg_dump, *common, "--no-acl", f"--dbname={conninfo}"])]
    schema = [pg_dump, *common, "--schema-only", *(f"--exclude-schema={s}" for s in INTERNAL_SCHEMAS)]
    data = [
        pg_dump,
        *common,
        "--data-only",
        *(f"--exclude-schema={s}" for s in DATA_EXCLUDED_SCHEMAS),
        *(f"--exclude-table={t}" for t in MIGRATION_TABLES),
    ]
    return [
        (
            "header",
            PROFILE_MARKER + b" (custom roles, the structure of the user's schemas, then the data loaded"
            b" with session_replication_role = replica; restore with psql --single-transaction)\n",
        ),
        *(
            [("pg_dumpall (roles)", [pg_dumpall, *ROLES_FLAGS, f"--database={dbname}", f"--dbname={conninfo}"])]
            if pg_dumpall
            else []
        ),
        ("default privileges", CLEAR_DEFAULT_PRIVILEGES),
        ("pg_dump (schema)", [*schema, f"--dbname={conninfo}"]),
        (
            "replica",
            b"\n-- dbbackup: load the data without firing triggers (Supabase's restore guide)\n"
            b"SET session_replication_role = replica;\n\n",
        ),
        ("pg_dump (data)", [*data, f"--dbname={conninfo}"]),
        ("managed schemas", managed + b"\n" + END_MARKER + b"\n"),
    ]


# pg_dump writes each object's privileges as the difference from the owner-only default. The
# restoring role's own default privileges in the target (a fresh project grants everything in
# public to anon, authenticated and service_role) would widen them at CREATE time, so a revoke
# the user made would silently come undone. Clear them first (grants to named roles only; the
# built-in PUBLIC ones stay); the backup's own ALTER DEFAULT PRIVILEGES lines set them again.
CLEAR_DEFAULT_PRIVILEGES = b"""
-- dbbackup: clear the restoring role's default privileges so restored objects get exactly the
-- privileges they had; the ALTER DEFAULT PRIVILEGES lines below set the backed-up ones again.
DO $dbbackup$
DECLARE
    d record;
BEGIN
    FOR d IN
        SELECT a.defaclnamespace AS nsp, a.defaclobjtype AS kind, x.grantee, x.privilege_type AS priv
        FROM pg_catalog.pg_default_acl a, LATERAL pg_catalog.aclexplode(a.defaclacl) x
        WHERE a.defaclrole = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)
          AND x.grantee NOT IN (0, a.defaclrole)
    LOOP
        EXECUTE pg_catalog.format('ALTER DEFAULT PRIVILEGES FOR ROLE %I %s REVOKE %s ON %s FROM %I',
            current_user,
            CASE WHEN d.nsp = 0 THEN '' ELSE 'IN SCHEMA ' || d.nsp::regnamespace::text END,
            d.priv,
            CASE d.kind WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS'
                        WHEN 'T' THEN 'TYPES' ELSE 'SCHEMAS' END,
            pg_catalog.pg_get_userbyid(d.grantee));
    END LOOP;
END
$dbbackup$;

"""


# dump_role.sh: roles without passwords; the reserved ones exist in every project already.
ROLES_FLAGS = ("--roles-only", "--no-role-passwords", "--no-comments")
RESERVED_ROLES = (
    "anon",
    "authenticated",
    "authenticator",
    "cli_login_*",
    "dashboard_user",
    "pgbouncer",
    "postgres",
    "service_role",
    "supabase_*",
    "pgsodium_keyholder",
    "pgsodium_keyiduser",
    "pgsodium_keymaker",
    "pgtle_admin",
)
_IDENT = rb'(?:"(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)'
_ROLE_DEFAULTS = re.compile(
    rb" (?:NOSUPERUSER|NOCREATEDB|NOCREATEROLE|INHERIT|NOLOGIN|NOREPLICATION|NOBYPASSRLS|CONNECTION LIMIT -1)(?=[ ;])"
)
_CREATE_ROLE = re.compile(rb"^CREATE ROLE (?P<role>" + _IDENT + rb");$")
_ALTER_ROLE = re.compile(rb"^ALTER ROLE (?P<role>" + _IDENT + rb") (?P<rest>.*;)$")
_GRANT_ROLE = re.compile(
    rb"^GRANT (?P<granted>"
    + _IDENT
    + rb") TO (?P<role>"
    + _IDENT
    + rb")(?P<rest>.*?)(?: GRANTED BY "
    + _IDENT
    + rb")?;$"
)


def _role_name(ident: bytes) -> str:
    text = ident.decode()
    return text[1:-1].replace('""', '"') if text.startswith('"') else text


def _new_role_flag(role: str) -> str:
    # A session setting per role created by this restore: its attributes, settings and
    # memberships are applied only then, never to a role the target already had.
    return "dbbackup.new_role_" + hashlib.md5(role.encode(), usedforsecurity=False).hexdigest()[:16]


def roles_rules(dumping_role: str) -> list[Rule]:
    """dump_role.sh's filter, made idempotent: reserved roles (and the dumping role, Supabase's
    postgres) are commented out; other roles are created only when missing."""
    reserved = (*RESERVED_ROLES, dumping_role)

    def when_new(role: str, statement: bytes) -> bytes:
        flag = _new_role_flag(role).encode()
        return _guarded(
            b"IF pg_catalog.current_setting('" + flag + b"', true) = 'on' THEN " + statement + b" END IF;", statement
        )

    in_roles = True

    def rewrite(line: bytes) -> bytes:
        nonlocal in_roles
        if not in_roles or line.startswith(b"-- PostgreSQL database dump"):
            in_roles = False  # pg_dump's output begins: its lines are not pg_dumpall's
            return line
        if line.startswith(b"CREATE ROLE "):
            match = _CREATE_ROLE.match(line)
            if not match or b"$dbbackup$" in line:
                return line
            role = _role_name(match["role"])
            if _matches(role, reserved):
                return _comment(line, b"reserved role")
            literal = role.replace("'", "''").encode()
            flag = _new_role_flag(role).encode()
            return _guarded(
                b"IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '"
                + literal
                + b"') THEN "
                + line
                + b" PERFORM pg_catalog.set_config('"
                + flag
                + b"', 'on', false); END IF;",
                line,
            )
        if line.startswith(b"ALTER ROLE "):
            match = _ALTER_ROLE.match(line)
            if not match or b"$dbbackup$" in line:
                return line
            role = _role_name(match["role"])
            if _matches(role, reserved):
                return _comment(line, b"reserved role")
            # Stating an attribute can need more than having it: NOSUPERUSER / NOREPLICATION a
            # superuser (dump_role.sh drops them), NOBYPASSRLS one before PostgreSQL 16, NOCREATEDB
            # the CREATEDB attribute from 16 on. The statement only runs for a role just created,
            # whose attributes are these defaults already, so leaving them out changes nothing.
            statement = _ROLE_DEFAULTS.sub(b"", line)
            if statement.endswith(b" WITH;"):
                return _comment(line, b"only default attributes")
            return when_new(role, statement)
        if _PARAMETER_ACL.match(line) and b"$dbbackup$" not in line:
            # e.g. GRANT SET ON PARAMETER session_replication_role TO postgres: a fresh project's
            # restoring role may lack the grant option; that is worth a NOTICE, not a failed restore.
            return _guarded(b"EXECUTE " + _sql_literal(line.removesuffix(b";")) + b";", line)
        if line.startswith(b"GRANT ") and b" ON " not in line:
            match = _GRANT_ROLE.match(line)
            if not match or b"$dbbackup$" in line:
                return line
            role = _role_name(match["role"])
            if _matches(role, reserved):
                return _comment(line, b"membership of a reserved role")
            # GRANTED BY names a grantor the target may not have: grant as the restoring role.
            return when_new(role, b"GRANT " + match["granted"] + b" TO " + match["role"] + match["rest"] + b";")
        return line

    return [rewrite]


_PARAMETER_ACL = re.compile(rb"^(?:GRANT|REVOKE) .+ ON PARAMETER .+;$")


def _sql_literal(text: bytes) -> bytes:
    return b"'" + text.replace(b"'", b"''") + b"'"


def _guarded(body: bytes, statement: bytes) -> bytes:
    """One line of PL/pgSQL that runs ``body``; a privilege the restoring role lacks (a fresh
    Supabase project's postgres is no superuser) becomes a NOTICE naming the statement."""
    return (
        b"DO $dbbackup$ BEGIN "
        + body
        + b" EXCEPTION WHEN insufficient_privilege THEN RAISE NOTICE"
        + b" 'dbbackup: not restored, the restoring role lacks the privilege: % (%)', "
        + _sql_literal(statement)
        + b", SQLERRM; END $dbbackup$;"
    )


def _comment(line: bytes, why: bytes) -> bytes:
    return b"-- " + line + b"  -- dbbackup: " + why


_Q = rb'"?'  # pg_dump quotes identifiers only where needed
_ADP_SUPABASE_ADMIN = re.compile(rb"^ALTER DEFAULT PRIVILEGES FOR ROLE " + _Q + rb"supabase_admin" + _Q + rb" ")
_REALTIME_PUB = re.compile(rb"^CREATE PUBLICATION " + _Q + rb"supabase_realtime" + _Q + rb"[ ;]")
_REALTIME_OWN_PUB = re.compile(rb"^ALTER PUBLICATION " + _Q + rb"supabase_realtime_")
_TRIM_EXTENSION = re.compile(rb"^(CREATE EXTENSION IF NOT EXISTS " + _Q + rb"(?:pgsodium|pg_tle)" + _Q + rb") .+;$")
_MANAGED_ACL = re.compile(
    rb"^(?:GRANT|REVOKE) .+ ON (?:[A-Z]+ )+"
    + _Q
    + rb"(?:"
    + b"|".join(s.encode() for s in INTERNAL_SCHEMAS if "*" not in s)
    + rb")"
    + _Q
    + rb"[. ;]"
)


def supabase_rules() -> list[Rule]:
    """The Supabase CLI's dump_schema.sh substitutions, as line rules (applied outside COPY data)."""
    in_event_trigger = False

    def rewrite(line: bytes) -> bytes:
        nonlocal in_event_trigger
        if in_event_trigger or line.startswith(b"CREATE EVENT TRIGGER "):
            # CREATE EVENT TRIGGER spans lines (WHEN TAG IN ..., EXECUTE FUNCTION ...;) and needs a
            # superuser; a fresh project already has Supabase's own.
            in_event_trigger = not line.endswith(b";")
            return _comment(line, b"event triggers need a superuser")
        if line.startswith((b"ALTER EVENT TRIGGER ", b"COMMENT ON EVENT TRIGGER ")):
            return _comment(line, b"event triggers need a superuser")
        if _ADP_SUPABASE_ADMIN.match(line):
            return _comment(line, b"supabase_admin is reserved")
        if _REALTIME_PUB.match(line) or _REALTIME_OWN_PUB.match(line):
            return _comment(line, b"every Supabase project has this publication")
        if line.startswith(b"COMMENT ON EXTENSION "):
            return _comment(line, b"only an extension's owner may comment on it")
        if _MANAGED_ACL.match(line):
            return _comment(line, b"privileges on a managed schema")
        trimmed = _TRIM_EXTENSION.match(line)
        if trimmed:
            return trimmed[1] + b";"
        return line

    return [rewrite]


def unreadable(relations: Sequence[Relation], profile: DumpProfile) -> list[tuple[str, str, str, bool]]:
    """Of the tables and sequences the role may not read (``pg.catalog.unreadable_relations``),
    those pg_dump would have to read (lock, copy, read the value of) for this profile:
    (kind, relname, qualified name, schema usable)."""
    found = []
    for kind, schema, name, qualified, usable in relations:
        full_name = f"{schema}.{name}"
        if _matches(full_name, profile.exclude_tables):
            continue
        if profile.supabase:
            in_schema_dump = kind != "S" and not _matches(schema, INTERNAL_SCHEMAS)
            in_data_dump = not _matches(schema, DATA_EXCLUDED_SCHEMAS) and full_name not in MIGRATION_TABLES
            if not (in_schema_dump or in_data_dump):
                continue
        found.append(("sequence" if kind == "S" else "table", name, qualified, usable))
    return found


def check_readable(relations: Sequence[Relation], profile: DumpProfile) -> None:
    """Fail before pg_dump starts, naming every object the role cannot read and what to change:
    never a dump with a silent gap, never a failure naming only the first table."""
    missing = unreadable(relations, profile)
    if not missing:
        return
    kind, name, qualified, usable = missing[0]
    first = (
        f"permission denied for {kind} {name} ({qualified})"
        if usable
        else f"no USAGE on the schema of {kind} {qualified}"
    )
    others = [q for _, _, q, _ in missing[1:6]]
    more = f" and {len(missing) - 6} more" if len(missing) > 6 else ""
    also = f"; also {', '.join(others)}{more}" if others else ""
    fix = "grant the role in DATABASE_URL SELECT on them, or list them in BACKUP_EXCLUDE_TABLES"
    if not profile.supabase and any(_matches(q.split(".", 1)[0].strip('"'), INTERNAL_SCHEMAS) for *_, q, _ in missing):
        fix += ", or set BACKUP_PROFILE=supabase (leaves Supabase's managed schemas out)"
    raise BackupFailed(
        f"the {profile.name} profile must read {len(missing)} object(s) the database role may not: {first}{also}; {fix}"
    )


def is_supabase_dump(head: bytes) -> bool:
    return PROFILE_MARKER in head[:4096]


def in_managed_schema(qualified: str) -> bool:
    return _matches(qualified.split(".", 1)[0].strip('"'), INTERNAL_SCHEMAS)


def managed_schema(schema: str) -> bool:
    """A schema of Supabase's (its structure is the platform's, never dumped)."""
    return _matches(schema, INTERNAL_SCHEMAS)
