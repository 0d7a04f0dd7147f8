"""Verifying a backup: the gzip stream end to end, size and MD5 against backup_logs, pg_dump's
completion marker, and optionally a real restore into a throwaway server. An age-encrypted
backup is decrypted (every piece authenticated) when an identity is given; without one, only
what can be checked without the key is: its header, and its size and MD5 against the row."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from dbbackup.dump.age import AgeError, Identities
from dbbackup.dump.gunzip import ReadStats, gunzip
from dbbackup.dump.profiles import PROFILE_MARKER
from dbbackup.dump.rewrite import DumpRewriter
from dbbackup.errors import BackupFailed
from dbbackup.pg import catalog
from dbbackup.pg.catalog import count_rows
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
    tables: int | None = None
    rows: int | None = None
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


def _restore_test(source: Source, report: VerifyReport, identities: Identities | None) -> None:
    with EmbeddedPostgres() as pg:
        catalog.create_databases(pg.url(), "restore_test")
        url = pg.url("restore_test")
        try:
            restore(source, url, identities=identities)
        except BackupFailed as exc:
            report.checks.append(Check("restore", False, str(exc)))
            return
        report.tables, report.rows = count_rows(url)
        report.checks.append(
            Check("restore", True, f"restored into PostgreSQL 18: {report.tables} tables, {report.rows:,} rows")
        )
