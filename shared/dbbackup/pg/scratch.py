"""The restore drill's scratch database (VERIFY_DATABASE_URL): never the backed-up database, and
emptied before each drill."""

from __future__ import annotations

from psycopg import sql

from dbbackup.errors import ConfigError
from dbbackup.pg import connect as db

_IDENTITY = "SELECT current_database(), (SELECT system_identifier FROM pg_catalog.pg_control_system())::text"


def same_database(url: str, database_url: str, secrets: tuple[str, ...] = ()) -> bool:
    """Whether both URLs reach one database: the same cluster (its system identifier) and the
    same database name, however the URLs are spelt (host alias, pooler, port)."""
    with db.sql_errors(secrets):
        with db.connect(url, attempts=1, secrets=secrets) as conn:
            scratch = conn.execute(_IDENTITY).fetchone()
        with db.connect(database_url, attempts=1, secrets=secrets) as conn:
            source = conn.execute(_IDENTITY).fetchone()
    return scratch == source


def refuse_same_database(scratch_url: str, database_url: str, secrets: tuple[str, ...] = ()) -> None:
    """ConfigError when both URLs reach one database (``same_database``)."""
    if same_database(scratch_url, database_url, secrets):
        raise ConfigError(
            "VERIFY_DATABASE_URL is the backed-up database itself: the drill empties its target, so it"
            " needs a separate scratch database"
        )


_OWNED = (
    "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'"
    " AND pg_catalog.pg_has_role(nspowner, 'USAGE') ORDER BY 1"
)


def empty(url: str, secrets: tuple[str, ...] = ()) -> None:
    """Drop every schema the connected role owns (with everything in it, extensions' objects
    included) and create ``public`` again: the restore then starts from an empty database."""
    with db.sql_errors(secrets), db.connect(url, attempts=1, secrets=secrets) as conn:
        for (schema,) in conn.execute(_OWNED).fetchall():
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        conn.execute("CREATE SCHEMA IF NOT EXISTS public")


def clearing_script(url: str, secrets: tuple[str, ...] = ()) -> str:
    """What ``empty`` does, as SQL text to run inside a restore's own transaction (RESTORE_TARGETS'
    ``replace``): if the restore fails, the dropped schemas come back with the rollback."""
    with db.sql_errors(secrets), db.connect(url, attempts=1, secrets=secrets) as conn:
        drops = [
            sql.SQL("DROP SCHEMA {} CASCADE;").format(sql.Identifier(schema)).as_string(conn)
            for (schema,) in conn.execute(_OWNED).fetchall()
        ]
    return " ".join([*drops, "CREATE SCHEMA IF NOT EXISTS public;"])
