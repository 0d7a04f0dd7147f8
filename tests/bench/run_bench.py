"""Benchmark ``dbbackup backup`` / ``dbbackup restore`` against plain shell pipelines.

Usage (from the repository root)::

    .venv/bin/python tests/bench/run_bench.py [--size-gb 1.0] [--rounds 3] [--restore-rounds N]
        [--database-url URL] [--json-out PATH] [--sizes 0.25,1.0] [--only seekable]

1. Builds (once, then reuses) a database holding about ``--size-gb`` of table data: pgbench tables
   (``pgbench -i``) plus an invoice-like table of text and jsonb. By default it lives in a persistent
   server started from the bundled binaries (data directory under ~/.cache/dbbackup-bench, or
   /tmp/dbbackup-bench as root); ``--database-url`` uses an existing server instead.
2. Dumps it with, in turn within every round: (a) pg_dump > /dev/null, the floor; (b) pg_dump | gzip -6;
   (c) pg_dump | pigz (when installed); (d) dbbackup backup. All use the bundled pg_dump.
   (e) dbbackup backup with BACKUP_AGE_RECIPIENTS set: the same backup, age-encrypted.
3. Restores dbbackup's file with ``dbbackup restore`` and with ``gunzip -c | psql``, and the (e) file
   with ``dbbackup restore --identity``.
   (f) dbbackup backup to three targets at once (local, S3 on moto's server, GCS on the emulator,
   both in this process): one dump, three copies; its peak RSS is what multi-target costs.
4. With ``--sizes``, repeats (d) and (e) at each size, to show our peak RSS does not grow with the
   database.
5. (g) dbbackup backup with BACKUP_SEEKABLE=off: the single-member writer, the reference for what a
   seekable file (a gzip member per section and large table, and its index) costs in bytes and time.
   ``--only seekable`` runs just (d) and (g), alternating which goes first, at a size of your choice.

Peak RSS is the largest sum of VmRSS over the spawned process and all its descendants (the
database server is not one), polled every 20 ms from /proc. Nothing is asserted: the targets are
reported as met or not. MB in the output means MiB (2**20 bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pwd
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import psycopg.conninfo

from dbbackup.pg import binaries as pgbin
from dbbackup.pg.embedded import free_port

HERE = Path(__file__).resolve().parent
DATA_VERSION = 2  # bump when the generated data changes; cached databases are then rebuilt
PGBENCH_SHARE = 0.3  # part of the table data that is pgbench's numeric rows
PGBENCH_BYTES_PER_SCALE = 13_500_000  # pgbench_accounts + tellers + branches per scale unit
BATCH_ROWS = 20_000
MB = 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")
SERVER_CONF = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "256MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "30min",
}
TARGETS = {
    "wall_vs_floor": 1.15,  # (d) wall <= 1.15 x (a)
    "bytes_vs_gzip6": 1.15,  # (d) output <= 1.15 x (b)
    "rss_mb": 100,  # (d) peak RSS
    "rss_flat": 0.10,  # (d) own peak RSS within +-10% across --sizes
    "encrypted_wall": 1.05,  # (e) wall <= 1.05 x (d)
    "encrypted_rss_mb": 10,  # (e) own peak RSS within 10 MB of (d)
    "three_targets_rss_mb": 150,  # (f) own peak RSS with three targets
    "seekable_bytes": 1.01,  # (d) output <= 1.01 x (g), the single-member file
    "seekable_wall": 1.03,  # (d) wall <= 1.03 x (g)
    "jobs2_vs_psql": 0.90,  # restore --jobs 2 wall <= 0.90 x gunzip | psql
    "jobs2_vs_pg_restore": 1.15,  # restore --jobs 2 wall <= 1.15 x pg_restore -j 2
}

# --------------------------------------------------------------------------- data generation


def sql_array(words: str) -> str:
    """An SQL text[] literal of the |-separated words."""
    return "ARRAY[" + ", ".join("'" + w.replace("'", "''") + "'" for w in words.split("|")) + "]"


FIRST = "Anna|Lukas|Sofia|Jonas|Mia|Noah|Emma|Liam|Olivia|Mateo|Chloé|Hugo|Lea|Finn|Isabel|Pedro|Marta|Tomasz|Eva|Jan"
LAST = (
    "Schmidt|Müller|García|Rossi|Dubois|Jansen|Kowalski|Smith|Johnson|Brown|Novak|Silva|Fernández|Bianchi|"
    "Martin|Bakker|Nowak|Wilson|Taylor|Lefebvre|Schneider|Romano|López|Visser|Moreau|Fischer|Costa|Horvat"
)
COMPANY = "GmbH|Ltd|LLC|S.A.|B.V.|& Sons|Consulting|Logistics|Trading Co.|AG"
MAIL = "gmail.com|outlook.com|web.de|yahoo.fr|proton.me|icloud.com|gmx.net|libero.it"
STREETS = (
    "Main Street|Hauptstraße|Rue de la Paix|Calle Mayor|Via Roma|Kerkstraat|High Street|Bahnhofstraße|"
    "Avenue des Champs|Oak Avenue|Market Square|Station Road|Mill Lane"
)
CITIES = (
    "Berlin|Hamburg|Munich|Paris|Lyon|Madrid|Barcelona|Rome|Milan|Amsterdam|Rotterdam|London|Manchester|Warsaw|"
    "Krakow|Lisbon|Porto|Vienna|Zagreb|Dublin"
)
COUNTRIES = "DE|FR|ES|IT|NL|GB|PL|PT|AT|HR|IE|BE"
PRODUCTS = (
    "Consulting services|Software licence, annual subscription|Cloud hosting, standard plan|On-site support visit|"
    "Hardware maintenance contract|Training workshop (per participant)|Data migration package|"
    "Custom development hours|Domain renewal|TLS certificate, wildcard|Managed backup service|Printing and binding|"
    "Office supplies|Freight and handling|Travel expenses, reimbursed at cost|Design revision round|"
    "Translation services (per 1,000 words)|Project management|Security audit and report|"
    "API usage above the included quota"
)
SKU = "SRV|LIC|HST|SUP|HWM|TRN|MIG|DEV|DOM|SEC|OFF|FRT"
NOTES = (
    "Payment due within 30 days of the invoice date.|Thank you for your business.|"
    "Please quote the invoice number as the payment reference.|"
    "Late payments are subject to interest of 1% per month.|Goods remain our property until paid in full.|"
    "Reverse charge: VAT to be accounted for by the recipient.|Delivered as agreed in the framework contract.|"
    "A discount of 2% applies if paid within 10 days.|Services rendered in the period stated above.|"
    "This invoice replaces the draft sent earlier.|"
    "Bank transfer to the account shown below; card payments are not accepted.|"
    "Partial delivery; the remaining items follow in a separate shipment.|"
    "Prices include the agreed volume discount.|Customer requested paper copies by post."
)

SCHEMA_SQL = """
DROP TABLE IF EXISTS bench_meta, invoices;
CREATE TABLE invoices (
    id bigserial PRIMARY KEY,
    invoice_number text NOT NULL,
    issued_at timestamptz NOT NULL,
    due_on date NOT NULL,
    status text NOT NULL,
    currency char(3) NOT NULL,
    customer jsonb NOT NULL,
    line_items jsonb NOT NULL,
    total numeric(12, 2) NOT NULL,
    notes text
);
CREATE FUNCTION pg_temp.pick(a text[]) RETURNS text LANGUAGE sql VOLATILE
    AS $$ SELECT a[1 + floor(random() * cardinality(a))::int] $$;
"""

# One batch of invoices; every LATERAL refers to g so that it is evaluated again for each row.
INSERT_SQL = f"""
INSERT INTO invoices (invoice_number, issued_at, due_on, status, currency, customer, line_items, total, notes)
SELECT format('INV-%s-%s', to_char(t.issued, 'YYYY'), lpad(g::text, 8, '0')),
       t.issued, (t.issued + interval '30 days')::date,
       pg_temp.pick(ARRAY['paid', 'paid', 'paid', 'sent', 'overdue', 'draft', 'void']),
       pg_temp.pick(ARRAY['EUR', 'EUR', 'USD', 'GBP']),
       jsonb_build_object(
           'name', c.first || ' ' || c.last,
           'company', c.last || ' ' || pg_temp.pick({sql_array(COMPANY)}),
           'email', lower(c.first || '.' || c.last) || (g % 97) || '@' || pg_temp.pick({sql_array(MAIL)}),
           'phone', '+' || (30 + g % 20) || ' ' || (100 + floor(random() * 900)::int) || ' '
                    || lpad(floor(random() * 1000000)::int::text, 6, '0'),
           'vat_id', pg_temp.pick({sql_array(COUNTRIES)}) || lpad(floor(random() * 1e9)::bigint::text, 9, '0'),
           'address', jsonb_build_object(
               'street', (1 + floor(random() * 200)::int) || ' ' || pg_temp.pick({sql_array(STREETS)}),
               'city', pg_temp.pick({sql_array(CITIES)}),
               'postcode', lpad(floor(random() * 99999)::int::text, 5, '0'),
               'country', pg_temp.pick({sql_array(COUNTRIES)}))),
       li.items, li.total,
       concat_ws(' ', pg_temp.pick({sql_array(NOTES)}), pg_temp.pick({sql_array(NOTES)}),
                 CASE WHEN random() < 0.3 THEN 'PO ' || (100000 + g % 900000) END)
FROM generate_series({{lo}}::bigint, {{hi}}::bigint) AS g
CROSS JOIN LATERAL (
    SELECT timestamptz '2021-01-01' + random() * interval '1500 days' + g * interval '0' AS issued
) AS t
CROSS JOIN LATERAL (
    SELECT pg_temp.pick({sql_array(FIRST)}) || left(g::text, 0) AS first,
           pg_temp.pick({sql_array(LAST)}) AS last
) AS c
CROSS JOIN LATERAL (
    SELECT jsonb_agg(jsonb_build_object(
               'sku', sku, 'description', descr || ' (' || to_char(t.issued, 'FMMonth YYYY') || ')',
               'quantity', qty, 'unit_price', price, 'tax_rate', tax, 'amount', qty * price)) AS items,
           round(sum(qty * price * (1 + tax)), 2) AS total
    FROM (
        SELECT pg_temp.pick({sql_array(SKU)}) || '-' || lpad(floor(random() * 10000)::int::text, 4, '0') AS sku,
               pg_temp.pick({sql_array(PRODUCTS)}) AS descr,
               1 + floor(random() * 12)::int AS qty,
               round((5 + random() * 495)::numeric, 2) AS price,
               pg_temp.pick(ARRAY['0.19', '0.19', '0.20', '0.21', '0.07', '0.00'])::numeric AS tax
        FROM generate_series(1, 1 + (g % 6)) AS i
    ) AS x
) AS li
"""

TABLE_BYTES_SQL = """
SELECT coalesce(sum(pg_table_size(c.oid)), 0)::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname = 'public'
"""


def with_dbname(url: str, dbname: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(url)
    params["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})


def dbname_of(url: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(url).get("dbname") or "postgres")


def cached_size(url: str, size_gb: float) -> int | None:
    """Table bytes of a complete earlier build of this size, else None."""
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT table_bytes FROM bench_meta WHERE size_gb = %s AND data_version = %s", (size_gb, DATA_VERSION)
            ).fetchone()
    except psycopg.Error:
        return None
    return int(row[0]) if row else None


def build_database(url: str, size_gb: float) -> int:
    """Fill the database with about size_gb of table data; returns the table bytes."""
    target = int(size_gb * 1024**3)
    scale = max(1, round(target * PGBENCH_SHARE / PGBENCH_BYTES_PER_SCALE))
    print(f"  building {size_gb} GB: pgbench -i -s {scale} ...", flush=True)
    run_checked([str(pgbin.tool("pgbench")), "-i", "-q", "-s", str(scale), "-I", "dtGvp", url])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SCHEMA_SQL)
        conn.execute("SELECT setseed(0.42)")  # the same data on every build
        lo, batch_rows = 1, max(1000, min(BATCH_ROWS, target // 20_000))  # small batches for small sizes
        while (size := conn.execute(TABLE_BYTES_SQL).fetchone()[0]) < target:  # type: ignore[index]
            batch = INSERT_SQL.replace("{lo}", str(lo)).replace("{hi}", str(lo + batch_rows - 1))
            conn.execute(batch)
            lo += batch_rows
            if (lo // batch_rows) % 10 == 0:
                print(f"  ... {size / MB:,.0f} of {target / MB:,.0f} MB", flush=True)
        conn.execute("VACUUM ANALYZE invoices")
        size = conn.execute(TABLE_BYTES_SQL).fetchone()[0]  # type: ignore[index]
        # Written last: its row says the build completed.
        conn.execute("CREATE TABLE bench_meta (size_gb numeric, data_version int, table_bytes bigint, at timestamptz)")
        conn.execute("INSERT INTO bench_meta VALUES (%s, %s, %s, now())", (size_gb, DATA_VERSION, size))
    return int(size)


# --------------------------------------------------------------------------- the server


def run_checked(argv: list[str], env: dict[str, str] | None = None, **kwargs: Any) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, **kwargs)
    if proc.returncode != 0:
        raise SystemExit(f"{Path(argv[0]).name} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return str(proc.stdout)


@dataclass
class Server:
    admin_url: str  # the maintenance database
    stop_argv: list[str] | None = None  # pg_ctl stop, when we started it
    run_kwargs: dict[str, Any] = field(default_factory=dict)

    def url(self, dbname: str) -> str:
        return with_dbname(self.admin_url, dbname)

    def execute(self, sql: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql)

    def database_exists(self, dbname: str) -> bool:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            return bool(conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone())

    def stop(self) -> None:
        if self.stop_argv:
            subprocess.run(self.stop_argv, capture_output=True, check=False, **self.run_kwargs)


def start_cached_server() -> Server:
    """A persistent server from the bundled binaries; its data directory survives between runs."""
    root = Path("/tmp/dbbackup-bench") if os.geteuid() == 0 else Path.home() / ".cache" / "dbbackup-bench"
    data = root / "data"
    kwargs: dict[str, Any] = {}
    root.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        user = pwd.getpwnam(os.environ.get("DBBACKUP_EMBEDDED_USER", "postgres"))
        os.chown(root, user.pw_uid, user.pw_gid)
        kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    os.chmod(root, 0o700)
    pg_ctl = str(pgbin.tool("pg_ctl"))
    if not (data / "PG_VERSION").exists():
        print(f"initdb {data}", flush=True)
        shutil.rmtree(data, ignore_errors=True)
        initdb = [str(pgbin.tool("initdb")), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
        run_checked([*initdb, "--locale=C", "--no-sync"], **kwargs)
        with open(data / "postgresql.auto.conf", "a") as fh:
            fh.writelines(f"{k} = {v}\n" for k, v in SERVER_CONF.items())
    if subprocess.run([pg_ctl, "-D", str(data), "status"], capture_output=True, check=False, **kwargs).returncode == 0:
        port = int((data / "postmaster.pid").read_text().splitlines()[3])  # left running by an interrupted run
        print(f"reusing the running server on port {port}", flush=True)
    else:
        port = free_port()
        start = [pg_ctl, "-D", str(data), "-w", "-t", "120", "-l", str(root / "server.log"), "-o", f"-p {port}"]
        run_checked([*start, "start"], **kwargs)
    return Server(
        admin_url=f"postgresql://postgres@127.0.0.1:{port}/postgres",
        stop_argv=[pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"],
        run_kwargs=kwargs,
    )


def ensure_database(server: Server, dbname: str, size_gb: float) -> tuple[str, int]:
    """URL and table bytes of a database of size_gb, built unless an earlier run left it."""
    if not server.database_exists(dbname):
        server.execute(f'CREATE DATABASE "{dbname}"')
    url = server.url(dbname)
    size = cached_size(url, size_gb)
    if size is None:
        started = time.perf_counter()
        size = build_database(url, size_gb)
        print(f"  built {dbname}: {size / MB:,.0f} MB of table data in {time.perf_counter() - started:,.0f} s")
    else:
        print(f"reusing {dbname}: {size / MB:,.0f} MB of table data", flush=True)
    run_checked([dbbackup_cli(), "migrate"], env=bench_env(DATABASE_URL=url))
    return url, size


def dbbackup_cli() -> str:
    beside = Path(sys.executable).parent / "dbbackup"
    return str(beside) if beside.exists() else (shutil.which("dbbackup") or "dbbackup")


def bench_env(**extra: str) -> dict[str, str]:
    """Our environment without any BACKUP_* / PG_DUMP_PATH override, so the defaults apply."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKUP_", "PG_DUMP_PATH", "DATABASE_URL"))}
    return env | extra


# --------------------------------------------------------------------------- measuring


def read_text(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(comm, utime + stime in ticks) of a process."""
    text = read_text(f"/proc/{pid}/stat")
    if not text:
        return None
    comm, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
    return comm, int(rest[11]) + int(rest[12])


def children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:
        kids += [int(p) for p in (read_text(f"/proc/{pid}/task/{tid}/children") or "").split()]
    return kids


def exe_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


class TreeSampler(threading.Thread):
    """Polls /proc every 20 ms: the sum of VmRSS over a process and its descendants, the
    process's own VmHWM, and CPU ticks per process, including the server backends of `dbname`."""

    def __init__(self, root: int, dbname: str | None) -> None:
        super().__init__(daemon=True)
        self.root, self.dbname = root, dbname
        self.done = threading.Event()
        self.tree_peak = 0
        self.root_hwm = 0
        self.ticks: dict[int, tuple[str, int, int]] = {}  # pid -> (label, first seen, last seen)
        self.backends: set[int] = set()
        self.preexisting: set[int] = set()

    def run(self) -> None:
        self.preexisting = {int(p) for p in os.listdir("/proc") if p.isdigit()}
        n = 0
        while True:
            if n % 5 == 0:  # backends come and go; look for them every 100 ms
                self.find_backends()
            self.sample()
            n += 1
            if self.done.wait(0.02):
                return

    def find_backends(self) -> None:
        if not self.dbname:
            return
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in self.backends and read_text(f"/proc/{entry}/comm") == "postgres\n":
                cmdline = (read_text(f"/proc/{entry}/cmdline") or "").replace("\0", " ")
                if f" {self.dbname} " in cmdline:
                    self.backends.add(int(entry))

    def sample(self) -> None:
        tree, todo, rss = [], [(self.root, "")], 0
        while todo:
            pid, parent_exe = todo.pop()
            tree.append(pid)
            exe = exe_of(pid)
            todo += [(kid, exe) for kid in children(pid)]
            statm = read_text(f"/proc/{pid}/statm")
            # A child forked but not yet exec'd still shows its parent's memory: do not count it twice.
            if statm and not (parent_exe and exe == parent_exe):
                rss += int(statm.split()[1]) * PAGE
        self.tree_peak = max(self.tree_peak, rss)
        for line in (read_text(f"/proc/{self.root}/status") or "").splitlines():
            if line.startswith("VmHWM:"):
                self.root_hwm = max(self.root_hwm, int(line.split()[1]) * 1024)
        for pid in [*tree, *self.backends]:
            stat = proc_stat(pid)
            if stat:
                label = "server backend" if pid in self.backends else stat[0]
                first = self.ticks.get(pid, (label, stat[1] if pid in self.preexisting else 0, 0))[1]
                self.ticks[pid] = (label, first, stat[1])

    def cpu_by_process(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for label, first, last in self.ticks.values():
            out[label] = round(out.get(label, 0.0) + (last - first) / TICK, 2)
        return out


@dataclass
class Run:
    method: str
    wall_s: float
    tree_rss_peak: int
    own_rss_peak: int  # VmHWM of the spawned process itself
    cpu_s: float  # user + sys of the whole tree (getrusage of the reaped children)
    cpu_by_process: dict[str, float]
    out_bytes: int | None = None
    stdout: str = ""


def measure(method: str, argv: list[str], env: dict[str, str] | None = None, dbname: str | None = None) -> Run:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    sampler = TreeSampler(proc.pid, dbname)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    sampler.done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{method}: exit status {proc.returncode}: {err.strip()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(
        method, round(wall, 3), sampler.tree_peak, sampler.root_hwm, round(cpu, 2), sampler.cpu_by_process(), None, out
    )


def shell(command: str) -> list[str]:
    return ["sh", "-c", command]


def dump_methods(url: str, out_dir: Path) -> dict[str, str]:
    dump = shlex.join([str(pgbin.tool("pg_dump")), "--format=plain", "--no-owner", "--no-acl", f"--dbname={url}"])
    methods = {
        "a": f"exec {dump} > /dev/null",
        "b": f"{dump} | gzip -6 > {shlex.quote(str(out_dir / 'dump.sql.gz'))}",
    }
    if shutil.which("pigz"):
        methods["c"] = f"{dump} | pigz > {shlex.quote(str(out_dir / 'dump.sql.gz'))}"
    return methods


LABELS = {
    "a": "(a) pg_dump > /dev/null (floor)",
    "b": "(b) pg_dump | gzip -6",
    "c": "(c) pg_dump | pigz",
    "d": "(d) dbbackup backup",
    "e": "(e) dbbackup backup, age-encrypted",
    "f": "(f) dbbackup backup to local,s3,gcs",
    "g": "(g) dbbackup backup, one member (BACKUP_SEEKABLE=off)",
    "r1": "dbbackup restore",
    "r2": "gunzip -c | psql",
    "r3": "dbbackup restore --identity (e)",
    "r4": "dbbackup restore --jobs 2",
    "r5": "pg_restore -j 2 (pg_dump -Fd)",
    "r6": "dbbackup restore --jobs 2, no index",
}
# The parallel restore's rows; --only parallel-restore runs just these.
PARALLEL_RESTORES = ("r2", "r4", "r5", "r6")


@dataclass(frozen=True)
class AgeKey:
    """A key pair made for this run: (e) encrypts to ``recipient``, r3 decrypts with ``file``."""

    recipient: str
    file: Path


def make_age_key(work: Path) -> AgeKey:
    from pyrage import x25519

    identity = x25519.Identity.generate()
    file = work / "age-key.txt"
    file.write_text(f"{identity}\n")
    file.chmod(0o600)
    return AgeKey(str(identity.to_public()), file)


class ObjectStores:
    """moto's S3 server and the GCS emulator (the tests' own, from tests/fakes), in this process:
    their memory is not the measured process tree's."""

    def __init__(self) -> None:
        sys.path.insert(0, str(HERE.parent))
        from fakes.object_stores import GcsEmulator, MotoS3

        self.s3, self.gcs = MotoS3(), GcsEmulator()

    def env(self) -> dict[str, str]:
        """A fresh bucket in each, so every round writes a new object."""
        s3, gcs = self.s3.env(self.s3.bucket()), self.gcs.env(self.gcs.bucket())
        del gcs["BACKUP_GCS_CHUNK_SIZE"]  # the deployed default, not the tests' small chunks
        return s3 | gcs | {"BACKUP_STORAGE": "local,s3,gcs"}

    def stop(self) -> None:
        self.s3.stop()
        self.gcs.stop()


def run_backup(
    url: str,
    backup_root: Path,
    key: AgeKey | None = None,
    stores: ObjectStores | None = None,
    single_member: bool = False,
) -> Run:
    """(d), (e) with ``key``, (f) with ``stores`` or (g) ``single_member``, into an emptied
    backup_root; the produced file stays until the next call."""
    shutil.rmtree(backup_root, ignore_errors=True)
    backup_root.mkdir()
    env = bench_env(DATABASE_URL=url, BACKUP_LOCAL_ROOT=str(backup_root))
    if key is not None:
        env["BACKUP_AGE_RECIPIENTS"] = key.recipient
    if stores is not None:
        env |= stores.env()
    if single_member:
        env["BACKUP_SEEKABLE"] = "off"
    method = "g" if single_member else "f" if stores else "e" if key else "d"
    run = measure(method, [dbbackup_cli(), "backup", "--json"], env, dbname_of(url))
    outcome = json.loads(run.stdout)
    if outcome["status"] != "success":
        raise SystemExit(f"dbbackup backup: {outcome}")
    run.out_bytes = backup_file(backup_root).stat().st_size
    return run


def backup_file(backup_root: Path) -> Path:
    return next(p for p in backup_root.rglob("DB_Backup_*") if p.name.endswith((".sql.gz", ".sql.gz.age")))


def sql_bytes_of(url: str) -> int:
    """Warm-up run (not counted): the size of the plain dump, which also fills the page cache."""
    dump = shlex.join([str(pgbin.tool("pg_dump")), "--format=plain", "--no-owner", "--no-acl", f"--dbname={url}"])
    return int(run_checked(shell(f"{dump} | wc -c")).strip())


def seekable_rounds(url: str, rounds: int, work: Path) -> list[Run]:
    """(d) and (g) only, alternating which runs first so that drift on a shared machine cancels."""
    runs: list[Run] = []
    for n in range(1, rounds + 1):
        for single in (False, True) if n % 2 else (True, False):
            runs.append(run_backup(url, work / ("backups-one" if single else "backups"), single_member=single))
            print(f"  round {n} {LABELS[runs[-1].method]:<34} {runs[-1].wall_s:7.2f} s", flush=True)
    return runs


def dump_rounds(url: str, rounds: int, work: Path, key: AgeKey, stores: ObjectStores) -> list[Run]:
    out_dir, backup_root = work / "out", work / "backups"
    out_dir.mkdir(exist_ok=True)
    runs: list[Run] = []
    for n in range(1, rounds + 1):
        for method, command in dump_methods(url, out_dir).items():
            run = measure(method, shell(command), dbname=dbname_of(url))
            if method != "a":
                run.out_bytes = (out_dir / "dump.sql.gz").stat().st_size
                (out_dir / "dump.sql.gz").unlink()
            runs.append(run)
            print(f"  round {n} {LABELS[method]:<34} {run.wall_s:7.2f} s", flush=True)
        runs.append(run_backup(url, backup_root))
        print(f"  round {n} {LABELS['d']:<34} {runs[-1].wall_s:7.2f} s", flush=True)
        runs.append(run_backup(url, work / "backups-one", single_member=True))
        print(f"  round {n} {LABELS['g']:<34} {runs[-1].wall_s:7.2f} s", flush=True)
        runs.append(run_backup(url, work / "backups-age", key))
        print(f"  round {n} {LABELS['e']:<34} {runs[-1].wall_s:7.2f} s", flush=True)
        runs.append(run_backup(url, work / "backups-three", stores=stores))
        print(f"  round {n} {LABELS['f']:<34} {runs[-1].wall_s:7.2f} s", flush=True)
    return runs


def directory_dump(url: str, work: Path) -> Path:
    """pg_dump -Fd of the database (with the server's major: the bundled binaries are the bench
    server's), for pg_restore -j; not timed."""
    out = work / "dir-dump"
    shutil.rmtree(out, ignore_errors=True)
    run_checked([str(pgbin.tool("pg_dump")), "-Fd", "--no-owner", "--no-acl", "-f", str(out), f"--dbname={url}"])
    return out


def restore_argv(
    method: str, file: Path, target: str, sealed: Path | None, key: AgeKey | None, dump_dir: Path | None
) -> list[str]:
    psql = str(pgbin.tool("psql"))
    if method == "r1":
        return [dbbackup_cli(), "restore", str(file), "--target", target, "--json"]
    if method == "r3":
        assert sealed is not None and key is not None
        return [dbbackup_cli(), "restore", str(sealed), "--target", target, "--identity", str(key.file)]
    if method in ("r4", "r6"):
        return [dbbackup_cli(), "restore", str(file), "--target", target, "--jobs", "2", "--json"]
    if method == "r5":
        assert dump_dir is not None
        return [str(pgbin.tool("pg_restore")), "-j", "2", "--no-owner", "--no-acl", "-d", target, str(dump_dir)]
    psql_argv = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", target]
    return shell(f"gunzip -c {shlex.quote(str(file))} | {shlex.join(psql_argv)}")


def restore_rounds(
    server: Server,
    source_url: str,
    file: Path,
    rounds: int,
    sealed: Path | None,
    key: AgeKey | None,
    methods: tuple[str, ...] = ("r1", "r2", "r3", "r4", "r5", "r6"),
    dump_dir: Path | None = None,
) -> list[Run]:
    """Each method restores into a fresh database, in an order that turns by one every round
    (drift on a shared machine then touches every method alike)."""
    with psycopg.connect(source_url) as conn:
        expected = conn.execute("SELECT count(*) FROM invoices").fetchone()[0]  # type: ignore[index]
    target_db = "bench_restore_target"
    runs: list[Run] = []
    for n in range(1, rounds + 1):
        turn = (n - 1) % len(methods)
        for method in methods[turn:] + methods[:turn]:
            server.execute(f'DROP DATABASE IF EXISTS "{target_db}" WITH (FORCE)')
            server.execute(f'CREATE DATABASE "{target_db}"')
            # Every method starts from the same state: no dirty pages or WAL of the previous one
            # left for the kernel or the checkpointer to write during this one (not timed).
            server.execute("CHECKPOINT")
            subprocess.run(["sync"], check=False)
            target = server.url(target_db)
            argv = restore_argv(method, file, target, sealed, key, dump_dir)
            # r4 finds the backup's row, and so its seekable index, through DATABASE_URL; r6 has none.
            env = bench_env(DATABASE_URL=source_url) if method == "r4" else bench_env()
            run = measure(method, argv, env, target_db)
            if method in ("r4", "r6"):
                read = json.loads(run.stdout)["read"]
                if read.startswith("by range") != (method == "r4"):
                    raise SystemExit(f"{LABELS[method]}: read {read}")
            with psycopg.connect(target) as conn:
                got = conn.execute("SELECT count(*) FROM invoices").fetchone()[0]  # type: ignore[index]
            if got != expected:
                raise SystemExit(f"{LABELS[method]}: restored {got} invoices, expected {expected}")
            server.execute(f'DROP DATABASE "{target_db}" WITH (FORCE)')
            runs.append(run)
            print(f"  restore round {n} {LABELS[method]:<36} {run.wall_s:7.2f} s", flush=True)
    return runs


def parallel_checks(restores: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    if not all(m in restores for m in ("r2", "r4", "r5")):
        return []
    jobs2 = restores["r4"]["wall_s_median"]
    checks = [
        ("restore --jobs 2 <= 0.90 x gunzip | psql", jobs2 / restores["r2"]["wall_s_median"], TARGETS["jobs2_vs_psql"]),
        (
            "restore --jobs 2 <= 1.15 x pg_restore -j 2",
            jobs2 / restores["r5"]["wall_s_median"],
            TARGETS["jobs2_vs_pg_restore"],
        ),
    ]
    return [{"target": name, "value": round(v, 3), "limit": limit, "met": v <= limit} for name, v, limit in checks]


# --------------------------------------------------------------------------- reporting


def summarize(runs: list[Run], sql_bytes: int) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for method in dict.fromkeys(r.method for r in runs):
        mine = [r for r in runs if r.method == method]
        out = [r.out_bytes for r in mine if r.out_bytes is not None]
        labels = {k for r in mine for k in r.cpu_by_process}
        summary[method] = {
            "label": LABELS[method],
            "rounds": len(mine),
            "wall_s_median": round(statistics.median(r.wall_s for r in mine), 3),
            "wall_s_all": [r.wall_s for r in mine],
            "out_bytes": int(statistics.median(out)) if out else None,
            "compression_ratio": round(sql_bytes / statistics.median(out), 2) if out else None,
            "tree_rss_peak_mb": round(max(r.tree_rss_peak for r in mine) / MB, 1),
            "own_rss_peak_mb": round(max(r.own_rss_peak for r in mine) / MB, 1),
            "cpu_s_median": round(statistics.median(r.cpu_s for r in mine), 2),
            "cpu_s_by_process_median": {
                k: round(statistics.median(r.cpu_by_process.get(k, 0.0) for r in mine), 2) for k in sorted(labels)
            },
        }
    return summary


def cell(text: str) -> str:
    return text.replace("|", "\\|")  # a pipe inside a markdown table cell


def cpu_text(cpu: dict[str, float], wall: float) -> str:
    return ", ".join(f"{k} {v:.1f} s ({v / wall:.0%})" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if v)


def dump_table(summary: dict[str, dict[str, Any]], sql_bytes: int) -> str:
    floor = summary.get("a", summary["d"])["wall_s_median"]
    lines = [
        "| method | median wall s | x floor | output MB | ratio | peak RSS tree MB | own RSS MB | CPU s by process |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for method, s in summary.items():
        out = s["out_bytes"] if s["out_bytes"] is not None else sql_bytes
        ratio = f"{s['compression_ratio']:.2f}" if s["compression_ratio"] else "1 (SQL)"
        own = f"{s['own_rss_peak_mb']:.1f}" if method in ("d", "e", "f", "g") else ""
        lines.append(
            f"| {cell(s['label'])} | {s['wall_s_median']:.2f} | {s['wall_s_median'] / floor:.2f} | {out / MB:,.1f} "
            f"| {ratio} | {s['tree_rss_peak_mb']:.1f} | {own} "
            f"| {cpu_text(s['cpu_s_by_process_median'], s['wall_s_median'])} |"
        )
    return "\n".join(lines)


def restore_table(summary: dict[str, dict[str, Any]]) -> str:
    base = summary["r2"]["wall_s_median"]
    pg_restore = summary["r5"]["wall_s_median"] if "r5" in summary else None
    lines = [
        "| method | rounds | median wall s | x gunzip-psql | x pg_restore -j 2 | peak RSS tree MB | own RSS MB"
        " | CPU s by process |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for method in sorted(summary, key=lambda m: int(m[1:])):
        s = summary[method]
        own = f"{s['own_rss_peak_mb']:.1f}" if method in ("r1", "r3", "r4", "r6") else ""
        versus = f"{s['wall_s_median'] / pg_restore:.2f}" if pg_restore else ""
        lines.append(
            f"| {cell(s['label'])} | {s['rounds']} | {s['wall_s_median']:.2f} | {s['wall_s_median'] / base:.2f} "
            f"| {versus} | {s['tree_rss_peak_mb']:.1f} | {own} "
            f"| {cpu_text(s['cpu_s_by_process_median'], s['wall_s_median'])} |"
        )
    return "\n".join(lines)


def sizes_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| size GB | table data MB | SQL MB | (d) median wall s | (d) own peak RSS MB | (d) tree peak RSS MB"
        " | (e) median wall s | (e) own peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        e = r["encrypted"]
        lines.append(
            f"| {r['size_gb']} | {r['table_bytes'] / MB:,.0f} | {r['sql_bytes'] / MB:,.0f} | {r['wall_s_median']:.2f} "
            f"| {r['own_rss_peak_mb']:.1f} | {r['tree_rss_peak_mb']:.1f} | {e['wall_s_median']:.2f}"
            f" | {e['own_rss_peak_mb']:.1f} |"
        )
    return "\n".join(lines)


def targets(dumps: dict[str, dict[str, Any]], sizes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    d = dumps["d"]
    checks: list[tuple[str, float, float]] = []
    if "a" in dumps:
        a, b = dumps["a"], dumps["b"]
        checks += [
            ("(d) wall <= 1.15 x floor", d["wall_s_median"] / a["wall_s_median"], TARGETS["wall_vs_floor"]),
            ("(d) faster than (b): wall(d) / wall(b) < 1", d["wall_s_median"] / b["wall_s_median"], 1.0),
            ("(d) output <= 1.15 x (b) bytes", d["out_bytes"] / b["out_bytes"], TARGETS["bytes_vs_gzip6"]),
        ]
    checks += [
        ("(d) own process peak RSS <= 100 MB", d["own_rss_peak_mb"], TARGETS["rss_mb"]),
        ("(d) process tree peak RSS <= 100 MB", d["tree_rss_peak_mb"], TARGETS["rss_mb"]),
    ]
    if "g" in dumps:
        g = dumps["g"]
        checks += [
            (
                "(d) seekable output <= 1.01 x (g) one member",
                d["out_bytes"] / g["out_bytes"],
                TARGETS["seekable_bytes"],
            ),
            (
                "(d) seekable wall <= 1.03 x (g) one member",
                d["wall_s_median"] / g["wall_s_median"],
                TARGETS["seekable_wall"],
            ),
            (  # CPU time of the whole tree: what wall time means when the machine is shared
                "(d) seekable CPU s <= 1.03 x (g) one member",
                d["cpu_s_median"] / g["cpu_s_median"],
                TARGETS["seekable_wall"],
            ),
        ]
    if len(sizes) > 1:
        peaks = [r["own_rss_peak_mb"] for r in sizes]
        spread = max(peaks) / min(peaks) - 1
        checks.append(("(d) own peak RSS flat across sizes (max/min - 1 <= 10%)", spread, TARGETS["rss_flat"]))
    if "f" in dumps:
        f_rss = dumps["f"]["own_rss_peak_mb"]
        checks.append(("(f) own peak RSS with three targets <= 150 MB", f_rss, TARGETS["three_targets_rss_mb"]))
    if "e" in dumps:
        e = dumps["e"]
        checks.append(
            ("(e) encrypted wall <= 1.05 x (d)", e["wall_s_median"] / d["wall_s_median"], TARGETS["encrypted_wall"])
        )
        rss_gap = e["own_rss_peak_mb"] - d["own_rss_peak_mb"]
        checks.append(("(e) own peak RSS within 10 MB of (d)", rss_gap, TARGETS["encrypted_rss_mb"]))
        peaks_e = [r["encrypted"]["own_rss_peak_mb"] for r in sizes if "encrypted" in r]
        if len(peaks_e) > 1:
            spread_e = max(peaks_e) / min(peaks_e) - 1
            checks.append(("(e) own peak RSS flat across sizes (max/min - 1 <= 10%)", spread_e, TARGETS["rss_flat"]))
    return [{"target": name, "value": round(v, 3), "limit": limit, "met": v <= limit} for name, v, limit in checks]


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gb", type=float, default=1.0, help="table data to build (default 1.0)")
    parser.add_argument("--rounds", type=int, default=3, help="dump rounds, all methods in each (default 3)")
    parser.add_argument("--restore-rounds", type=int, help="restore rounds, 0 to skip (default: --rounds)")
    parser.add_argument("--database-url", help="use this server and database instead of the cached bundled server")
    parser.add_argument("--json-out", type=Path, default=HERE / "results.json")
    parser.add_argument("--sizes", help="comma-separated sizes in GB at which to repeat (d), e.g. 0.25,1.0")
    parser.add_argument(
        "--only",
        choices=["seekable", "parallel-restore"],
        help="seekable: only (d) and (g), the cost of a seekable file; no restores."
        " parallel-restore: one (d) backup, then only restore --jobs 2 (with and without its index),"
        " gunzip | psql and pg_restore -j 2",
    )
    args = parser.parse_args()
    args.sizes = [float(s) for s in args.sizes.split(",")] if args.sizes else []
    if args.restore_rounds is None:
        args.restore_rounds = args.rounds
    if args.rounds < 1 or args.size_gb <= 0 or any(s <= 0 for s in args.sizes):
        parser.error("--rounds must be >= 1 and sizes > 0")
    return args


def main() -> int:
    args = parse_args()
    started = time.perf_counter()
    if args.database_url:
        main_db = dbname_of(args.database_url)
        server = Server(admin_url=with_dbname(args.database_url, "postgres"))
    else:
        main_db = f"dbbackup_bench_{round(args.size_gb * 1024)}mb"
        server = start_cached_server()

    def db_for(size_gb: float) -> str:  # one database per size, beside the main one
        if size_gb == args.size_gb:
            return main_db
        prefix = main_db if args.database_url else "dbbackup_bench"
        return f"{prefix}_{round(size_gb * 1024)}mb"

    work = Path(tempfile.mkdtemp(prefix="dbbackup-bench-"))
    try:
        url, table_bytes = ensure_database(server, main_db, args.size_gb)
        with psycopg.connect(url) as conn:
            server_version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        sql_bytes = sql_bytes_of(url)
        print(f"dump: {sql_bytes / MB:,.0f} MB of SQL; {args.rounds} round(s) of each method", flush=True)
        key = make_age_key(work)
        if args.only == "seekable":
            runs = seekable_rounds(url, args.rounds, work)
            args.restore_rounds, args.sizes = 0, []
        elif args.only == "parallel-restore":
            runs = [run_backup(url, work / "backups")]
            args.sizes = []
        else:
            stores = ObjectStores()
            try:
                runs = dump_rounds(url, args.rounds, work, key, stores)
            finally:
                stores.stop()
        dumps = summarize(runs, sql_bytes)
        restores: dict[str, dict[str, Any]] = {}
        restore_runs: list[Run] = []
        if args.restore_rounds:
            print(f"restore: {args.restore_rounds} round(s) of each method", flush=True)
            dump_dir = directory_dump(url, work)
            if args.only == "parallel-restore":
                restore_runs = restore_rounds(
                    server,
                    url,
                    backup_file(work / "backups"),
                    args.restore_rounds,
                    None,
                    None,
                    PARALLEL_RESTORES,
                    dump_dir,
                )
            else:
                restore_runs = restore_rounds(
                    server,
                    url,
                    backup_file(work / "backups"),
                    args.restore_rounds,
                    backup_file(work / "backups-age"),
                    key,
                    dump_dir=dump_dir,
                )
            restores = summarize(restore_runs, sql_bytes)
        sizes: list[dict[str, Any]] = []
        for size_gb in args.sizes:
            if size_gb == args.size_gb:
                size_runs, size_sql, size_table = [r for r in runs if r.method in "de"], sql_bytes, table_bytes
            else:
                size_url, size_table = ensure_database(server, db_for(size_gb), size_gb)
                size_sql = sql_bytes_of(size_url)
                size_runs = []
                for n in range(1, args.rounds + 1):
                    for method_key in (None, key):
                        size_runs.append(run_backup(size_url, work / "backups", method_key))
                        label = LABELS[size_runs[-1].method]
                        print(f"  {size_gb} GB round {n} {label} {size_runs[-1].wall_s:7.2f} s", flush=True)
            summary = summarize(size_runs, size_sql)
            row = {"size_gb": size_gb, "table_bytes": size_table, "sql_bytes": size_sql} | summary["d"]
            sizes.append(row | {"encrypted": summary["e"]})
    finally:
        shutil.rmtree(work, ignore_errors=True)
        server.stop()

    checks = targets(dumps, sizes) + parallel_checks(restores)
    elapsed = time.perf_counter() - started
    print()
    print(
        f"## Backup: {table_bytes / MB:,.0f} MB of table data, {sql_bytes / MB:,.0f} MB of SQL, "
        f"PostgreSQL {server_version}, median of {args.rounds} round(s); MB = 2**20 bytes"
    )
    print()
    print(dump_table(dumps, sql_bytes))
    if "c" not in dumps:
        print("\n(c) skipped: pigz is not installed")
    if restores:
        print(f"\n## Restore of the (d) file into a fresh database, median of {args.restore_rounds} round(s)\n")
        print(restore_table(restores))
        print(
            "\n(dbbackup restore runs psql --single-transaction; the gunzip | psql baseline does not;"
            " --jobs 2 reads by range with the backup's index, or streams the file without one)"
        )
    if sizes:
        print("\n## (d) at each size\n")
        print(sizes_table(sizes))
    print("\n## Targets (reported, not asserted)\n")
    for c in checks:
        print(f"- {'met    ' if c['met'] else 'NOT met'} {c['target']}: {c['value']} (limit {c['limit']})")
    print(f"\nwhole benchmark: {elapsed:,.0f} s")

    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "server_version": server_version,
        "pg_dump": str(pgbin.tool("pg_dump")),
        "size_gb": args.size_gb,
        "table_bytes": table_bytes,
        "sql_bytes": sql_bytes,
        "rounds": args.rounds,
        "dump": dumps,
        "dump_runs": [asdict(r) | {"stdout": None} for r in runs],
        "restore_rounds": args.restore_rounds,
        "restore": restores,
        "restore_runs": [asdict(r) | {"stdout": None} for r in restore_runs],
        "sizes": sizes,
        "targets": checks,
        "pigz": bool(shutil.which("pigz")),
        "elapsed_s": round(elapsed, 1),
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
