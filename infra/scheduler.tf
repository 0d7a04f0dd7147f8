# The daily backup and cleanup jobs and the weekly restore drill, in var.time_zone. Each signs an OIDC token as the
# scheduler account, for the audience the function checks (its SCHEDULER_AUDIENCE, the same module output).
#
# Managers change the backup's and the cleanup's schedule and zone in the console, which updates
# these two jobs through the Cloud Scheduler API (SCHEDULER_BACKUP_JOB / SCHEDULER_CLEANUP_JOB):
# Terraform sets them when it creates the jobs and ignores later changes of schedule and time_zone,
# so an apply never undoes a manager's change. The drill's schedule stays Terraform's.

locals {
  jobs = {
    backup = {
      function    = "database_backup"
      schedule    = var.backup_schedule
      description = "Daily database backup"
      # Scheduler waits at most 30 minutes for an HTTP answer (its maximum). A longer dump goes
      # on in the function (timeout up to 60 min) and records its own row; Scheduler marks the
      # attempt failed and retries with the same X-CloudScheduler-ScheduleTime: while the dump
      # still runs the retry gets 409 (the lock), after it succeeded 200 "already done"
      # (nothing runs twice), after it failed the retry backs up again.
      deadline = "1800s"
      retries  = var.scheduler_retry_count
    }
    cleanup = {
      function    = "cleanup_old_backups"
      schedule    = var.cleanup_schedule
      description = "Daily retention cleanup and missed-run watchdog"
      deadline    = "600s"
      retries     = 1
    }
    verify = {
      function    = "verify_backup"
      schedule    = var.verify_schedule
      description = "Weekly restore drill of the latest backup"
      # The drill records its own verdict on the backup's row however long it runs; a retry
      # would only drill the same backup again.
      deadline = "1800s"
      retries  = 0
    }
  }

  # The jobs the console may change, by resource name: known before they exist (the console's
  # environment cannot wait for them: the jobs need the functions' URLs).
  console_jobs = ["backup", "cleanup"]
  job_names    = { for key in keys(local.jobs) : key => "projects/${var.project_id}/locations/${var.region}/jobs/${var.name_prefix}-${key}" }
}

resource "google_cloud_scheduler_job" "job" {
  for_each         = { for key, job in local.jobs : key => job if contains(local.console_jobs, key) }
  project          = var.project_id
  region           = var.region
  name             = "${var.name_prefix}-${each.key}"
  description      = each.value.description
  schedule         = each.value.schedule
  time_zone        = var.time_zone
  attempt_deadline = each.value.deadline

  retry_config {
    retry_count          = each.value.retries
    min_backoff_duration = "300s" # a retry after a dump ran into the deadline mostly finds it still running
    max_backoff_duration = "1800s"
    max_doublings        = 2
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.fn[each.value.function].service_config[0].uri
    # cleanup_old_backups and verify_backup accept (and ignore) the trigger field: one body fits all.
    body    = base64encode("{\"trigger\": \"scheduled\"}")
    headers = { "Content-Type" = "application/json" } # else Scheduler sends application/octet-stream (415)

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = module.function_env.urls[each.value.function]
    }
  }

  # The console sets these two (a manager's schedule); Terraform only creates them.
  lifecycle {
    ignore_changes = [schedule, time_zone]
  }

  depends_on = [google_cloud_run_service_iam_member.scheduler_invokes]
}

# The weekly drill: the same shape, its schedule Terraform's alone.
resource "google_cloud_scheduler_job" "drill" {
  for_each         = { for key, job in local.jobs : key => job if !contains(local.console_jobs, key) }
  project          = var.project_id
  region           = var.region
  name             = "${var.name_prefix}-${each.key}"
  description      = each.value.description
  schedule         = each.value.schedule
  time_zone        = var.time_zone
  attempt_deadline = each.value.deadline

  retry_config {
    retry_count          = each.value.retries
    min_backoff_duration = "300s" # a retry after a dump ran into the deadline mostly finds it still running
    max_backoff_duration = "1800s"
    max_doublings        = 2
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.fn[each.value.function].service_config[0].uri
    # cleanup_old_backups and verify_backup accept (and ignore) the trigger field: one body fits all.
    body    = base64encode("{\"trigger\": \"scheduled\"}")
    headers = { "Content-Type" = "application/json" } # else Scheduler sends application/octet-stream (415)

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = module.function_env.urls[each.value.function]
    }
  }

  depends_on = [google_cloud_run_service_iam_member.scheduler_invokes]
}

moved {
  from = google_cloud_scheduler_job.job["verify"]
  to   = google_cloud_scheduler_job.drill["verify"]
}

# What the console needs to apply a manager's schedule to those two jobs: read and update a job,
# nothing else (no create, delete, run, pause, list). Cloud Scheduler has no per-job IAM policy,
# and IAM Conditions' resource attributes do not cover it, so the custom role is granted on the
# project: the code only ever names SCHEDULER_BACKUP_JOB and SCHEDULER_CLEANUP_JOB, and the
# project should hold no other Scheduler job (docs/deployment.md, "Schedules").
resource "google_project_iam_custom_role" "schedule_editor" {
  project     = var.project_id
  role_id     = "${replace(var.name_prefix, "-", "_")}_schedule_editor"
  title       = "Change the backup schedules"
  description = "cloudscheduler.jobs.get and .update only: the console changes the backup's and the cleanup's schedule."
  permissions = ["cloudscheduler.jobs.get", "cloudscheduler.jobs.update"]
}

# Granted to the console's own account only: the three scheduled functions' runtime account
# (which runs the backup, the cleanup and the drill) may not change any job.
resource "google_project_iam_member" "console_schedules" {
  project = var.project_id
  role    = google_project_iam_custom_role.schedule_editor.id
  member  = "serviceAccount:${google_service_account.console.email}"
}

# Scheduler checks iam.serviceAccounts.actAs on the account a job's OIDC token is signed as when
# the job is updated. That account may only invoke the scheduled functions (whose work the console
# can start itself: Run Backup Now, Verify now): no right is gained through it.
resource "google_service_account_iam_member" "console_updates_scheduler_jobs" {
  service_account_id = google_service_account.scheduler.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.console.email}"
}
