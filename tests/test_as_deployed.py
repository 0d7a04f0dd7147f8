"""The deployment, run here (issue 9): each function served by functions-framework from the
source ``make package`` builds, with exactly the environment Terraform gives it (the
``infra/modules/function_env`` module evaluated by ``terraform console``, from the root
variables' defaults), against a real PostgreSQL and the fakes of Google's and Supabase's
services. Called as Cloud Scheduler calls (its OIDC token for the audience in scheduler.tf,
its ScheduleTime header, the job's body) and as a manager's browser calls the console.

What differs from Google, and why: the fakes' endpoints (GOOGLE_CERTS_URL, GOOGLE_DRIVE_ROOT_URL,
SECRET_MANAGER_ENDPOINT, and SendGrid's host, which Terraform sets to SendGrid's), a private
DBBACKUP_CACHE_DIR per test run, and K_SERVICE, which the platform sets."""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fakes import make_drive_storage
from fakes.auth_people import MANAGER, SCHEDULER_SA
from fakes.drive_fake import DriveFake
from fakes.jwks_fake import SupabaseJwksFake
from fakes.oidc_fake import GoogleCertsFake
from fakes.secretmanager_fake import SecretManagerFake
from fakes.sendgrid_fake import FakeSendGrid
from support import infra
from support.infra import INFRA, built_source, resources, unq

pytest_plugins = ["fakes.auth_fixtures"]
pytestmark = pytest.mark.skipif(infra.terraform() is None, reason="terraform is not on PATH")

PROJECT = "test-project"
PROJECT_NUMBER = "123456789012"
DRIVE_ROBOT = "drive-backups@test-project.iam.gserviceaccount.com"
FOLDER = "SharedDrives/Backups/DatabaseBackups"
ORIGIN = "https://app.example.com"
SLOT = "2026-11-25T01:00:00Z"
BIN = Path(sys.executable).parent


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class Deployment:
    env: dict[str, dict[str, str]]  # per function, as Terraform sets it
    audiences: dict[str, str]
    functions: dict[str, Served]
    drive: DriveFake
    secrets: SecretManagerFake
    sendgrid: FakeSendGrid
    db_url: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(source: Path, target: str, env: dict[str, str], log: Path) -> Served:
    port = _free_port()
    process = subprocess.Popen(
        [
            str(BIN / "functions-framework"),
            "--source",
            str(source / "main.py"),
            "--target",
            target,
            "--port",
            str(port),
        ],
        cwd=source,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{target} exited: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return Served(f"http://127.0.0.1:{port}", process, log)
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"{target} did not start: {log.read_text()[-2000:]}")


def call(
    served: Served, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    req = urllib.request.Request(served.url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read() or b"null"), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null"), dict(exc.headers)


def scheduler_job(name: str) -> tuple[str, bytes, dict[str, str]]:
    """(function, body, headers) of a Scheduler job as scheduler.tf defines it."""
    jobs = infra.locals_(INFRA / "scheduler.tf")["jobs"]
    target = resources("google_cloud_scheduler_job")["job"]["http_target"][0]
    body_expr = unq(target["body"])
    literal = re.fullmatch(r'\$\{base64encode\("(.*)"\)\}', body_expr)
    assert literal, body_expr
    body = base64.b64decode(base64.b64encode(literal.group(1).replace('\\"', '"').encode()))
    headers = {unq(k): unq(v) for k, v in target["headers"].items() if not k.startswith("__")}
    return unq(jobs[name]["function"]), body, headers


def as_scheduler(
    deployment: Deployment, google: GoogleCertsFake, job: str, schedule_time: str, audience: str | None = None
) -> tuple[int, Any, dict[str, str]]:
    function, body, headers = scheduler_job(job)
    token = google.mint(audience or deployment.audiences[function], SCHEDULER_SA)
    headers = headers | {
        "Authorization": f"Bearer {token}",
        "User-Agent": "Google-Cloud-Scheduler",
        "X-CloudScheduler": "true",
        "X-CloudScheduler-JobName": job,
        "X-CloudScheduler-ScheduleTime": schedule_time,
    }
    return call(deployment.functions[function], "POST", "/", body, headers)


def _tree_peak_rss_kib(pid: int) -> int:
    """Largest VmHWM in the process tree (gunicorn's worker serves the request)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    peak, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        if m := re.search(r"VmHWM:\s+(\d+) kB", status):
            peak = max(peak, int(m.group(1)))
    return peak


@pytest.fixture
def deployment(
    app_db: str, google_certs: GoogleCertsFake, supabase: SupabaseJwksFake, tmp_path: Path
) -> Iterator[Deployment]:
    drive = DriveFake().start()
    secrets = SecretManagerFake(project=PROJECT)
    sendgrid = FakeSendGrid().start()
    served: dict[str, Served] = {}
    caches: list[Path] = []
    try:
        robot = drive.service_account_key(DRIVE_ROBOT)
        drive.add_shared_drive("Backups", [DRIVE_ROBOT])
        with psycopg.connect(app_db, autocommit=True) as conn:
            conn.execute(
                "UPDATE invoice_configurations SET config_value = %s WHERE config_key = 'backup_folder_path'", (FOLDER,)
            )
        overrides = {
            "project_id": PROJECT,
            "region": "europe-west1",
            "supabase_url": "https://abcdefghijklmnop.supabase.co",
            "supabase_anon_key": "anon-key-public-by-design",
            "supabase_jwks_url": supabase.jwks_url,
            "supabase_jwt_issuer": supabase.issuer,
            "supabase_jwt_secret_secret_id": "dbbackup-supabase-jwt-secret",
            "allowed_origins": [ORIGIN],
            "alert_from_email": "backups@example.com",
            "ops_alert_email": "ops@example.com",
            "notification_email": "oncall@example.com",
            "keep_min": 1,  # so that the cleanup below has an old backup to delete
        }
        inputs = infra.module_inputs(
            overrides, {"project_number": PROJECT_NUMBER, "scheduler_service_account": SCHEDULER_SA}
        )
        tf = infra.evaluate_env_module(inputs, tmp_path / "tf")
        values = {
            "DATABASE_URL": app_db,
            "GOOGLE_DRIVE_CREDENTIALS": json.dumps(robot),
            "SENDGRID_API_KEY": "SG.fake-key-for-the-as-deployed-test",
            "SUPABASE_JWT_SECRET": supabase.jwt_secret,
        }
        for name, secret_id in inputs["secret_ids"].items():
            secrets.add(secret_id, values[name] + "\n")  # as `echo ... | gcloud secrets versions add` stores it
        for name in tf["functions"]:
            env = dict(tf["env"][name])
            assert "DATABASE_URL" not in env and env["DATABASE_URL_SECRET"].startswith(f"projects/{PROJECT}/")
            env |= {
                "PATH": os.environ["PATH"],
                "PYTHONPATH": str(_source(tmp_path)),  # the archive's root first, as /workspace is deployed
                "PYTHONDONTWRITEBYTECODE": "1",
                "K_SERVICE": tf["service_names"][name],
                "DBBACKUP_CACHE_DIR": str(tmp_path / "cache"),
                "GOOGLE_CERTS_URL": google_certs.certs_url,
                "GOOGLE_DRIVE_ROOT_URL": drive.url,
                "SECRET_MANAGER_ENDPOINT": secrets.endpoint,
                "SENDGRID_API_HOST": sendgrid.url,
            }
            if name == "verify_backup":
                # Its own archive, with the drill's server. As root, that server runs as another
                # user, who must be able to reach the unpacked binaries: a cache outside tmp_path.
                source = built_source(server=True)
                cache = Path(tempfile.mkdtemp(prefix="dbbackup-verify-cache-"))
                os.chmod(cache, 0o755)
                caches.append(cache)
                env |= {"PYTHONPATH": str(source), "DBBACKUP_CACHE_DIR": str(cache)}
            else:
                source = _source(tmp_path)
            served[name] = _serve(source, name, env, tmp_path / f"{name}.log")
        yield Deployment(tf["env"], tf["urls"], served, drive, secrets, sendgrid, app_db)
    finally:
        for s in served.values():
            s.process.terminate()
            s.process.wait(10)
        for cache in caches:
            shutil.rmtree(cache, ignore_errors=True)
        drive.stop()
        secrets.stop()
        sendgrid.stop()


def _source(tmp_path: Path) -> Path:
    return built_source(server=False)


def rows(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("SELECT * FROM backup_logs ORDER BY started_at").fetchall()


def test_the_deployed_functions_back_up_dedupe_retries_serve_managers_and_clean_up(
    deployment: Deployment, google_certs: GoogleCertsFake, supabase: SupabaseJwksFake, tmp_path: Path
) -> None:
    d = deployment
    backup, cleanup, console = (d.functions[n] for n in ("database_backup", "cleanup_old_backups", "backup_console"))

    # Nobody else gets in: no token, or a scheduler token minted for another function's URL.
    assert call(backup, "POST", "/", b'{"trigger": "scheduled"}', {"Content-Type": "application/json"})[0] == 401
    wrong = d.audiences["cleanup_old_backups"]
    assert as_scheduler(d, google_certs, "backup", SLOT, audience=wrong)[0] == 401

    # 01:00: Scheduler's call. The backup lands in the Shared drive, logged as automatic.
    status, first, _ = as_scheduler(d, google_certs, "backup", SLOT)
    assert status == 200 and first["status"] == "success", (first, backup.log.read_text()[-3000:])
    stored = d.drive.files[first["file_id"]]
    assert stored.name == first["file_name"] and stored.drive_id
    assert b"\n-- PostgreSQL database dump complete\n" in gzip.decompress(stored.content)
    (row,) = rows(d.db_url)
    assert (row["backup_type"], row["triggered_by"], row["status"]) == ("automatic", SCHEDULER_SA, "success")
    assert row["schedule_time"] is not None
    # pg_dump came from the archive's slim tarball, unpacked into the cache directory.
    (pg_dump,) = (tmp_path / "cache").glob("postgresql-*-client/bin/pg_dump")
    # It needs nothing from the environment (no LD_LIBRARY_PATH, no PATH): its libraries are its own.
    alone = subprocess.run([str(pg_dump), f"--dbname={d.db_url}"], env={}, capture_output=True, text=True, check=False)
    assert alone.returncode == 0 and "-- PostgreSQL database dump complete" in alone.stdout, alone.stderr
    # K_SERVICE is set: our log lines are JSON objects Cloud Logging reads severity and labels from.
    ours = [json.loads(line) for line in backup.log.read_text().splitlines() if '"logger": "dbbackup' in line]
    assert any(e["severity"] == "INFO" and " succeeded: " in e["message"] for e in ours)
    assert all(e["logging.googleapis.com/labels"]["function"] == "database_backup" for e in ours)
    # The secrets were read from Secret Manager by the code, with the names Terraform set.
    assert any("dbbackup-database-url" in a for a in d.secrets.accesses)
    peak_mib = _tree_peak_rss_kib(backup.process.pid) / 1024

    # Scheduler retries the slot (its 30-minute deadline passed, say): already done, no new row.
    status, retry, _ = as_scheduler(d, google_certs, "backup", SLOT)
    assert status == 200 and retry["status"] == "skipped" and retry["backup_log_id"] == first["backup_log_id"]
    assert len(rows(d.db_url)) == 1

    # A manager, from the app's page, through the console: Run Backup Now.
    manager = {"Authorization": f"Bearer {supabase.mint(MANAGER)}", "Origin": ORIGIN}
    status, manual, headers = call(
        console, "POST", "/api/backups", b"{}", manager | {"Content-Type": "application/json"}
    )
    assert status == 200 and manual["status"] == "success", (manual, console.log.read_text()[-3000:])
    assert headers.get("Access-Control-Allow-Origin") == ORIGIN
    assert rows(d.db_url)[-1]["backup_type"] == "manual" and rows(d.db_url)[-1]["triggered_by"] == MANAGER
    status, logs, _ = call(console, "GET", "/api/logs", headers=manager)
    assert status == 200 and logs["total"] == 2
    # The console is public at the IAM level, so its API checks the token itself.
    assert call(console, "GET", "/api/logs")[0] == 401

    # Sunday 03:00: the weekly restore drill, from verify_backup's own archive. Without a scratch
    # database it restores the latest backup into a throwaway server started from that archive.
    drill_fn = d.functions["verify_backup"]
    status, drilled, _ = as_scheduler(d, google_certs, "verify", "2026-11-29T03:00:00Z")
    assert status == 200, (drilled, drill_fn.log.read_text()[-3000:])
    assert (drilled["status"], drilled["target"]) == ("passed", "embedded PostgreSQL 18"), drilled
    assert drilled["backup_log_id"] == manual["backup_log_id"] and drilled["tables"]
    assert rows(d.db_url)[-1]["verify_status"] == "passed"
    print(f"restore drill in verify_backup's archive: {drilled['seconds']:.1f} s")

    # An old backup (made long ago) in the same folder, then 02:00: the cleanup job.
    storage = make_drive_storage(d.drive, json.loads(_robot(d)))  # the deployment's own Drive identity
    folder = storage.ensure_folder(FOLDER)
    storage.put(folder, "DB_Backup_2020-01-01_01-00.sql.gz", iter([gzip.compress(b"-- old\n")]))
    status, cleaned, _ = as_scheduler(d, google_certs, "cleanup", "2026-11-25T02:00:00Z")
    assert status == 200 and cleaned["status"] == "success", (cleaned, cleanup.log.read_text()[-3000:])
    assert cleaned["deleted"] == ["DB_Backup_2020-01-01_01-00.sql.gz"]
    assert {f.name for f in d.drive.children(folder.id)} == {first["file_name"], manual["file_name"]}

    # The memory Terraform gives the backup is far above what serving one took.
    limit = float(re.fullmatch(r"(\d+)Mi", infra.variable_defaults()["backup_memory"]).group(1))  # type: ignore[union-attr]
    print(f"database_backup peak RSS while serving a backup: {peak_mib:.0f} MiB of {limit:.0f} MiB")
    assert peak_mib < limit / 2


def _robot(d: Deployment) -> str:
    """The Drive credentials the deployment holds (its secret's latest version)."""
    return d.secrets.versions["dbbackup-drive-credentials"][-1].decode()
