"""Compare two PostgreSQL databases for backup round-trip tests.

* ``schema_fingerprint`` - a normalised ``pg_dump --schema-only --no-owner --no-acl``.
* ``data_fingerprint``   - a digest per user table (leaf partitions included, partitioned
  parents skipped since their rows live in the partitions), per populated materialized view,
  per sequence (last_value, is_called) and per large object.
* ``assert_databases_equal`` - both of the above, raising AssertionError with a readable diff.

Rows are hashed in a deterministic order that does not depend on btree support of the column
types (json, point, ...) nor on the database collation: each row is rendered as text with its
columns in name order and the rows are sorted by that text under the "C" collation. Columns are
taken in name order (not attnum order) because a dump/restore may legitimately reorder columns
of inheritance children (inherited columns come first after a restore).
"""

from __future__ import annotations

import difflib
import hashlib
import re
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

# Session settings that make every type's text output independent of server/client defaults.
_SESSION_SETTINGS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
    "lc_monetary": "C",
    "search_path": "pg_catalog",
}

_DROP_LINE_RES = [
    re.compile(r"^--"),  # comments (incl. the "Dumped by" header)
    re.compile(r"^\\(un)?restrict\b"),  # pg_dump 18.0 / 17.6 / 16.10 / 15.14 and later
    re.compile(r"^SET transaction_timeout\b"),  # pg_dump >= 17, absent from older dumps
]
# A parenthesised option list that holds a "pg_attver=<number>" entry.
_ATTVER_LIST_RE = re.compile(r"\(([^()]*\bpg_attver=\d+[^()]*)\)")
_ATTVER_OPTION_RE = re.compile(r"pg_attver=\d+")
_EMPTY_SET_STATEMENT_RE = re.compile(r"^ALTER (TABLE|FOREIGN TABLE|INDEX|MATERIALIZED VIEW|VIEW)\b.* SET \(\);$")


def _strip_attver(line: str) -> str | None:
    """Remove pg_attver=N options; None when the statement set nothing else."""
    if "pg_attver=" not in line:
        return line

    def fix(match: re.Match[str]) -> str:
        options = [o.strip() for o in match.group(1).split(",")]
        return "(" + ", ".join(o for o in options if not _ATTVER_OPTION_RE.fullmatch(o)) + ")"

    line = _ATTVER_LIST_RE.sub(fix, line)
    return None if _EMPTY_SET_STATEMENT_RE.match(line) else line


def normalise_schema_dump(text: str) -> str:
    """The normalisation used by ``schema_fingerprint``, exposed for tests of dump files."""
    out = []
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip() or any(r.match(line) for r in _DROP_LINE_RES):
            continue
        stripped = _strip_attver(line)
        if stripped is not None:
            out.append(stripped)
    return "\n".join(out) + "\n"


def schema_fingerprint(url: str, pg_dump: Path) -> str:
    """``pg_dump --schema-only --no-owner --no-acl`` of ``url``, normalised (see module doc)."""
    proc = subprocess.run(
        [str(pg_dump), "--schema-only", "--no-owner", "--no-acl", "--dbname", url],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pg_dump --schema-only failed ({proc.returncode}): {proc.stderr}")
    return normalise_schema_dump(proc.stdout)


def _connect(url: str) -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=True)
    with conn.cursor() as cur:
        for name, value in _SESSION_SETTINGS.items():
            cur.execute("SELECT pg_catalog.set_config(%s, %s, false)", (name, value))
    return conn


_RELATIONS_SQL = """
SELECT c.oid, n.nspname, c.relname, c.relkind::text, c.relispopulated,
       pg_catalog.format('%I.%I', n.nspname, c.relname)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm', 'S')
  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
  AND NOT EXISTS (  -- objects that belong to an extension are recreated by CREATE EXTENSION
      SELECT 1 FROM pg_catalog.pg_depend d
      WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid
        AND d.deptype = 'e')
ORDER BY n.nspname COLLATE "C", c.relname COLLATE "C"
"""


def _columns(conn: psycopg.Connection, oid: int) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = %s AND attnum > 0"
            ' AND NOT attisdropped ORDER BY attname COLLATE "C"',
            (oid,),
        )
    ]


def _rows_select(conn: psycopg.Connection, oid: int, schema: str, name: str) -> sql.Composed:
    """SELECT of one text column: each row with its columns in name order, sorted bytewise."""
    row = sql.SQL("ROW({})::pg_catalog.text").format(
        sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in _columns(conn, oid))
    )
    return sql.SQL('SELECT s.r FROM (SELECT {row} AS r FROM ONLY {rel} t) s ORDER BY s.r COLLATE "C"').format(
        row=row, rel=sql.Identifier(schema, name)
    )


def _digest_rows(conn: psycopg.Connection, select: sql.Composed) -> str:
    """Hash the COPY text output (one escaped line per row) of ``select``."""
    digest = hashlib.sha256()
    rows = 0
    with conn.cursor() as cur, cur.copy(sql.SQL("COPY ({}) TO STDOUT").format(select)) as copy:
        for block in copy:
            digest.update(block)
            rows += bytes(block).count(b"\n")
    return f"rows={rows} sha256={digest.hexdigest()}"


def data_fingerprint(url: str) -> dict[str, str]:
    """Digest of the contents of a database.

    Keys: ``schema.table`` for every user table (quoted like SQL identifiers where needed;
    leaf partitions, unlogged tables and inheritance children included, each ``FROM ONLY``),
    ``matview:schema.name`` for materialized views (``unpopulated`` when never refreshed),
    ``sequence:schema.name`` -> ``last_value=.. is_called=..`` and ``large_object:<oid>``.
    Values are ``rows=N sha256=...`` (tables) or short text.
    """
    result: dict[str, str] = {}
    with _connect(url) as conn:
        for oid, schema, name, kind, populated, qname in conn.execute(_RELATIONS_SQL):
            if kind == "S":
                last_value, is_called = conn.execute(
                    sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(schema, name))
                ).fetchone()
                result[f"sequence:{qname}"] = f"last_value={last_value} is_called={is_called}"
            elif kind == "m":
                result[f"matview:{qname}"] = (
                    _digest_rows(conn, _rows_select(conn, oid, schema, name)) if populated else "unpopulated"
                )
            else:
                result[qname] = _digest_rows(conn, _rows_select(conn, oid, schema, name))
        for (lo_oid,) in conn.execute("SELECT oid FROM pg_catalog.pg_largeobject_metadata ORDER BY oid").fetchall():
            (content,) = conn.execute("SELECT pg_catalog.lo_get(%s)", (lo_oid,)).fetchone()
            result[f"large_object:{lo_oid}"] = f"bytes={len(content)} sha256={hashlib.sha256(content).hexdigest()}"
    return result


def _row_texts(url: str, key: str) -> tuple[list[str], list[str]]:
    """(column names, sorted row texts) of one table or matview key of ``data_fingerprint``."""
    qname = key.removeprefix("matview:")
    with _connect(url) as conn:
        found = conn.execute(
            "SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.oid = pg_catalog.to_regclass(%s)",
            (qname,),
        ).fetchone()
        if found is None:
            return [], []
        rows = [r[0] for r in conn.execute(_rows_select(conn, *found))]
        return _columns(conn, found[0]), rows


_CONTROL_ESCAPES = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _first_difference(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _shorten(text: str, first: int, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters around offset ``first``."""
    start = max(0, min(first - width // 3, len(text) - width)) if len(text) > width else 0
    head = f"[{start} chars]..." if start else ""
    tail = f"...[{len(text) - start - width} chars]" if start + width < len(text) else ""
    return f"{head}{text[start : start + width].translate(_CONTROL_ESCAPES)}{tail}"


def _row_diff(rows_a: list[str], rows_b: list[str], width: int = 240) -> list[str]:
    """Readable diff of two sorted row lists; long rows are cut around their difference."""
    out: list[str] = []
    matcher = difflib.SequenceMatcher(a=rows_a, b=rows_b, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            continue
        old, new = rows_a[a0:a1], rows_b[b0:b1]
        for i in range(max(len(old), len(new))):
            a = old[i] if i < len(old) else None
            b = new[i] if i < len(new) else None
            first = _first_difference(a, b) if a is not None and b is not None else 0
            if a is not None:
                out.append("A " + _shorten(a, first, width))
            if b is not None:
                out.append("B " + _shorten(b, first, width))
    return out


def _clip(lines: list[str], limit: int) -> list[str]:
    return lines if len(lines) <= limit else [*lines[:limit], f"... ({len(lines) - limit} more)"]


def assert_databases_equal(
    url_a: str, url_b: str, pg_dump: Path, *, max_diff_lines: int = 80, ignore_data: frozenset[str] = frozenset()
) -> None:
    """Raise AssertionError describing every schema and data difference between two databases.
    ``ignore_data`` names data keys (e.g. ``public.backup_logs``) whose rows are not compared."""
    problems: list[str] = []

    schema_a = schema_fingerprint(url_a, pg_dump)
    schema_b = schema_fingerprint(url_b, pg_dump)
    if schema_a != schema_b:
        diff = list(
            difflib.unified_diff(schema_a.splitlines(), schema_b.splitlines(), "schema A", "schema B", n=2, lineterm="")
        )
        problems.append("schema differs:\n" + "\n".join(_clip(diff, max_diff_lines)))

    data_a = {k: v for k, v in data_fingerprint(url_a).items() if k not in ignore_data}
    data_b = {k: v for k, v in data_fingerprint(url_b).items() if k not in ignore_data}
    only_a = sorted(data_a.keys() - data_b.keys())
    only_b = sorted(data_b.keys() - data_a.keys())
    if only_a:
        problems.append("only in A: " + ", ".join(only_a))
    if only_b:
        problems.append("only in B: " + ", ".join(only_b))
    for key in sorted(data_a.keys() & data_b.keys()):
        if data_a[key] == data_b[key]:
            continue
        text = f"{key}: A {data_a[key]} != B {data_b[key]}"
        if (
            not key.startswith(("sequence:", "large_object:"))
            and data_a[key] != "unpopulated"
            and data_b[key] != "unpopulated"
        ):
            cols_a, rows_a = _row_texts(url_a, key)
            cols_b, rows_b = _row_texts(url_b, key)
            header = f"columns A: {', '.join(cols_a)}"
            if cols_b != cols_a:
                header += f"\ncolumns B: {', '.join(cols_b)}"
            diff = [*header.split("\n"), *_row_diff(rows_a, rows_b)]
            text += "\n" + "\n".join("    " + ln for ln in _clip(diff, max_diff_lines))
        problems.append(text)

    if problems:
        raise AssertionError(f"databases differ ({len(problems)} problem(s)):\n" + "\n".join(problems))
