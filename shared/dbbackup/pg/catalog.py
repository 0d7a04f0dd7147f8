"""Questions to the PostgreSQL catalog (and whole-table reads) that the dump, the restore, verify
and the demo ask of a database; the SQL lives here with the rest of ours."""

from __future__ import annotations

import psycopg
import psycopg.conninfo
from psycopg import sql

from dbbackup.errors import DatabaseUnavailable
from dbbackup.pg import connect as db

# (relkind, schema, name, qualified name, schema usable)
Relation = tuple[str, str, str, str, bool]

UNREADABLE_SQL = """
SELECT c.relkind::text, n.nspname, c.relname,
       pg_catalog.format('%I.%I', n.nspname, c.relname), pg_catalog.has_schema_privilege(n.oid, 'USAGE')
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'S')
  AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
  AND NOT EXISTS (  -- created by CREATE EXTENSION and not dumped, unless a configuration table
      SELECT 1 FROM pg_catalog.pg_depend d
      WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid AND d.deptype = 'e'
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e
                        WHERE e.oid = d.refobjid AND c.oid = ANY (e.extconfig)))
  AND NOT (pg_catalog.has_schema_privilege(n.oid, 'USAGE')
           AND CASE WHEN c.relkind = 'S' THEN pg_catalog.has_sequence_privilege(c.oid, 'SELECT')
                    ELSE pg_catalog.has_table_privilege(c.oid, 'SELECT') END)
ORDER BY 2, 3
"""


def unreadable_relations(conn: psycopg.Connection) -> list[Relation]:
    """Tables and sequences the connected role may not read (extension members excluded)."""
    return [(str(k), str(s), str(n), str(q), bool(u)) for k, s, n, q, u in conn.execute(UNREADABLE_SQL).fetchall()]


def table_sizes(conn: psycopg.Connection) -> dict[str, int]:
    """Bytes on disk per table (``schema.table`` unquoted, as the manifest names them): an
    estimate of how much SQL its data will be."""
    rows = conn.execute(
        "SELECT n.nspname || '.' || c.relname, pg_catalog.pg_table_size(c.oid) FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm')"
        " AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'"
    ).fetchall()
    return {str(name): int(size or 0) for name, size in rows}


def user_tables(url: str, secrets: tuple[str, ...] = ()) -> list[str]:
    """Tables, views and sequences outside the system schemas of the target."""
    with db.connect(url, attempts=1, secrets=secrets) as conn:
        rows = conn.execute(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'"
            " AND n.nspname NOT LIKE 'pg_temp%'"
            " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')"
            " ORDER BY 1"
        ).fetchall()
    return [r[0] for r in rows]


PRESENT_SQL = {
    "relation": "pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', s, n)) IS NOT NULL",
    "type": "pg_catalog.to_regtype(pg_catalog.format('%%I.%%I', s, n)) IS NOT NULL",
    "function": "EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace x"
    " ON x.oid = p.pronamespace WHERE x.nspname = s AND p.proname = n)",
    "schema": "EXISTS (SELECT 1 FROM pg_catalog.pg_namespace x WHERE x.nspname = n)",
    "extension": "EXISTS (SELECT 1 FROM pg_catalog.pg_extension x WHERE x.extname = n)",
    "collation": "EXISTS (SELECT 1 FROM pg_catalog.pg_collation c JOIN pg_catalog.pg_namespace x"
    " ON x.oid = c.collnamespace WHERE x.nspname = s AND c.collname = n)",
}


def present(url: str, kind: str, names: list[tuple[str, str]], secrets: tuple[str, ...] = ()) -> set[tuple[str, str]]:
    """Which of ``names`` ((schema, name), unquoted) exist in the target as a ``kind``: relation,
    type, function (by name), collation, schema or extension (the name; schema ignored)."""
    if not names:
        return set()
    with db.sql_errors(secrets), db.connect(url, attempts=1, secrets=secrets) as conn:
        rows = conn.execute(
            "SELECT s, n FROM unnest(%s::text[], %s::text[]) AS u(s, n) WHERE " + PRESENT_SQL[kind],
            ([s for s, _ in names], [n for _, n in names]),
        ).fetchall()
    return {(str(s), str(n)) for s, n in rows}


def is_supabase_project(url: str, secrets: tuple[str, ...] = ()) -> bool:
    """The target has Supabase's managed schemas: ``auth`` and ``storage`` both, owned by one of
    Supabase's roles (a plain PostgreSQL restored from a full backup has them owned by whoever
    restored it)."""
    with db.connect(url, attempts=1, secrets=secrets) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_catalog.pg_namespace"
            " WHERE nspname IN ('auth', 'storage') AND pg_catalog.pg_get_userbyid(nspowner) LIKE 'supabase\\_%'"
        ).fetchone()
    return row is not None and int(row[0]) == 2


def missing_database(url: str, secrets: tuple[str, ...] = ()) -> str | None:
    """The name of the database ``url`` names when the server says it does not exist; None when
    it does (any other connection failure is raised as it is)."""
    name = str(psycopg.conninfo.conninfo_to_dict(url).get("dbname") or "")
    try:
        db.connect(url, attempts=1, secrets=secrets).close()
    except DatabaseUnavailable as exc:
        if name and f'database "{name}" does not exist' in str(exc):
            return name
        raise
    return None


def create_database(url: str, name: str, secrets: tuple[str, ...] = ()) -> None:
    """CREATE DATABASE ``name`` on the server of ``url``, connecting to its ``postgres`` database
    with the same role (the role needs CREATEDB)."""
    maintenance = psycopg.conninfo.make_conninfo(url, dbname="postgres")
    with db.sql_errors(secrets), db.connect(maintenance, attempts=1, secrets=secrets) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def count_rows(url: str) -> tuple[int, int]:
    """Tables (leaf tables, not partitioned parents) and their exact row count."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r'"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'"
        ).fetchall()
        rows = sum(int(conn.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]) for (t,) in tables)
    return len(tables), rows


def exact_rows(url: str, secrets: tuple[str, ...] = ()) -> dict[str, int]:
    """``schema.table`` (unquoted, as in a manifest) -> its exact row count, ``FROM ONLY`` (a
    table's own rows, as its COPY block holds them, not its partitions' or children's)."""
    with db.sql_errors(secrets), db.connect(url, attempts=1, secrets=secrets) as conn:
        tables = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' ORDER BY 1, 2"
        ).fetchall()
        counts: dict[str, int] = {}
        for schema, name in tables:
            query = sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(sql.Identifier(schema), sql.Identifier(name))
            row = conn.execute(query).fetchone()
            counts[f"{schema}.{name}"] = int(row[0]) if row else 0
    return counts


def table_digests(url: str) -> dict[str, tuple[int, str]]:
    """Row count and an order-independent digest of every user table."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables"
                " WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
            )
        ]
        digests = {}
        for t in tables:
            count, digest = conn.execute(
                f"SELECT count(*), coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text COLLATE \"C\")), '')"
                f" FROM {t} x"
            ).fetchall()[0]
            digests[t] = (int(count), str(digest))
        return digests


def create_databases(url: str, *names: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')  # names of our own (the demo, verify), never input


def run_script(url: str, script: str) -> None:
    """A trusted SQL script of ours (the demo's sample database), in one go."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(script)


def role_names(url: str, secrets: tuple[str, ...] = ()) -> list[str]:
    """The roles of ``url``'s server other than PostgreSQL's own (``pg_*``): what a backup's
    policies and grants may name (Supabase's ``authenticated``, ``service_role``, ...)."""
    with db.connect(url, attempts=1, secrets=secrets) as conn:
        rows = conn.execute("SELECT rolname FROM pg_catalog.pg_roles WHERE rolname !~ '^pg_' ORDER BY 1").fetchall()
    return [str(r[0]) for r in rows]


def create_missing_roles(url: str, names: list[str]) -> list[str]:
    """On a throwaway server of ours: every role of ``names`` it lacks, NOLOGIN and without any
    attribute, so that a restore naming them in policies and grants succeeds. Returns the created."""
    created = []
    with psycopg.connect(url, autocommit=True) as conn:
        existing = {r[0] for r in conn.execute("SELECT rolname FROM pg_catalog.pg_roles").fetchall()}
        for name in names:
            if name not in existing:
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))
                created.append(name)
    return created
