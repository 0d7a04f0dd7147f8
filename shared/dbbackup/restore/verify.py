"""Verifying a backup: the gzip stream end to end, size and MD5 against backup_logs, pg_dump's
completion marker, and optionally a real restore into a throwaway server. An age-encrypted
backup is decrypted (every piece authenticated) when an identity is given; without one, only
what can be checked without the key is: its header, and its size and MD5 against the row."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from dbbackup.core.manifest import rows_of
from dbbackup.dump.age import AgeError, Identities
from dbbackup.dump.gunzip import ReadStats, gunzip
from dbbackup.dump.profiles import PROFILE_MARKER
from dbbackup.dump.rewrite import DumpRewriter
from dbbackup.errors import BackupFailed
from dbbackup.pg import catalog
from dbbackup.pg.catalog import exact_rows
from dbbackup.pg.embedded import EmbeddedPostgres
from dbbackup.restore.reading import encrypted_without_identity, open_stored
from dbbackup.restore.restorer import restore
from dbbackup.restore.sources import Source


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    skipped: bool = False


@dataclass
class VerifyReport:
    source: str
    checks: list[Check] = field(default_factory=list)
    table_count: int | None = None  # tables in the restored database
    rows: int | None = None  # their rows, all together
    # Per table of the manifest (or of the restore, when there is none): expected and restored rows.
    tables: dict[str, dict[str, int | None]] | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def contents_checked(self) -> bool:
        """False for an encrypted backup verified without its identity."""
        return not any(c.name == "contents" and c.skipped for c in self.checks)


def verify(source: Source, restore_test: bool = False, identities: Identities | None = None) -> VerifyReport:
    started = time.monotonic()
    report = VerifyReport(source.label)
    stats = ReadStats()
    checker = DumpRewriter([])
    head = b""
    opened = open_stored(source)
    stored = opened.stored
    if stored.encrypted:
        if restore_test and identities is None:
            raise encrypted_without_identity(source.label, "--restore-test")
        if stored.header is not None:
            detail = f"age-encryption.org/v1, {stored.header.recipients} X25519 recipient(s)"
            report.checks.append(Check("age", True, detail))
        else:
            report.checks.append(Check("age", False, stored.header_error or "the age header is malformed"))
    contents = not stored.encrypted or identities is not None
    if not contents:
        for _ in opened.raw:  # size and MD5 of what is stored are all that can be read without the key
            pass
        report.checks.append(
            Check(
                "contents",
                True,
                "NOT checked: the backup is encrypted and no identity was given (--identity FILE or"
                " BACKUP_AGE_IDENTITY); only its age header, size and MD5 were checked",
                skipped=True,
            )
        )
    else:
        try:
            for block in gunzip(opened.gzip(identities, source.label, "verify"), stats):
                if len(head) < len(PROFILE_MARKER):
                    head += block[: len(PROFILE_MARKER)]
                checker.feed(block)
            if stored.encrypted:
                report.checks.append(Check("decrypt", True, "every age piece authenticated with the given identity"))
            report.checks.append(Check("gzip", True, f"{stats.gz_bytes:,} bytes, CRC and length verified"))
            try:
                checker.finish()
                report.checks.append(Check("complete", True, "pg_dump's completion marker is present"))
            except BackupFailed as exc:
                report.checks.append(Check("complete", False, str(exc)))
        except AgeError as exc:
            report.checks.append(Check("decrypt", False, str(exc)))
        except BackupFailed as exc:
            report.checks.append(Check("gzip", False, str(exc)))
    row = source.row
    if row is None:
        report.checks.append(Check("log", True, "no backup_logs row to compare with (size and MD5 not checked)"))
    elif stored.md5:
        compared = [("size", row.file_size_bytes, stored.size), ("md5", row.md5_checksum, stored.md5)]
        if stats.md5:  # the SQL was read to the end
            compared.append(("sql_bytes", row.sql_bytes, stats.sql_bytes))
        for name, recorded, actual in compared:
            if recorded is None:
                report.checks.append(Check(name, True, "not recorded in backup_logs"))
            else:
                same = recorded == actual
                report.checks.append(Check(name, same, f"recorded {recorded}, file {actual}"))
    if restore_test and report.ok:
        if head.startswith(PROFILE_MARKER):
            # It holds auth/storage rows but, by design, not those schemas' structure: only a
            # database that already has them (a Supabase project) can take it.
            report.checks.append(
                Check(
                    "restore",
                    True,
                    "skipped: a supabase-profile backup restores only into a Supabase project, which has the"
                    " auth/storage schemas it loads data into (dbbackup restore SOURCE --target <project URL>)",
                    skipped=True,
                )
            )
        else:
            _restore_test(source, report, identities)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def compare_with_manifest(
    expected: dict[str, int] | None, restored: dict[str, int]
) -> tuple[dict[str, dict[str, int | None]], Check]:
    """Each manifest table's rows against the restored database's (a table missing there counts
    as a difference); without a manifest only the restored counts are reported."""
    if expected is None:
        tables: dict[str, dict[str, int | None]] = {n: {"expected": None, "restored": r} for n, r in restored.items()}
        return tables, Check("manifest", True, "no manifest recorded for this backup: row counts not compared", True)
    tables = {n: {"expected": e, "restored": restored.get(n)} for n, e in sorted(expected.items())}
    differ = [(n, t) for n, t in tables.items() if t["expected"] != t["restored"]]
    if not differ:
        total = sum(expected.values())
        return tables, Check("manifest", True, f"all {len(tables)} tables restored with the recorded rows ({total:,})")

    def restored_text(value: int | None) -> str:
        return "none (table missing)" if value is None else f"{value:,}"

    shown = "; ".join(
        f"{n}: expected {t['expected']:,}, restored {restored_text(t['restored'])}" for n, t in differ[:10]
    )
    more = f" and {len(differ) - 10} more" if len(differ) > 10 else ""
    return tables, Check("manifest", False, f"{len(differ)} table(s) differ from the manifest: {shown}{more}")


def restore_and_compare(
    source: Source, url: str, report: VerifyReport, identities: Identities | None, *, force: bool = False, where: str
) -> None:
    """Restore ``source`` into ``url`` and compare every table's rows with the manifest (and the
    bytes read with the MD5 the row recorded)."""
    try:
        result = restore(source, url, identities=identities, force=force)
    except BackupFailed as exc:
        report.checks.append(Check("restore", False, str(exc)))
        return
    recorded = source.row.md5_checksum if source.row else None
    if recorded:
        # The file is read a second time for the restore: its bytes must still be the recorded ones.
        detail = f"the bytes restored: recorded {recorded}, read {result.md5}"
        report.checks.append(Check("restored md5", recorded == result.md5, detail))
    restored = exact_rows(url)
    report.table_count, report.rows = len(restored), sum(restored.values())
    report.checks.append(
        Check("restore", True, f"restored into {where}: {report.table_count} tables, {report.rows:,} rows")
    )
    report.tables, check = compare_with_manifest(rows_of(source.row.manifest) if source.row else None, restored)
    report.checks.append(check)


def _restore_test(source: Source, report: VerifyReport, identities: Identities | None) -> None:
    with EmbeddedPostgres() as pg:
        catalog.create_databases(pg.url(), "restore_test")
        restore_and_compare(source, pg.url("restore_test"), report, identities, where="PostgreSQL 18")
