"""The ``dbbackup`` command line. Exit codes, in one place: 0 success, 1 the backup failed (or
``status`` found the health not OK), 2 usage or configuration error (always one line on stderr,
never a traceback)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from dbbackup import structured_log
from dbbackup.core.health import iso
from dbbackup.errors import BackupError, UsageError
from dbbackup.pg.backup_log import STATUSES
from dbbackup.redact import one_line, redact
from dbbackup.structured_log import error_line, json_wanted

if TYPE_CHECKING:
    from dbbackup.dump.age import Identities

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEMO_ROOT = "demo-backups"
FROM_HELP = "read the copy on this BACKUP_STORAGE target (default: the first target that holds a good copy)"
IDENTITY_HELP = (
    "age identity file (age-keygen's output) to decrypt an encrypted backup; default BACKUP_AGE_IDENTITY"
    " (a file or the key) or BACKUP_AGE_IDENTITY_SECRET"
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dbbackup")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        error_line(f"dbbackup: error: {message} (see dbbackup --help)")
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dbbackup", description="Streaming PostgreSQL backups logged in backup_logs.")
    parser.add_argument("-V", "--version", action="version", version=f"dbbackup {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("migrate", help="create or update backup_logs, settings rows and policies")
    backup = sub.add_parser("backup", help="dump DATABASE_URL to the configured storage")
    backup.add_argument("--manual", action="store_true", help="log as a manual backup (default: automatic)")
    backup.add_argument("--json", action="store_true", help="print the result as JSON")
    logs = sub.add_parser("logs", help="show recent backup_logs rows")
    logs.add_argument("--status", choices=STATUSES)
    logs.add_argument("--limit", type=int, default=20)
    logs.add_argument("--json", action="store_true")
    restore = sub.add_parser("restore", help="restore a backup into an empty database")
    restore.add_argument("source", help="a .sql.gz(.age) file, a backup_logs id, or 'latest'")
    restore.add_argument(
        "--target", required=True, help="URL of the (empty, existing unless --create) database to restore into"
    )
    restore.add_argument("--force", action="store_true", help="restore even if the target holds tables")
    restore.add_argument(
        "--create", action="store_true", help="create the target database when it does not exist (needs CREATEDB)"
    )
    restore.add_argument(
        "--no-single-transaction",
        dest="single_transaction",
        action="store_false",
        help="commit statement by statement (a failure leaves a partial restore)",
    )
    restore.add_argument("--identity", metavar="FILE", help=IDENTITY_HELP)
    restore.add_argument("--from", dest="from_target", metavar="TARGET", help=FROM_HELP)
    restore.add_argument(
        "--skip-managed-errors",
        action="store_true",
        help="supabase profile: skip (and print) an app object on a managed schema the target role may not create",
    )
    restore.add_argument(
        "--table",
        dest="tables",
        action="append",
        default=[],
        metavar="SCHEMA.TABLE",
        help="restore only this table (repeatable): its definition, rows, indexes, constraints, triggers, policies",
    )
    restore.add_argument(
        "--schema", dest="schemas", action="append", default=[], metavar="NAME", help="restore every table of NAME"
    )
    restore.add_argument(
        "--into-schema", metavar="NAME", help="with --table/--schema: create them in NAME, beside the live ones"
    )
    restore.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="restore over N sessions (default 1: one session, one transaction); N > 1 needs an empty target",
    )
    restore.add_argument("--json", action="store_true")
    verify = sub.add_parser("verify", help="check a backup end to end")
    verify.add_argument("source", help="a .sql.gz(.age) file, a backup_logs id, or 'latest'")
    verify.add_argument("--restore-test", action="store_true", help="also restore it into a throwaway server")
    verify.add_argument("--identity", metavar="FILE", help=IDENTITY_HELP)
    verify.add_argument("--from", dest="from_target", metavar="TARGET", help=FROM_HELP)
    verify.add_argument("--json", action="store_true")
    cleanup = sub.add_parser("cleanup", help="delete backups older than BACKUP_RETENTION_DAYS (keeps a safety floor)")
    cleanup.add_argument("--dry-run", action="store_true", help="report what would be deleted; delete nothing")
    cleanup.add_argument("--json", action="store_true")
    objects = sub.add_parser(
        "storage-restore", help="put a backup's Supabase Storage objects back (SUPABASE_S3_* names the project)"
    )
    objects.add_argument("id", help="a backup_logs id (of a backup made with BACKUP_SUPABASE_STORAGE=true)")
    objects.add_argument("--bucket", help="only this bucket's objects")
    objects.add_argument("--endpoint", help="the S3 endpoint to restore into (default SUPABASE_S3_ENDPOINT)")
    objects.add_argument("--json", action="store_true")
    show = sub.add_parser("show", help="one backup_logs row and its manifest (rows and bytes per table)")
    show.add_argument("id", help="a backup_logs id, or 'latest' (the newest successful backup)")
    show.add_argument("--json", action="store_true")
    status = sub.add_parser(
        "status",
        help="backup health: last success, failures in a row, success rates, size (exit 1 when not OK)",
    )
    status.add_argument("--json", action="store_true")
    demo = sub.add_parser("demo", help="run everything on a throwaway server with a sample database")
    demo.add_argument(
        "--local-root",
        default=None,
        help=f"where the demo's backups go (default: ./{DEMO_ROOT}, never BACKUP_LOCAL_ROOT)",
    )
    return parser


class _Progress:
    """Bytes dumped and rate on stderr, at most twice a second, only on a terminal."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.last = 0.0
        self.active = sys.stderr.isatty() and not json_wanted()  # a progress bar is no log line

    def __call__(self, sql_bytes: int, gz_bytes: int) -> None:
        now = time.monotonic()
        if not self.active or now - self.last < 0.5:
            return
        self.last = now
        rate = sql_bytes / max(now - self.start, 1e-6) / 1e6
        print(
            f"\r  dumped {sql_bytes / 1e6:,.1f} MB SQL -> {gz_bytes / 1e6:,.1f} MB gzip  ({rate:,.0f} MB/s)   ",
            end="",
            file=sys.stderr,
            flush=True,
        )

    def done(self) -> None:
        if self.active and self.last:
            print(file=sys.stderr)


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_migrate(args: argparse.Namespace) -> int:
    from dbbackup.pg import connect as db
    from dbbackup.pg.app_settings import adopt_notification_email
    from dbbackup.pg.migrate import migrate
    from dbbackup.settings import Settings

    settings = Settings.from_env()
    with db.connect(settings.database_url, secrets=settings.secrets) as conn:
        report = migrate(conn)
        if settings.notification_email and adopt_notification_email(conn, settings.notification_email):
            print(f"backup_notification_email set to {settings.notification_email} (BACKUP_NOTIFICATION_EMAIL)")
    for version in report.applied:
        print(f"applied {version}")
    if report.already:
        print(f"already applied: {', '.join(report.already)}")
    for notice in report.notices:
        print(f"note: {notice}")
    return EXIT_OK


def cmd_backup(args: argparse.Namespace) -> int:
    from dbbackup import wiring
    from dbbackup.settings import Settings

    settings = Settings.from_env()
    progress = _Progress()
    signal.signal(signal.SIGTERM, _sigterm)
    outcome = wiring.backup_job(settings, progress=progress).run("manual" if args.manual else "scheduled")
    progress.done()
    if args.json:
        print(json.dumps(outcome.as_dict(), indent=2))
    elif outcome.status == "success":
        print(
            f"backup {outcome.backup_log_id} succeeded: {outcome.path} "
            f"({outcome.file_size_bytes:,} bytes gzip from {outcome.sql_bytes:,} bytes SQL, "
            f"{outcome.seconds:.1f} s, md5 {outcome.md5}, {outcome.tables} tables)"
        )
        for line in outcome.warnings:
            error_line(f"warning: {line}", level=logging.WARNING)
    elif outcome.status == "skipped":
        print(f"backup skipped: {outcome.reason}")
    else:
        error_line(f"backup {outcome.backup_log_id} failed: {outcome.reason}")
    return EXIT_FAILED if outcome.status == "failed" else EXIT_OK


def _row(r: dict[str, Any]) -> dict[str, Any]:
    return {k: (iso(v) if hasattr(v, "isoformat") else str(v) if k == "id" else v) for k, v in r.items()}


def cmd_logs(args: argparse.Namespace) -> int:
    from dbbackup.pg import connect as db
    from dbbackup.pg.backup_log import PgBackupLog
    from dbbackup.settings import Settings

    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    settings = Settings.from_env()
    with db.connect(settings.database_url, secrets=settings.secrets) as conn:
        rows = PgBackupLog(conn, settings.database_url, settings.secrets).recent(args.status, args.limit)
    if args.json:
        print(json.dumps([_row(r) for r in rows], indent=2))
        return EXIT_OK
    if not rows:
        print("no backups match" + (f" (status {args.status})" if args.status else ""))
        return EXIT_OK
    # Times in BACKUP_TIMEZONE with their offset: the file names are in that zone too, so a row's
    # time and its file's name read alike.
    tz = settings.timezone
    print(f"{'started':<25}  {'status':<11} {'type':<9} {'size (bytes)':>14}  file  id  reason")
    for r in rows:
        started = r["started_at"].astimezone(tz).isoformat(sep=" ", timespec="seconds") if r["started_at"] else "-"
        size = f"{r['file_size_bytes']:,}" if r["file_size_bytes"] is not None else "-"
        extra = one_line(r["failure_reason"] or "")
        print(
            f"{started:<25}  {r['status']:<11} {r['backup_type']:<9} {size:>14}  "
            f"{r['file_name']}  {r['id']}  {extra}".rstrip()
        )
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from dbbackup.core.manifest import rows_of
    from dbbackup.core.seek_index import index_of
    from dbbackup.pg import connect as db
    from dbbackup.pg.backup_log import PgBackupLog
    from dbbackup.restore.sources import UUID_RE
    from dbbackup.settings import Settings

    if args.id != "latest" and not UUID_RE.match(args.id):
        raise UsageError(f"{args.id}: not a backup_logs id or 'latest'")
    settings = Settings.from_env()
    with db.connect(settings.database_url, secrets=settings.secrets) as conn:
        found = PgBackupLog(conn, settings.database_url, settings.secrets).whole_row(args.id)
    if found is None:
        raise UsageError(
            "no successful backup in backup_logs" if args.id == "latest" else f"no backup_logs row {args.id}"
        )
    shown = _row(found)
    if args.json:
        print(json.dumps(shown, indent=2))
        return EXIT_OK
    manifest = shown.pop("manifest", None)
    width = max(len(k) for k in shown)
    for key, value in shown.items():
        print(f"{key + ':':<{width + 1}} {'-' if value is None else value}")
    if rows_of(manifest) is None:
        print("manifest: none (taken before manifests were recorded, or not recorded)")
        return EXIT_OK
    tables = manifest["tables"]
    print(f"manifest: {len(tables)} tables, {sum(t['rows'] for t in tables.values()):,} rows")
    name_width = max([len(n) for n in tables] + [5])
    print(f"  {'table':<{name_width}} {'rows':>14} {'bytes':>16}")
    for name, entry in tables.items():
        print(f"  {name:<{name_width}} {entry['rows']:>14,} {entry['bytes']:>16,}")
    index = index_of(manifest)
    if index is not None:
        how = "encrypted: restore --table streams it" if index.encrypted else "restore --table reads by range"
        parted = {m.tables[0] for m in index.members if m.resume}
        parts = f", {len(parted)} table(s) in parts for restore --jobs" if parted else ""
        print(f"seekable: {len(index.members)} gzip members{parts} ({how})")
    return EXIT_OK


def _identities(args: argparse.Namespace) -> Identities | None:
    import os

    from dbbackup.wiring import age_identities

    return age_identities(args.identity, os.environ)


def cmd_restore(args: argparse.Namespace) -> int:
    from dbbackup.restore.restorer import restore
    from dbbackup.wiring import resolve_source

    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: expected 1 or more sessions")
    if args.jobs > 1:
        clashing = [
            flag
            for flag, given in (
                ("--force", args.force),
                ("--no-single-transaction", not args.single_transaction),
                ("--skip-managed-errors", args.skip_managed_errors),
            )
            if given
        ]
        if clashing:
            raise UsageError(f"--jobs > 1 restores into an empty database only, without {', '.join(clashing)}")
    if args.jobs > 1 and (args.tables or args.schemas):
        raise UsageError("--jobs > 1 restores a whole backup; --table/--schema restore in one session")
    signal.signal(signal.SIGTERM, _sigterm)
    if args.tables or args.schemas:
        return _restore_tables(args)
    if args.into_schema:
        raise UsageError("--into-schema goes with --table or --schema")
    identities = _identities(args)
    source = resolve_source(args.source, from_target=args.from_target)
    if args.jobs > 1:
        from dbbackup.restore.parallel import restore_parallel

        result = restore_parallel(source, args.target, args.jobs, create=args.create, identities=identities)
    else:
        result = restore(
            source,
            args.target,
            single_transaction=args.single_transaction,
            force=args.force,
            create=args.create,
            identities=identities,
            skip_managed_errors=args.skip_managed_errors,
        )
    for message in result.messages:
        print(message, file=sys.stderr)
    if args.json:
        print(json.dumps(result.__dict__, indent=2))
    else:
        print(
            f"restored {result.source}: {result.sql_bytes:,} bytes of SQL from {result.gz_bytes:,} bytes gzip "
            f"{'(decrypted with the age identity) ' if result.encrypted else ''}in {result.seconds:.1f} s"
            + (f" over {result.jobs} sessions, read {result.read}" if result.jobs > 1 else "")
        )
    return EXIT_OK


def _restore_tables(args: argparse.Namespace) -> int:
    from dbbackup.restore.tables import restore_tables
    from dbbackup.wiring import resolve_source

    if args.force or not args.single_transaction or args.skip_managed_errors:
        raise UsageError(
            "--table/--schema restore in one transaction into tables that do not exist yet:"
            " --force, --no-single-transaction and --skip-managed-errors do not apply"
        )
    identities = _identities(args)
    result = restore_tables(
        resolve_source(args.source, from_target=args.from_target),
        args.target,
        tables=args.tables,
        schemas=args.schemas,
        into_schema=args.into_schema,
        identities=identities,
        create=args.create,
    )
    for message in result.messages:
        print(message, file=sys.stderr)
    if args.json:
        print(json.dumps(result.__dict__, indent=2))
        return EXIT_OK
    where = f" into schema {result.into_schema}" if result.into_schema else ""
    how = "by range (the file's index)" if result.indexed else "streaming the whole file"
    print(
        f"restored {len(result.tables)} table(s){where} from {result.source}: {', '.join(result.tables)};"
        f" read {result.gz_bytes:,} bytes {how} in {result.seconds:.1f} s"
    )
    for skipped in result.skipped:
        print(f"foreign key not restored (its table was not restored): {skipped}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from dbbackup.restore.verify import verify
    from dbbackup.wiring import resolve_source

    report = verify(
        resolve_source(args.source, from_target=args.from_target),
        restore_test=args.restore_test,
        identities=_identities(args),
    )
    if args.json:
        print(
            json.dumps(
                {
                    "source": report.source,
                    "ok": report.ok,
                    "contents_checked": report.contents_checked,
                    "checks": [c.__dict__ for c in report.checks],
                    "table_count": report.table_count,
                    "rows": report.rows,
                    "tables": report.tables,
                    "seconds": report.seconds,
                },
                indent=2,
            )
        )
    else:
        for check in report.checks:
            mark = "skip" if check.skipped else "ok  " if check.ok else "FAIL"
            print(f"{mark} {check.name:<9} {check.detail}")
        verdict = "verified" if report.ok else "NOT a usable backup"
        if report.ok and not report.contents_checked:
            verdict = "the stored file is intact; its contents were NOT checked (encrypted, no identity given)"
        print(f"{report.source}: {verdict} ({report.seconds:.1f} s)")
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_cleanup(args: argparse.Namespace) -> int:
    from dbbackup import wiring
    from dbbackup.settings import Settings

    result = wiring.cleanup_job(Settings.from_env()).run(dry_run=args.dry_run)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        verb = "would delete" if result.dry_run else "deleted"
        for name in result.deleted:
            print(f"{verb} {name}")
        for name in result.kept_by_safety_floor:
            print(f"kept {name} (safety floor: one of the newest {result.keep_min} successful backups)")
        for name in result.kept_weekly:
            print(f"kept {name} (weekly: the newest of its ISO week, one of the last {result.keep_weekly})")
        for name in result.kept_monthly:
            print(f"kept {name} (monthly: the newest of its month, one of the last {result.keep_monthly})")
        for name in result.kept_future:
            print(f"kept {name} (dated in the future)")
        for name in result.kept_in_progress:
            print(f"kept {name} (its backup_logs row is in_progress)")
        for kept in result.kept_retained:
            print(f"kept {kept['file']} (its store still retains it: {kept['reason']})")
        for blob in result.blobs_deleted:
            print(f"{verb} Storage blob {blob}")
        if result.blobs_skipped:
            print(f"Storage blobs not collected: {result.blobs_skipped}")
        for failure in result.failed:
            error_line(f"FAILED {failure['file']}: {failure['reason']}")
        if result.missed_run:
            error_line("warning: no successful backup within BACKUP_MAX_AGE_HOURS", level=logging.WARNING)
        print(f"cleanup {result.status}{' (dry run)' if result.dry_run else ''}: {result.summary()}")
    return EXIT_OK if result.status == "success" else EXIT_FAILED


def cmd_storage_restore(args: argparse.Namespace) -> int:
    import os

    from dbbackup import wiring
    from dbbackup.settings import Settings

    report = wiring.storage_restore(Settings.from_env(), os.environ, args.id, args.bucket, args.endpoint)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        created = f", created {', '.join(report.buckets_created)}" if report.buckets_created else ""
        print(
            f"storage-restore of backup {report.backup_log_id} into {report.endpoint}: {report.objects} objects in"
            f" {report.buckets} buckets{created}; restored {report.restored} ({report.bytes_written:,} bytes),"
            f" skipped {report.skipped} (already there, same bytes)"
        )
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from dbbackup import wiring
    from dbbackup.settings import Settings

    health = wiring.health(Settings.from_env())
    # Not OK exits 1 (as a failed backup does), so cron and monitoring can act on the exit code alone.
    verdict = EXIT_OK if health.healthy else EXIT_FAILED
    if args.json:
        print(json.dumps(health.as_dict(), indent=2))
        return verdict

    def rate(value: float | None, attempts: int) -> str:
        return "no attempts" if value is None else f"{value:.1f} % of {attempts}"

    size = "-" if health.last_backup_bytes is None else f"{health.last_backup_bytes:,} bytes"
    if health.size_change_bytes is not None:
        size += f" ({health.size_change_bytes:+,} bytes, {health.size_change_percent:+.1f} % vs the previous)"
    print(f"health:               {'OK' if health.healthy else 'ATTENTION'}")
    print(
        f"last success:         {health.last_success_at or 'never'}"
        + (f" ({health.last_success_age_hours:.1f} h ago)" if health.last_success_age_hours is not None else "")
    )
    print(f"last failure:         {health.last_failure_at or 'none'}  {health.last_failure_reason or ''}".rstrip())
    print(f"consecutive failures: {health.consecutive_failures}")
    print(f"success rate 7 days:  {rate(health.success_rate_7d, health.attempts_7d)}")
    print(f"success rate 30 days: {rate(health.success_rate_30d, health.attempts_30d)}")
    print(f"last backup size:     {size}")
    if health.last_size_warning:
        print(f"size warning:         {health.last_size_warning}")
    if health.last_verified_at:
        age = health.last_verified_backup_age_hours
        print(
            f"last restore drill:   {health.last_verify_status} at {health.last_verified_at}:"
            f" {health.last_verified_file}" + (f" (a backup {age / 24:.1f} days old now)" if age is not None else "")
        )
    else:
        print("last restore drill:   never (verify_backup has not run)")
    return verdict


def cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dbbackup.demo import run_demo

    # A folder of its own: in BACKUP_LOCAL_ROOT the demo's files would sit among real backups and
    # take slots of the retention's safety floor.
    return run_demo(Path(args.local_root or DEMO_ROOT).absolute())


COMMANDS = {
    "demo": cmd_demo,
    "migrate": cmd_migrate,
    "backup": cmd_backup,
    "logs": cmd_logs,
    "restore": cmd_restore,
    "verify": cmd_verify,
    "cleanup": cmd_cleanup,
    "status": cmd_status,
    "show": cmd_show,
    "storage-restore": cmd_storage_restore,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if json_wanted():
        # For a log collector (LOG_FORMAT=json, Cloud Run): the records too, one JSON object a line.
        structured_log.configure(logging.INFO)
    else:
        # On a terminal, stderr is one line per error, printed here; log records (alert delivery
        # notes, log-only alerts) would otherwise reach stderr through logging's last-resort handler.
        logging.getLogger("dbbackup").addHandler(logging.NullHandler())
    try:
        return COMMANDS[args.command](args)
    except BackupError as exc:  # the class says the exit code and the word (error / busy / failed)
        error_line(f"dbbackup: {exc.cli_label}: {one_line(str(exc))}")
        return exc.exit_code
    except KeyboardInterrupt:
        error_line("dbbackup: interrupted")
        return 130
    except Exception as exc:  # last resort: still one redacted line, never a traceback
        import os

        error_line(
            f"dbbackup: unexpected error: {type(exc).__name__}: "
            f"{one_line(redact(str(exc), [os.environ.get('DATABASE_URL', '')]))}"
        )
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
