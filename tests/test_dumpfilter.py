"""The stream rewrite: each compatibility rule, the own-row patch, truncation detection."""

from __future__ import annotations

import pytest

from dbbackup.dump.rewrite import COMPLETION_MARKER, DumpRewriter, OwnRowPatch, rules_for
from dbbackup.errors import BackupFailed

HEADER = b"SET statement_timeout = 0;\nSET transaction_timeout = 0;\nSET client_encoding = 'UTF8';\n"
TRAILER = b"\n" + COMPLETION_MARKER + b"\n--\n\n\\unrestrict abc\n"
OWN = "11111111-2222-3333-4444-555555555555"
LOGS = (
    b"COPY public.backup_logs (id, backup_type, status, file_name, failure_reason) FROM stdin;\n"
    b"99999999-2222-3333-4444-555555555555\tautomatic\tsuccess\tDB_old.sql.gz\t\\N\n"
    + OWN.encode()
    + b"\tmanual\tin_progress\tDB_new.sql.gz\t\\N\n\\.\n"
)


def run(data: bytes, server_major: int = 15, step: int | None = None, own: bool = False) -> bytes:
    patch = OwnRowPatch(b"public.backup_logs", OWN, {"status": "success"}) if own else None
    rw = DumpRewriter(rules_for(server_major), patch, server_major)
    step = step or len(data)
    out = b"".join(rw.feed(data[i : i + step]) for i in range(0, len(data), step))
    return out + rw.finish()


def test_transaction_timeout_is_commented_out_below_17() -> None:
    for major in (15, 16):
        out = run(HEADER + TRAILER, major)
        assert b"\n-- SET transaction_timeout = 0;" in out
        assert b"\nSET transaction_timeout" not in out


def test_transaction_timeout_is_kept_for_17_and_later() -> None:
    for major in (17, 18):
        assert b"\nSET transaction_timeout = 0;\n" in run(HEADER + TRAILER, major)


def test_server_assigned_attver_option_is_removed() -> None:
    sql = (
        b"ALTER TABLE ONLY public.a ALTER COLUMN id SET (pg_attver=35284480);\n"
        b"ALTER TABLE ONLY public.a ALTER COLUMN b SET (n_distinct=5, pg_attver=1);\n"
        b"ALTER TABLE ONLY public.a ALTER COLUMN c SET (pg_attver=1, n_distinct=5);\n"
        b"ALTER TABLE ONLY public.a ALTER COLUMN d SET (n_distinct=1, pg_attver=1, n_distinct_inherited=2);\n"
    )
    out = run(sql + TRAILER)
    lines = out.splitlines()
    assert lines[0].startswith(b"-- ALTER TABLE ONLY public.a ALTER COLUMN id SET (pg_attver")
    assert lines[1] == b"ALTER TABLE ONLY public.a ALTER COLUMN b SET (n_distinct=5);"
    assert lines[2] == b"ALTER TABLE ONLY public.a ALTER COLUMN c SET (n_distinct=5);"
    assert lines[3] == b"ALTER TABLE ONLY public.a ALTER COLUMN d SET (n_distinct=1, n_distinct_inherited=2);"


def test_copy_data_is_never_rewritten() -> None:
    data = b"COPY public.t (x) FROM stdin;\nSET transaction_timeout = 0;\npg_attver=5\n\\.\n"
    out = run(data + TRAILER)
    assert out.startswith(data)


def test_output_is_identical_whatever_the_chunking() -> None:
    data = HEADER + INHERITED + LOGS + b"COPY public.t (x) FROM stdin;\na\\\\.\n\\.\nSELECT 1;\n" + TRAILER
    whole = run(data, own=True)
    for step in (1, 2, 3, 7, 64):
        assert run(data, step=step, own=True) == whole
        assert run(data, 17, step=step, own=True) == run(data, 17, own=True)


def test_the_running_backups_own_row_is_restored_as_success() -> None:
    out = run(LOGS + TRAILER, own=True)
    assert OWN.encode() + b"\tmanual\tsuccess\tDB_new.sql.gz\t\\N\n" in out
    assert b"99999999-2222-3333-4444-555555555555\tautomatic\tsuccess\tDB_old" in out
    assert b"in_progress" not in out


def test_a_dump_without_the_completion_marker_is_refused() -> None:
    with pytest.raises(BackupFailed, match="completion marker"):
        run(HEADER + b"CREATE TABLE t (x int);\n")


def test_a_dump_cut_inside_table_data_is_refused() -> None:
    with pytest.raises(BackupFailed, match="inside table data"):
        run(HEADER + b"COPY public.t (x) FROM stdin;\n1\n2\n")


def test_a_final_line_without_newline_is_kept() -> None:
    out = run(HEADER + TRAILER + b"\\unrestrict xyz")
    assert out.endswith(b"\\unrestrict xyz")


INHERITED = (
    b"CREATE TABLE x.child (\n    NOT NULL c,\n    d integer NOT NULL\n)\nINHERITS (x.parent);\n"
    b"CREATE TABLE x.only_child (\n    a integer,\n    NOT NULL c\n)\nINHERITS (x.parent);\n"
    b"CREATE FOREIGN TABLE x.remote (\n    NOT NULL c\n)\nINHERITS (x.parent)\nSERVER srv;\n"
)


def test_inherited_not_null_elements_become_alter_table_below_18() -> None:
    for major in (15, 16, 17):
        out = run(INHERITED + TRAILER, major).decode()
        assert "    NOT NULL c" not in out
        assert "CREATE TABLE x.child (\n    d integer NOT NULL\n)\nINHERITS (x.parent);\n" in out
        assert "ALTER TABLE ONLY x.child ALTER COLUMN c SET NOT NULL;\n" in out
        assert "CREATE TABLE x.only_child (\n    a integer\n)\nINHERITS (x.parent);\n" in out
        assert "CREATE FOREIGN TABLE x.remote (\n)\nINHERITS (x.parent)\nSERVER srv;\n" in out
        assert "ALTER FOREIGN TABLE ONLY x.remote ALTER COLUMN c SET NOT NULL;\n" in out


def test_inherited_not_null_elements_are_kept_for_18() -> None:
    assert run(INHERITED + TRAILER, 18).startswith(INHERITED)


def test_run_as_owner_is_dropped_for_15_only() -> None:
    sub = b"CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p WITH (connect = false, run_as_owner = true);\n"
    assert b"run_as_owner" not in run(sub + TRAILER, 15)
    assert b"run_as_owner = true" in run(sub + TRAILER, 16)


def test_a_dump_cut_inside_a_create_table_is_refused() -> None:
    with pytest.raises(BackupFailed, match="truncated"):
        run(b"CREATE TABLE x.child (\n    NOT NULL c,\n")


def test_a_huge_table_data_line_streams_through_without_being_held() -> None:
    big = b"x" * (8 << 20)
    data = HEADER + b"COPY public.blob (b) FROM stdin;\n\\\\x" + big + b"\n2\n\\.\n" + TRAILER
    rw = DumpRewriter(rules_for(15), None, 15)
    out, held = [], 0
    for i in range(0, len(data), 1 << 20):
        out.append(rw.feed(data[i : i + (1 << 20)]))
        held = max(held, len(rw._pending))
    out.append(rw.finish())
    assert b"".join(out) == run(data)
    assert held < 1 << 20  # never more than one chunk held back


def test_a_dump_cut_in_the_middle_of_a_long_data_line_is_refused() -> None:
    with pytest.raises(BackupFailed, match="inside table data"):
        run(HEADER + b"COPY public.t (x) FROM stdin;\n" + b"y" * 5000, step=1000)
