"""What a restore created in its target, so that a failed parallel restore can remove it.

A parallel restore commits as it goes (several sessions cannot share one transaction), so
"all or nothing" is kept by taking the target's user objects before it starts and, on
failure, dropping every object that is new since then: the schemas it created (with all in
them), extensions, then the relations, routines, types and other objects it created in schemas
that were already there. Objects that belong to an extension go with the extension. What could
not be dropped is returned, described, so the caller can say exactly what was left.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from dbbackup.pg import connect as db

# FirstNormalObjectId: every oid below it is the system's own.
FIRST_USER_OID = 16384
# (catalog, extra condition): the kinds of object a plain pg_dump script creates.
_CATALOGS = (
    ("pg_namespace", "nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'"),
    ("pg_extension", "true"),
    ("pg_class", "relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"),
    ("pg_proc", "true"),
    # Array and multirange types come and go with their element or range type.
    ("pg_type", "typtype IN ('b', 'd', 'e', 'r') AND NOT EXISTS (SELECT 1 FROM pg_type a WHERE a.typarray = o.oid)"),
    ("pg_collation", "true"),
    ("pg_operator", "true"),
    ("pg_opfamily", "true"),
    ("pg_ts_config", "true"),
    ("pg_ts_dict", "true"),
    ("pg_conversion", "true"),
    ("pg_foreign_data_wrapper", "true"),
    ("pg_foreign_server", "true"),
    ("pg_event_trigger", "true"),
    ("pg_publication", "true"),
    ("pg_cast", "true"),
    ("pg_language", "true"),
    ("pg_statistic_ext", "true"),
    ("pg_largeobject_metadata", "true"),
)
_SNAPSHOT = " UNION ALL ".join(
    # A large object is identified by pg_largeobject's oid, not its metadata catalog's.
    f"SELECT '{'pg_largeobject' if cat == 'pg_largeobject_metadata' else cat}'::regclass::oid AS classid,"
    f" o.oid AS objid FROM pg_catalog.{cat} o WHERE o.oid >= {FIRST_USER_OID} AND ({cond})"
    f" AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d"
    f" WHERE d.classid = '{cat}'::regclass AND d.objid = o.oid AND d.deptype = 'e')"
    for cat, cond in _CATALOGS
)
# pg_identify_object's type -> the DROP statement's keyword (the others are the type upper-cased).
_DROP_KEYWORD = {
    "composite type": "TYPE",
    "foreign-data wrapper": "FOREIGN DATA WRAPPER",
    "statistics object": "STATISTICS",
}
# Dropped first: the containers, whose CASCADE takes most of the rest with them.
_FIRST = ("event trigger", "publication", "schema", "extension")
_PASSES = 4

Objects = frozenset[tuple[int, int]]


def snapshot(conn: psycopg.Connection) -> Objects:
    """The target's user objects now, as (catalog oid, object oid)."""
    return frozenset((int(c), int(o)) for c, o in conn.execute(_SNAPSHOT).fetchall())


def _identified(conn: psycopg.Connection, new: Objects) -> list[tuple[str, str, int]]:
    """(type, identity, oid) of each object in ``new`` that still exists."""
    if not new:
        return []
    rows = conn.execute(
        "SELECT i.type, i.identity, x.objid FROM unnest(%s::oid[], %s::oid[]) AS x(classid, objid),"
        " LATERAL pg_catalog.pg_identify_object(x.classid, x.objid, 0) i WHERE i.identity IS NOT NULL",
        ([c for c, _ in new], [o for _, o in new]),
    ).fetchall()
    order = {kind: n for n, kind in enumerate(_FIRST)}
    return sorted(((str(t), str(i), int(o)) for t, i, o in rows), key=lambda r: order.get(r[0], len(order)))


def _drop(conn: psycopg.Connection, kind: str, identity: str, oid: int) -> None:
    if kind == "large object":
        conn.execute("SELECT pg_catalog.lo_unlink(%s)", (oid,))
        return
    keyword = _DROP_KEYWORD.get(kind, kind.upper())
    # The identity is the server's own quoted, qualified spelling (pg_identify_object).
    conn.execute(sql.SQL("DROP {} IF EXISTS {} CASCADE").format(sql.SQL(keyword), sql.SQL(identity)))


def drop_created(url: str, before: Objects, secrets: tuple[str, ...] = ()) -> list[str]:
    """Drop what is new since ``before``; returns what is left (``pg_describe_object``'s words)."""
    with db.connect(url, attempts=3, secrets=secrets) as conn, db.sql_errors(secrets):
        for _ in range(_PASSES):
            new = snapshot(conn) - before
            if not new:
                return []
            for kind, identity, oid in _identified(conn, new):
                try:
                    _drop(conn, kind, identity, oid)
                except psycopg.Error:
                    continue  # gone with an earlier CASCADE, or in use: the next pass or the report tells
        left = sorted(snapshot(conn) - before)
        if not left:
            return []
        rows = conn.execute(
            "SELECT pg_catalog.pg_describe_object(c, o, 0) FROM unnest(%s::oid[], %s::oid[]) AS x(c, o)",
            ([c for c, _ in left], [o for _, o in left]),
        ).fetchall()
    return sorted(str(r[0]) for r in rows if r[0])


def stop_sessions(url: str, application_name: str, secrets: tuple[str, ...] = ()) -> None:
    """End the restore's own server sessions (a CREATE INDEX goes on after its client is gone)."""
    with db.connect(url, attempts=3, secrets=secrets) as conn, db.sql_errors(secrets):
        conn.execute(
            "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_catalog.pg_backend_pid() AND datname = current_database()",
            (application_name,),
        )
