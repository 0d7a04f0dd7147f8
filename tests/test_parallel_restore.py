"""`dbbackup restore --jobs N`: the varied database restored over two sessions is the database a
sequential restore gives, read by range through the seekable index or streamed without one; a
failure part-way leaves the target as it was before; refusals are one line, exit 2."""

from __future__ import annotations

import gzip
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from test_roundtrip import OURS, backup, load_variety, zcat_into_psql

from dbbackup.core.seek_index import Index, Member, index_of
from dbbackup.dump.profiles import PROFILE_MARKER
from dbbackup.pg import binaries as pgbin
from dbbackup.pg.created import snapshot
from dbbackup.pg.migrate import migrate
from dbbackup.restore import parallel
from dbbackup.restore.parallel import restore_parallel
from dbbackup.restore.restorer import restore
from dbbackup.settings import Settings
from dbbackup.wiring import backup_job, resolve_source
from support.cli import cli_env, run_cli
from support.db import with_params
from support.pgcompare import assert_databases_equal


@dataclass
class Backed:
    admin: str
    names: list[str] = field(default_factory=list)  # the databases made, dropped at the end
    source: str = ""  # the varied database, whose backup_logs holds the backup's row and index
    root: Path = Path()  # the storage (BACKUP_LOCAL_ROOT) the backup went to
    file: Path = Path()
    log_id: str = ""
    sequential: str = ""  # the backup restored by the sequential restore
    settings: Settings | None = None

    def new_db(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return with_params(self.admin, dbname=name)

    def cli(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        return run_cli(["restore", *args], self.source, BACKUP_LOCAL_ROOT=str(self.root))

    def lookup(self) -> Settings:
        assert self.settings is not None
        return self.settings


@pytest.fixture(scope="module")
def backed(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backed]:
    made = Backed(pg_admin_url)
    try:
        made.source = made.new_db()
        load_variety(made.source)
        made.root = tmp_path_factory.mktemp("store")
        made.file, made.log_id = backup(made.source, made.root)
        made.settings = Settings.from_env({"DATABASE_URL": made.source, "BACKUP_LOCAL_ROOT": str(made.root)})
        made.sequential = made.new_db()
        restore(resolve_source(made.log_id, made.lookup), made.sequential)
        yield made
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            for name in made.names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def objects(url: str) -> frozenset[tuple[int, int]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return snapshot(conn)


def test_the_backup_has_an_index_with_its_sections_apart(backed: Backed) -> None:
    with psycopg.connect(backed.source) as conn:
        manifest = conn.execute("SELECT manifest FROM backup_logs WHERE id = %s", (backed.log_id,)).fetchone()[0]
    index = index_of(manifest)
    assert index is not None
    assert [m.section for m in index.members][:: len(index.members) - 1] == ["pre-data", "post-data"]


def test_jobs_2_by_range_gives_the_sequential_restore(backed: Backed) -> None:
    target = backed.new_db()
    result = restore_parallel(resolve_source(backed.log_id, backed.lookup), target, 2)
    assert result.read.startswith("by range"), result.read
    assert_databases_equal(backed.sequential, target, pgbin.tool("pg_dump"), ignore_data=OURS)


def test_jobs_2_without_an_index_gives_the_sequential_restore(backed: Backed, tmp_path: Path) -> None:
    bare = tmp_path / backed.file.name
    shutil.copyfile(backed.file, bare)  # no DATABASE_URL: no backup_logs row, no index
    target = backed.new_db()
    proc = run_cli(["restore", str(bare), "--target", target, "--jobs", "2"], None)
    assert proc.returncode == 0, proc.stderr
    assert "over 2 sessions, read streamed" in proc.stdout
    assert_databases_equal(backed.sequential, target, pgbin.tool("pg_dump"), ignore_data=OURS)


def test_a_failing_post_data_step_leaves_the_target_as_it_was(backed: Backed) -> None:
    target = backed.new_db()
    with psycopg.connect(target, autocommit=True) as conn:
        # Something the target already had: it must still be there, and nothing of the restore.
        conn.execute(
            "CREATE FUNCTION public.no_fk() RETURNS event_trigger LANGUAGE plpgsql AS $$"
            " BEGIN RAISE EXCEPTION 'no foreign keys here'; END $$"
        )
        conn.execute(
            "CREATE EVENT TRIGGER no_fk ON ddl_command_end WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION public.no_fk()"
        )
    before = objects(target)
    proc = backed.cli([backed.log_id, "--target", target, "--jobs", "2"])
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "no foreign keys here" in proc.stderr and "everything the restore had created was dropped" in proc.stderr
    assert objects(target) == before


def test_a_damaged_data_member_leaves_the_target_as_it_was(backed: Backed, tmp_path: Path) -> None:
    with psycopg.connect(backed.source) as conn:
        manifest = conn.execute("SELECT manifest FROM backup_logs WHERE id = %s", (backed.log_id,)).fetchone()[0]
    index = index_of(manifest)
    assert index is not None
    largest = max((m for m in index.members if m.tables), key=lambda m: m.length)
    damaged = tmp_path / backed.file.name  # the same name and size: the row's index applies to it
    data = bytearray(backed.file.read_bytes())
    middle = largest.offset + largest.length // 2
    data[middle : middle + 64] = bytes(64)
    damaged.write_bytes(bytes(data))
    target = backed.new_db()
    before = objects(target)
    proc = backed.cli([str(damaged), "--target", target, "--jobs", "2"])
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    # Zeroed deflate bytes may still inflate (to garbage, caught by the member's CRC only at
    # its end): psql may see the garbage first. Either way nothing of the restore is left.
    assert "everything the restore had created was dropped" in proc.stderr, proc.stderr
    assert objects(target) == before


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--jobs", "0"], "--jobs 0: expected 1 or more"),
        (["--jobs", "2", "--force"], "without --force"),
        (["--jobs", "2"], "(--jobs > 1 restores only into an empty one)"),
        (["--jobs", "2", "--table", "public.big_values"], "--table/--schema restore in one session"),
    ],
)
def test_refusals_are_one_line_exit_2(backed: Backed, extra: list[str], expected: str) -> None:
    proc = backed.cli([backed.log_id, "--target", backed.sequential, *extra])
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and expected in proc.stderr, proc.stderr


def test_sigterm_part_way_leaves_the_target_as_it_was(backed: Backed) -> None:
    target = backed.new_db()
    with psycopg.connect(target, autocommit=True) as conn:
        # Each index takes a moment, so that the signal surely comes while the sessions work.
        conn.execute(
            "CREATE FUNCTION public.slow() RETURNS event_trigger LANGUAGE plpgsql AS $$"
            " BEGIN PERFORM pg_sleep(0.3); END $$"
        )
        conn.execute(
            "CREATE EVENT TRIGGER slow ON ddl_command_end WHEN TAG IN ('CREATE INDEX') EXECUTE FUNCTION public.slow()"
        )
    before = objects(target)
    env = cli_env(backed.source, BACKUP_LOCAL_ROOT=str(backed.root))
    argv = [sys.executable, "-m", "dbbackup.cli", "restore", backed.log_id, "--target", target, "--jobs", "2"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with psycopg.connect(target, autocommit=True) as conn:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            indexes = conn.execute("SELECT count(*) FROM pg_class WHERE relkind = 'i' AND oid >= 16384").fetchone()
            if indexes and indexes[0] > 0:
                break
            time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    assert stderr.count("\n") == 1 and "interrupted" in stderr and "was dropped" in stderr, stderr
    assert objects(target) == before


def test_a_supabase_profile_file_is_refused(backed: Backed, tmp_path: Path) -> None:
    """Several programs' output in one file: refused before the target is looked at."""
    file = tmp_path / "supabase.sql.gz"
    file.write_bytes(gzip.compress(PROFILE_MARKER + b" (...)\n-- PostgreSQL database dump complete\n"))
    proc = run_cli(["restore", str(file), "--target", backed.sequential, "--jobs", "2"], None)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "full-profile backups only" in proc.stderr, proc.stderr


def test_a_trigger_on_a_partitioned_parent_waits_for_its_partitions_rows(
    backed: Backed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent has no rows of its own: its BEFORE INSERT trigger (cloned to the partitions)
    must still wait until the partitions' rows are in, or it fires on their COPY."""
    source = backed.new_db()
    with psycopg.connect(source, autocommit=True) as conn:
        migrate(conn)
        conn.execute(
            "CREATE TABLE public.measure (id int, v text) PARTITION BY RANGE (id);"
            " CREATE TABLE public.part_a PARTITION OF public.measure FOR VALUES FROM (0) TO (100);"
            " CREATE TABLE public.part_b PARTITION OF public.measure FOR VALUES FROM (100) TO (200);"
            " INSERT INTO public.measure SELECT g, 'as dumped' FROM generate_series(0, 199) g;"
            " CREATE FUNCTION public.mark() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN NEW.v := 'changed by the trigger'; RETURN NEW; END $$;"
            " CREATE TRIGGER mark BEFORE INSERT ON public.measure FOR EACH ROW EXECUTE FUNCTION public.mark();"
            " ALTER TABLE public.measure ADD CONSTRAINT small CHECK (id < 150) NOT VALID"
        )
    root = tmp_path / "store"
    root.mkdir()
    _, log_id = backup(source, root)
    settings = Settings.from_env({"DATABASE_URL": source, "BACKUP_LOCAL_ROOT": str(root)})
    real = parallel.open_members

    def late(src, chosen, index):  # part_b's rows start late: the trigger's session is free first
        if any("public.part_b" in m.tables for m in chosen):
            time.sleep(1.5)
        yield from real(src, chosen, index)

    monkeypatch.setattr(parallel, "open_members", late)
    target = backed.new_db()
    result = restore_parallel(resolve_source(log_id, lambda: settings), target, 2)
    assert result.read.startswith("by range"), result.read
    with psycopg.connect(target) as conn:
        rows = conn.execute("SELECT v, count(*) FROM public.measure GROUP BY v").fetchall()
    assert rows == [("as dumped", 200)]


def test_cleanup_ends_the_sessions_when_the_target_url_names_an_application(backed: Backed) -> None:
    """libpq prefers the URL's application_name to PGAPPNAME: the sessions must still carry the
    restore's own name, or a failure cannot end a session still at work (here one asleep in
    its first index) and the cleanup waits for it."""
    target = backed.new_db()
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION public.stall() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND objid = 4242"
            "   AND pid <> pg_catalog.pg_backend_pid()) THEN RAISE EXCEPTION 'second step refused';"
            " ELSIF tg_tag = 'CREATE INDEX' AND pg_catalog.pg_try_advisory_lock(4242) THEN PERFORM pg_sleep(40);"
            " END IF; END $$"
        )
        conn.execute(
            "CREATE EVENT TRIGGER stall ON ddl_command_end WHEN TAG IN ('CREATE INDEX', 'ALTER TABLE')"
            " EXECUTE FUNCTION public.stall()"
        )
    before = objects(target)
    started = time.monotonic()
    proc = backed.cli([backed.log_id, "--target", with_params(target, application_name="ops"), "--jobs", "2"])
    assert proc.returncode == 1, proc.stderr
    assert "second step refused" in proc.stderr and "everything the restore had created was dropped" in proc.stderr
    assert time.monotonic() - started < 25, "the cleanup waited for the sleeping session"
    assert objects(target) == before


def test_a_local_file_finds_its_own_row_when_another_folder_has_a_file_of_that_name(backed: Backed) -> None:
    """The newest row with that file name is another folder's (a different size, no index): the
    restore still finds this file's row, by its size, and reads by range."""
    with psycopg.connect(backed.source, autocommit=True) as conn:
        (other,) = conn.execute(
            "INSERT INTO backup_logs SELECT (jsonb_populate_record(NULL::backup_logs, to_jsonb(b) - 'id'"
            " || jsonb_build_object('id', gen_random_uuid(), 'file_size_bytes', b.file_size_bytes + 1,"
            " 'started_at', clock_timestamp(), 'manifest', NULL))).* FROM backup_logs b WHERE id = %s RETURNING id",
            (backed.log_id,),
        ).fetchone()
    try:
        target = backed.new_db()
        proc = backed.cli([str(backed.file), "--target", target, "--jobs", "2", "--json"])
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["read"].startswith("by range"), proc.stdout
    finally:
        with psycopg.connect(backed.source, autocommit=True) as conn:
            conn.execute("DELETE FROM backup_logs WHERE id = %s", (other,))


# ----------------------------------------------------------------- a large table in parts

PART_MB = 1  # BACKUP_SEEKABLE_PART_MB: public.wide's ~5.6 MiB of rows become four or more parts
WIDE_SQL = """
CREATE TABLE public.wide (id int PRIMARY KEY, label text NOT NULL, payload text);
INSERT INTO public.wide SELECT g, 'w' || g, CASE WHEN g % 97 = 0 THEN NULL ELSE repeat(md5(g::text), 3) END
  FROM generate_series(1, 50000) g;
CREATE INDEX wide_label ON public.wide (label);
CREATE FUNCTION public.wide_mark() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN NEW.label := 'changed by the trigger'; RETURN NEW; END $$;
CREATE TRIGGER wide_mark BEFORE INSERT ON public.wide FOR EACH ROW EXECUTE FUNCTION public.wide_mark();
CREATE TABLE public.after_wide (id int PRIMARY KEY REFERENCES public.wide, note text);
INSERT INTO public.after_wide SELECT g, E'tab\\there' FROM generate_series(1, 500) g;
CREATE TABLE public."Übersicht Ω" ("Schlüssel" int PRIMARY KEY, "größe" text);
INSERT INTO public."Übersicht Ω" SELECT g, repeat('ä' || g, 12) FROM generate_series(1, 30000) g;
"""
UMLAUT = "public.Übersicht Ω"  # a name that is not ASCII, in a UTF8 dump: in parts too


@dataclass
class Parted:
    backed: Backed
    source: str
    root: Path
    file: Path
    log_id: str
    settings: Settings

    def index(self) -> Index:
        with psycopg.connect(self.source) as conn:
            manifest = conn.execute("SELECT manifest FROM backup_logs WHERE id = %s", (self.log_id,)).fetchone()[0]
        index = index_of(manifest)
        assert index is not None and index.version == 2
        return index

    def parts(self) -> list[Member]:
        return [m for m in self.index().members if m.tables == ("public.wide",)]


@pytest.fixture(scope="module")
def parted(backed: Backed, tmp_path_factory: pytest.TempPathFactory) -> Parted:
    source = backed.new_db()
    load_variety(source)
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute(WIDE_SQL)  # type: ignore[arg-type]
    root = tmp_path_factory.mktemp("parted")
    settings = Settings.from_env(
        {"DATABASE_URL": source, "BACKUP_LOCAL_ROOT": str(root), "BACKUP_SEEKABLE_PART_MB": str(PART_MB)}
    )
    outcome = backup_job(settings).run("manual")
    assert outcome.status == "success", outcome.reason
    return Parted(backed, source, root, root / str(outcome.file_id), str(outcome.backup_log_id), settings)


def test_a_large_tables_rows_are_cut_into_parts_of_a_standard_gzip_file(parted: Parted) -> None:
    parts = parted.parts()
    assert len(parts) >= 3, parts
    assert not parts[0].resume
    assert {p.resume for p in parts[1:]} == {"COPY public.wide (id, label, payload) FROM stdin;"}
    assert all(p.raw_length >= PART_MB << 20 for p in parts[:-1])
    index = parted.index()
    parted_tables = {m.tables[0] for m in index.members if m.resume}
    assert {"public.wide", UMLAUT} <= parted_tables
    assert {m.resume for m in index.members if m.tables == (UMLAUT,) and m.resume} == {
        'COPY public."Übersicht Ω" ("Schlüssel", "größe") FROM stdin;'
    }
    shown = run_cli(["show", parted.log_id], parted.source, check=True).stdout
    assert f"{len(index.members)} gzip members, {len(parted_tables)} table(s) in parts for restore --jobs" in shown
    data = parted.file.read_bytes()
    whole = gzip.decompress(data)  # several members, read as one stream by gzip itself
    for part in parts[1:]:
        alone = gzip.decompress(data[part.offset : part.offset + part.length])
        assert whole[part.raw_offset - 1 : part.raw_offset] == b"\n" and not alone.startswith(b"COPY "), alone[:80]
    tail = gzip.decompress(data[parts[-1].offset : parts[-1].offset + parts[-1].length])
    assert tail.rstrip(b"\n").endswith(b"\n\\.")  # the parts hold the table alone: the next entry has its own
    assert subprocess.run(["gzip", "-t", str(parted.file)], check=False).returncode == 0
    target = parted.backed.new_db()
    zcat_into_psql(parted.file, target, pgbin.tool("psql"))
    assert_databases_equal(parted.source, target, pgbin.tool("pg_dump"), ignore_data=OURS)


def test_jobs_2_loads_the_parts_of_one_table_side_by_side(parted: Parted, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each of the first two parts waits until the other has started: a restore that loaded
    them one after another would never get past the barrier."""
    first_two = {p.offset for p in parted.parts()[:2]}
    barrier = threading.Barrier(2, timeout=30)
    real = parallel.open_members

    def together(src, chosen, index):
        if any(m.offset in first_two for m in chosen):
            barrier.wait()
        yield from real(src, chosen, index)

    monkeypatch.setattr(parallel, "open_members", together)
    target = parted.backed.new_db()
    result = restore_parallel(resolve_source(parted.log_id, lambda: parted.settings), target, 2)
    assert result.read.startswith("by range"), result.read
    assert not barrier.broken
    assert_databases_equal(parted.source, target, pgbin.tool("pg_dump"), ignore_data=OURS)


def test_table_restores_a_parted_table_whole(parted: Parted) -> None:
    target = parted.backed.new_db()
    proc = run_cli(
        ["restore", parted.log_id, "--target", target, "--table", "public.wide", "--json"],
        parted.source,
        BACKUP_LOCAL_ROOT=str(parted.root),
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["indexed"] and result["tables"] == ["public.wide"], result
    others = sum(m.length for m in parted.index().members if m.tables and "public.wide" not in m.tables)
    assert result["gz_bytes"] <= parted.file.stat().st_size - others  # the other tables' rows were not read
    query = "SELECT count(*), sum(hashtext(label || coalesce(payload, '-'))) FROM public.wide"
    with psycopg.connect(parted.source) as src, psycopg.connect(target) as dst:
        assert dst.execute(query).fetchone() == src.execute(query).fetchone()
        assert dst.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'wide'").fetchone() == (2,)


def test_a_damaged_part_leaves_the_target_as_it_was(parted: Parted, tmp_path: Path) -> None:
    part = parted.parts()[1]
    damaged = tmp_path / parted.file.name  # the same name and size: the row's index applies to it
    data = bytearray(parted.file.read_bytes())
    middle = part.offset + part.length // 2
    data[middle : middle + 64] = bytes(64)
    damaged.write_bytes(bytes(data))
    target = parted.backed.new_db()
    before = objects(target)
    proc = run_cli(
        ["restore", str(damaged), "--target", target, "--jobs", "2"], parted.source, BACKUP_LOCAL_ROOT=str(parted.root)
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "everything the restore had created was dropped" in proc.stderr, proc.stderr
    assert objects(target) == before


def test_a_parted_tables_trigger_waits_for_its_last_part(parted: Parted, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last part of public.wide comes late, when every other table's rows are in: its
    BEFORE INSERT trigger must still wait for it (a table is loaded once all its parts are)."""
    last = parted.parts()[-1].offset
    real = parallel.open_members

    def late(src, chosen, index):
        if any(m.offset == last for m in chosen):
            time.sleep(1.5)
        yield from real(src, chosen, index)

    monkeypatch.setattr(parallel, "open_members", late)
    target = parted.backed.new_db()
    restore_parallel(resolve_source(parted.log_id, lambda: parted.settings), target, 2)
    with psycopg.connect(target) as conn:
        changed = conn.execute("SELECT count(*) FROM public.wide WHERE label = 'changed by the trigger'").fetchone()
    assert changed == (0,)
