# Two daily jobs and the weekly restore drill in var.time_zone. Each signs an OIDC token as the scheduler account, for the
# audience the function checks (its SCHEDULER_AUDIENCE, the same module output).

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
}

resource "google_cloud_scheduler_job" "job" {
  for_each         = local.jobs
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
