"""The manifest (rows and bytes of every table, counted while the dump streams), ``dbbackup show``,
the shrink warnings, and ``verify --restore-test`` comparing restored rows with the manifest."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st
from test_roundtrip import load_variety

from dbbackup.dump.rewrite import DumpRewriter, copy_table
from dbbackup.http.endpoints import run_backup
from dbbackup.settings import Settings
from dbbackup.wiring import alerter_for, backup_job
from fakes.sendgrid_fake import FakeSendGrid
from support.cli import run_cli
from support.db import DbFactory

pytest_plugins = ["fakes.fixtures"]  # sendgrid

OPS = "ops@example.com"


def counts_by_sql(url: str) -> dict[str, int]:
    """The truth, asked straightforwardly: count(*) FROM ONLY of every ordinary table."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT n.nspname, c.relname, format('%I.%I', n.nspname, c.relname) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r'"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'"
        ).fetchall()
        return {
            f"{schema}.{name}": conn.execute(f"SELECT count(*) FROM ONLY {quoted}").fetchone()[0]  # type: ignore[index]
            for schema, name, quoted in tables
        }


def manifest_of(url: str, log_id: str) -> dict:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT manifest FROM backup_logs WHERE id = %s", (log_id,)).fetchone()[0]  # type: ignore[index]


def settings_for(url: str, root: Path, **env: str) -> Settings:
    return Settings.from_env({"DATABASE_URL": url, "BACKUP_LOCAL_ROOT": str(root), **env})


# --- counting on the stream ------------------------------------------------------------------


def test_copy_headers_name_their_table_unquoted() -> None:
    assert copy_table(b"COPY public.invoices (id, total) FROM stdin;") == "public.invoices"
    assert copy_table(b'COPY "App Data"."Orders EU" ("Order ID") FROM stdin;') == "App Data.Orders EU"
    assert copy_table(b'COPY "we""ird \'schema\'"."a.b" (x) FROM stdin;') == "we\"ird 'schema'.a.b"
    assert copy_table(b"COPY public.no_columns  FROM stdin;") == "public.no_columns"
    assert copy_table(b"-- COPY public.x (a) FROM stdin;") is None


SAMPLE = (
    b"SET x = 1;\n"
    b"COPY public.a (id, v) FROM stdin;\n1\tone\n2\t" + b"y" * 5000 + b"\n3\t\\\\.\n\\.\n"
    b"COPY public.empty (id) FROM stdin;\n\\.\n"
    b'COPY "S"."T x" (v) FROM stdin;\n' + b"".join(b"%d\n" % i for i in range(300)) + b"\\.\n"
    b"-- PostgreSQL database dump complete\n"
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(SAMPLE)), max_size=40))
def test_counts_do_not_depend_on_where_the_stream_is_cut(cuts: list[int]) -> None:
    rewriter = DumpRewriter([])
    out = b""
    points = sorted(set(cuts))
    for start, end in zip([0, *points], [*points, len(SAMPLE)], strict=True):
        out += rewriter.feed(SAMPLE[start:end])
    out += rewriter.finish()
    assert out == SAMPLE
    a_bytes = len(b"1\tone\n2\t" + b"y" * 5000 + b"\n3\t\\\\.\n")
    assert rewriter.tables == {
        "public.a": [3, a_bytes],
        "public.empty": [0, 0],
        "S.T x": [300, len(b"".join(b"%d\n" % i for i in range(300)))],
    }


def test_the_manifest_equals_count_of_every_table_of_the_varied_database(make_db: DbFactory, tmp_path: Path) -> None:
    url = make_db()
    load_variety(url)
    run_cli(["migrate"], url, check=True)
    outcome = backup_job(settings_for(url, tmp_path)).run("manual")
    assert outcome.status == "success", outcome.reason
    manifest = manifest_of(url, outcome.backup_log_id)
    truth = counts_by_sql(url)
    # The attempt's own copy row is written after the dump's snapshot, which saw none.
    assert manifest["tables"]["public.backup_copies"]["rows"] == 0 and truth["public.backup_copies"] == 1
    truth["public.backup_copies"] = 0
    assert {name: t["rows"] for name, t in manifest["tables"].items()} == truth
    # Partitions, inheritance children, quoted names and empty tables are all there.
    assert "App Data.Orders US low ids" in truth and any(n == 0 for n in truth.values())
    assert outcome.tables == len(truth)
    # bytes: exactly the COPY data lines of each table in the file.
    sql = gzip.decompress((tmp_path / outcome.file_id).read_bytes())
    block = sql.split(b'COPY "App Data"."Orders EU" ', 1)[1].split(b"\n", 1)[1].split(b"\n\\.\n", 1)[0] + b"\n"
    assert manifest["tables"]["App Data.Orders EU"]["bytes"] == len(block)
    # dbbackup show: the row and its manifest.
    shown = run_cli(["show", outcome.backup_log_id, "--json"], url, check=True)
    data = json.loads(shown.stdout)
    assert data["id"] == outcome.backup_log_id and data["status"] == "success"
    assert data["manifest"] == manifest
    text = run_cli(["show", "latest"], url, check=True).stdout
    assert f"manifest: {len(truth)} tables" in text and "App Data.Orders EU" in text
    # verify --restore-test: every table restored with the rows the manifest recorded.
    proc = run_cli(["verify", outcome.backup_log_id, "--restore-test", "--json"], url, BACKUP_LOCAL_ROOT=str(tmp_path))
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, proc.stdout
    assert report["tables"] == {n: {"expected": r, "restored": r} for n, r in sorted(truth.items())}


def test_show_refuses_what_is_not_an_id(migrated_url: str) -> None:
    proc = run_cli(["show", "nonsense"], migrated_url)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    proc = run_cli(["show", "00000000-0000-0000-0000-000000000000"], migrated_url)
    assert proc.returncode == 2 and "no backup_logs row" in proc.stderr


# --- verify catches restored counts that differ ---------------------------------------------------


def test_verify_restore_test_catches_a_copy_block_that_lost_a_row(migrated_url: str, tmp_path: Path) -> None:
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 50) g")
    outcome = backup_job(settings_for(migrated_url, tmp_path)).run("manual")
    path = tmp_path / outcome.file_id
    sql = gzip.decompress(path.read_bytes())
    assert b"\n17\titem 17\n" in sql
    corrupt = gzip.compress(sql.replace(b"\n17\titem 17\n", b"\n", 1))
    path.write_bytes(corrupt)
    # The file is what the row says it is (size, MD5, SQL size): only the contents lost a row.
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE backup_logs SET file_size_bytes = %s, md5_checksum = %s, sql_bytes = %s WHERE id = %s",
            (len(corrupt), hashlib.md5(corrupt).hexdigest(), len(sql) - len(b"17\titem 17\n"), outcome.backup_log_id),
        )
    proc = run_cli(
        ["verify", outcome.backup_log_id, "--restore-test", "--json"], migrated_url, BACKUP_LOCAL_ROOT=str(tmp_path)
    )
    assert proc.returncode == 1, proc.stdout
    report = json.loads(proc.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["restore"]["ok"] and not checks["manifest"]["ok"]
    assert "public.items: expected 50, restored 49" in checks["manifest"]["detail"]
    assert report["tables"]["public.items"] == {"expected": 50, "restored": 49}


# --- shrink warnings -------------------------------------------------------------------------


def test_a_table_cut_from_5000_to_100_rows_gives_exactly_one_warning_naming_it(
    migrated_url: str, tmp_path: Path, sendgrid: FakeSendGrid
) -> None:
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE invoice_configurations SET config_value = %s WHERE config_key = 'backup_notification_email'", (OPS,)
        )
        conn.execute("CREATE TABLE invoices (id int PRIMARY KEY, total numeric)")
        conn.execute("INSERT INTO invoices SELECT g, g * 1.5 FROM generate_series(1, 5000) g")
        conn.execute("CREATE TABLE small (id int)")  # 10 -> 5 rows: under BACKUP_SHRINK_MIN_ROWS
        conn.execute("INSERT INTO small SELECT generate_series(1, 10)")
    env = {
        "SENDGRID_API_KEY": sendgrid.api_key,
        "SENDGRID_API_HOST": sendgrid.url,
        "ALERT_FROM_EMAIL": "backups@example.com",
        "BACKUP_TIMEZONE": "Europe/Berlin",
        "BACKUP_SIZE_WARNING_PERCENT": "0",  # the file-size check is another alert
    }
    s = settings_for(migrated_url, tmp_path, **env)
    first = backup_job(s, alerter=alerter_for(s, sleep=lambda _: None)).run("scheduled")
    assert first.status == "success" and first.warnings == []
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("DELETE FROM invoices WHERE id > 100")
        conn.execute("DELETE FROM small WHERE id > 5")
        conn.execute(
            # Noon yesterday in Berlin, the message's time zone: "yesterday" at any hour of a run.
            "UPDATE backup_logs SET started_at = ((now() AT TIME ZONE 'Europe/Berlin')::date - 1 + time '12:00')"
            " AT TIME ZONE 'Europe/Berlin' WHERE id = %s",
            (first.backup_log_id,),
        )
    body, status = run_backup(s, "scheduled")
    assert status == 200 and body["status"] == "success"
    assert body["warnings"] == ["public.invoices: 5,000 → 100 rows since yesterday's backup"]
    with psycopg.connect(migrated_url) as conn:
        recorded = conn.execute(
            "SELECT shrink_warnings FROM backup_logs WHERE id = %s", (body["backup_log_id"],)
        ).fetchone()
    assert recorded == (body["warnings"],)
    [mail] = [m for m in sendgrid.sent if "Shrink" in m.subject]
    assert mail.to == [OPS] and "public.invoices: 5,000 → 100 rows" in mail.text and "small" not in mail.text
    assert len(sendgrid.sent) == 1  # nothing else was alerted (the size check stayed quiet or is separate)


def test_tables_that_vanish_or_empty_are_warned_and_growth_is_not(migrated_url: str, tmp_path: Path) -> None:
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE gone (id int); INSERT INTO gone VALUES (1)")
        conn.execute("CREATE TABLE emptied (id int); INSERT INTO emptied VALUES (1), (2)")
        conn.execute("CREATE TABLE grows (id int); INSERT INTO grows SELECT generate_series(1, 2000)")
    s = settings_for(migrated_url, tmp_path)
    assert backup_job(s).run("manual").warnings == []
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("DROP TABLE gone; TRUNCATE emptied; INSERT INTO grows SELECT generate_series(1, 2000)")
    proc = run_cli(["backup", "--json"], migrated_url, BACKUP_LOCAL_ROOT=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    warnings = json.loads(proc.stdout)["warnings"]
    assert warnings == [
        "public.emptied: 2 → 0 rows since today's earlier backup",
        "public.gone: 1 rows → table gone since today's earlier backup",
    ]


def test_an_encrypted_backup_has_the_same_manifest(migrated_url: str, tmp_path: Path) -> None:
    from pyrage import x25519

    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE secret_things (id int); INSERT INTO secret_things SELECT generate_series(1, 1234)")
    key = x25519.Identity.generate()
    outcome = backup_job(settings_for(migrated_url, tmp_path, BACKUP_AGE_RECIPIENTS=str(key.to_public()))).run("manual")
    assert outcome.status == "success" and outcome.file_name.endswith(".sql.gz.age")
    assert manifest_of(migrated_url, outcome.backup_log_id)["tables"]["public.secret_things"]["rows"] == 1234
