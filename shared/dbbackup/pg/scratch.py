"""The restore drill's scratch database (VERIFY_DATABASE_URL): never the backed-up database, and
emptied before each drill."""

from __future__ import annotations

from psycopg import sql

from dbbackup.errors import ConfigError
from dbbackup.pg import connect as db

_IDENTITY = "SELECT current_database(), (SELECT system_identifier FROM pg_catalog.pg_control_system())::text"


def refuse_same_database(scratch_url: str, database_url: str, secrets: tuple[str, ...] = ()) -> None:
    """ConfigError when both URLs reach one database: the same cluster (its system identifier)
    and the same database name, however the URLs are spelt (host alias, pooler, port)."""
    with db.sql_errors(secrets):
        with db.connect(scratch_url, attempts=1, secrets=secrets) as conn:
            scratch = conn.execute(_IDENTITY).fetchone()
        with db.connect(database_url, attempts=1, secrets=secrets) as conn:
            source = conn.execute(_IDENTITY).fetchone()
    if scratch == source:
        raise ConfigError(
            "VERIFY_DATABASE_URL is the backed-up database itself: the drill empties its target, so it"
            " needs a separate scratch database"
        )


def empty(url: str, secrets: tuple[str, ...] = ()) -> None:
    """Drop every schema the connected role owns (with everything in it, extensions' objects
    included) and create ``public`` again: the restore then starts from an empty database."""
    with db.sql_errors(secrets), db.connect(url, attempts=1, secrets=secrets) as conn:
        schemas = conn.execute(
            "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'"
            " AND pg_catalog.pg_has_role(nspowner, 'USAGE') ORDER BY 1"
        ).fetchall()
        for (schema,) in schemas:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        conn.execute("CREATE SCHEMA IF NOT EXISTS public")
