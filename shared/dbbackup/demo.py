"""`dbbackup demo`: the whole product on an embedded default, with no external service.

A throwaway PostgreSQL from the bundled binaries (temp dir, free port, removed afterwards even on
Ctrl-C), a sample invoicing database, then migrate -> backup to the local folder -> verify with a
restore test -> restore into a second database -> compare the two.
"""

from __future__ import annotations

import signal
import time
from importlib import resources
from pathlib import Path

from dbbackup import wiring
from dbbackup.errors import BackupFailed
from dbbackup.pg import catalog
from dbbackup.pg import connect as db
from dbbackup.pg import migrate as migrations
from dbbackup.pg.catalog import table_digests
from dbbackup.pg.embedded import EmbeddedPostgres
from dbbackup.restore.restorer import restore
from dbbackup.restore.verify import verify
from dbbackup.settings import Settings

# Our own tables: written around the dump (backup_copies records the copies after the snapshot
# was taken), so the restored copy differs from the live one by design.
OWN_TABLES = ("backup_logs", "backup_copies", "dbbackup_migrations")


def _step(text: str) -> float:
    print(f"== {text}", flush=True)
    return time.monotonic()


def run_demo(local_root: Path) -> int:
    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    started = time.monotonic()
    with EmbeddedPostgres() as pg:
        print(f"== throwaway PostgreSQL 18.6 (bundled) on 127.0.0.1:{pg.port}, data in {pg.base}")
        catalog.create_databases(pg.url(), "invoicing", "invoicing_restored")
        source_url, target_url = pg.url("invoicing"), pg.url("invoicing_restored")

        t = _step("loading the sample invoicing database")
        sql = (resources.files("dbbackup") / "sample" / "invoicing.sql").read_text()
        catalog.run_script(source_url, sql)
        with db.connect(source_url, attempts=1) as conn:
            report = migrations.migrate(conn)
        print(f"   loaded in {time.monotonic() - t:.1f} s; migrate applied {len(report.applied)} migrations")

        settings = Settings.from_env({"DATABASE_URL": source_url, "BACKUP_LOCAL_ROOT": str(local_root)})
        _step(f"backup to {local_root}")
        outcome = wiring.backup_job(settings).run("manual", triggered_by="demo")
        if outcome.status != "success":
            print(f"   backup failed: {outcome.reason}")
            return 1
        file = local_root / str(outcome.file_id)
        ratio = (outcome.sql_bytes or 0) / max(outcome.file_size_bytes or 1, 1)
        print(
            f"   {file}\n   {outcome.file_size_bytes:,} bytes gzip from {outcome.sql_bytes:,} bytes SQL "
            f"(ratio {ratio:.1f}x) in {outcome.seconds:.1f} s"
        )

        _step("verify --restore-test")
        check = verify(wiring.resolve_source(str(file), lambda: settings), restore_test=True)
        for c in check.checks:
            print(f"   {'ok  ' if c.ok else 'FAIL'} {c.name:<9} {c.detail}")
        if not check.ok:
            return 1

        t = _step("restore into a second database")
        try:
            result = restore(wiring.resolve_source(str(file), lambda: settings), target_url)
        except BackupFailed as exc:
            print(f"   restore failed: {exc}")
            return 1
        print(f"   {result.sql_bytes:,} bytes of SQL restored in {result.seconds:.1f} s")

        _step("compare the original and the restored database")
        before, after = table_digests(source_url), table_digests(target_url)
        ours = {t for t in before if t.split(".")[-1] in OWN_TABLES}
        differ = sorted(t for t in set(before) | set(after) if t not in ours and before.get(t) != after.get(t))
        rows = sum(before[t][0] for t in before if t not in ours)
        for table in differ:
            print(f"   DIFFERENT: {table}: {before.get(table)} vs {after.get(table)}")
        print(
            f"   {len(before) - len(ours)} tables, {rows:,} rows compared: "
            f"{'identical' if not differ else f'{len(differ)} differ'}"
            f" (backup_logs differs by design: the restored copy shows this backup as success)"
        )
        print(
            f"\nsummary: {file.name}  {outcome.file_size_bytes:,} bytes  ratio {ratio:.1f}x  "
            f"backup {outcome.seconds:.1f} s  total {time.monotonic() - started:.1f} s  "
            f"{rows:,} rows {'identical' if not differ else 'DIFFER'}"
        )
        return 0 if not differ else 1
