# Alerting that does not depend on our own code running: Cloud Logging turns the functions' JSON
# log lines into metrics, and Cloud Monitoring watches them and e-mails ops_alert_email. None of
# it goes through SendGrid or the cleanup's missed-run check, so it still rings when the functions
# never run, cannot start, or cannot send mail. docs/operations.md says what each fires on and
# how to test it after a deploy.

locals {
  backup_services = [for f in ["database_backup", "backup_console"] : module.function_env.service_names[f]]
  all_services    = values(module.function_env.service_names)
  # The lines http.endpoints writes for every backup's outcome (scheduled or from the console).
  backup_log_filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=(${join(" OR ", [for s in local.backup_services : "\"${s}\""])})",
    "jsonPayload.logger=\"dbbackup\"",
  ])
}

resource "google_logging_metric" "backup_succeeded" {
  project     = var.project_id
  name        = "${replace(var.name_prefix, "-", "_")}_backup_succeeded"
  description = "One per successful backup (the 'backup <id> succeeded: ...' line)."
  filter      = "${local.backup_log_filter} AND severity=INFO AND jsonPayload.message=~\"^backup \\\\S+ succeeded: \""
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
  depends_on = [google_project_service.api]
}

resource "google_logging_metric" "backup_failed" {
  project     = var.project_id
  name        = "${replace(var.name_prefix, "-", "_")}_backup_failed"
  description = "One per failed backup, also one that could not start (configuration, credentials, database down)."
  filter      = "${local.backup_log_filter} AND severity=ERROR AND jsonPayload.message=~\"^backup (\\\\S+ failed|could not start): \""
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
  depends_on = [google_project_service.api]
}

resource "google_monitoring_notification_channel" "ops_email" {
  project      = var.project_id
  display_name = "${var.name_prefix} backup operations"
  type         = "email"
  labels       = { email_address = var.ops_alert_email }
  depends_on   = [google_project_service.api]
}

# (1) Any failed backup.
resource "google_monitoring_alert_policy" "backup_failed" {
  project               = var.project_id
  display_name          = "${var.name_prefix}: a database backup failed"
  combiner              = "OR"
  notification_channels = [google_monitoring_notification_channel.ops_email.id]
  conditions {
    display_name = "backup_failed log lines > 0"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.backup_failed.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
      trigger {
        count = 1
      }
    }
  }
  alert_strategy {
    auto_close = "86400s"
  }
  documentation {
    mime_type = "text/markdown"
    content   = "A backup failed or could not start. Its reason is in the function's log (`backup <id> failed: ...`) and in `backup_logs.failure_reason`; the SendGrid/webhook alert carries the same text. See docs/operations.md."
  }
}

# (2) No successful backup for max_age_hours, also when nothing runs at all. A plain
# metric-absence condition can wait at most 23.5 hours and never fires for a metric that has
# never had a point since the policy was made; PromQL's absent_over_time does both.
resource "google_monitoring_alert_policy" "no_recent_success" {
  project               = var.project_id
  display_name          = "${var.name_prefix}: no successful backup for ${var.max_age_hours} hours"
  combiner              = "OR"
  notification_channels = [google_monitoring_notification_channel.ops_email.id]
  conditions {
    display_name = "backup_succeeded absent for ${var.max_age_hours} h"
    condition_prometheus_query_language {
      query               = "absent_over_time(logging_googleapis_com:user_${google_logging_metric.backup_succeeded.name}{monitored_resource=\"cloud_run_revision\"}[${var.max_age_hours}h])"
      duration            = "0s"
      evaluation_interval = "300s"
    }
  }
  alert_strategy {
    auto_close = "86400s"
  }
  documentation {
    mime_type = "text/markdown"
    content   = "No backup has succeeded for ${var.max_age_hours} hours: the scheduler stopped, the function cannot start or every run fails. Check the Scheduler job's last attempt and the function's log. See docs/operations.md."
  }
}

# (3) The functions themselves failing: an error logged by anything but our own code (an
# uncaught exception, a timeout, an out-of-memory kill, a container that would not start).
resource "google_monitoring_alert_policy" "function_errors" {
  project               = var.project_id
  display_name          = "${var.name_prefix}: a backup function crashed or errored"
  combiner              = "OR"
  notification_channels = [google_monitoring_notification_channel.ops_email.id]
  conditions {
    display_name = "error logged outside dbbackup's own lines"
    condition_matched_log {
      filter = join(" AND ", [
        "resource.type=\"cloud_run_revision\"",
        "resource.labels.service_name=(${join(" OR ", [for s in local.all_services : "\"${s}\""])})",
        "severity>=ERROR",
        "NOT jsonPayload.logger=~\"^dbbackup\"",
      ])
    }
  }
  alert_strategy {
    notification_rate_limit {
      period = "3600s"
    }
    auto_close = "86400s"
  }
  documentation {
    mime_type = "text/markdown"
    content   = "A function logged an error that is not one of the backup's own reports: a crash, a timeout or memory limit, or a start-up failure. See docs/operations.md."
  }
}
