# The four functions, built from one source (source.tf), run as the runtime account.

locals {
  # Plain settings every function gets (empty = left out, the code's default applies).
  settings = {
    BACKUP_TIMEZONE                = var.time_zone
    BACKUP_PROFILE                 = var.backup_profile
    BACKUP_EXCLUDE_TABLES          = var.backup_exclude_tables
    BACKUP_AGE_RECIPIENTS          = join(",", var.age_recipients) # public keys only: no function can decrypt
    BACKUP_GZIP_LEVEL              = tostring(var.gzip_level)
    BACKUP_RETENTION_DAYS          = tostring(var.retention_days)
    BACKUP_KEEP_MIN                = tostring(var.keep_min)
    BACKUP_MAX_AGE_HOURS           = tostring(var.max_age_hours)
    BACKUP_SIZE_WARNING_PERCENT    = tostring(var.size_warning_percent)
    BACKUP_SHRINK_WARNING_PERCENT  = tostring(var.shrink_warning_percent)
    BACKUP_SHRINK_MIN_ROWS         = tostring(var.shrink_min_rows)
    BACKUP_KEEP_WEEKLY             = tostring(var.keep_weekly)
    BACKUP_KEEP_MONTHLY            = tostring(var.keep_monthly)
    VERIFY_MAX_SQL_BYTES           = tostring(var.verify_max_sql_bytes)
    BACKUP_ENVIRONMENT             = var.environment_name
    GOOGLE_DRIVE_SUBJECT           = var.drive_subject
    ALERT_FROM_EMAIL               = var.alert_from_email
    ALERT_FALLBACK_EMAIL           = var.alert_fallback_email
    ALERT_ORGANIZATION             = var.alert_organization
    BACKUP_NOTIFICATION_EMAIL      = var.notification_email
    GOOGLE_CLOUD_PROJECT           = var.project_id # the trace field of the JSON log lines
    SENDGRID_API_HOST              = var.sendgrid_api_host
    SUPABASE_JWKS_URL              = var.supabase_jwks_url
    SUPABASE_JWT_ISSUER            = var.supabase_jwt_issuer
    ALLOWED_ORIGINS                = join(",", var.allowed_origins)
    MANUAL_BACKUP_INTERVAL_SECONDS = tostring(var.manual_backup_interval_seconds)
    BACKUP_GCS_BUCKET              = var.gcs_bucket                 # created by backups_bucket.tf
    BACKUP_STORAGE                 = join(",", var.storage_targets) # one dump, a copy in each; Drive first fills backup_logs
    BACKUP_S3_BUCKET               = var.s3_bucket
    BACKUP_S3_ENDPOINT_URL         = var.s3_endpoint_url
    BACKUP_S3_REGION               = var.s3_region
    BACKUP_S3_OBJECT_LOCK_DAYS     = tostring(var.s3_object_lock_days) # 0: none
    BACKUP_SUPABASE_STORAGE        = tostring(var.backup_supabase_storage)
    SUPABASE_S3_ENDPOINT           = var.supabase_s3_endpoint
    SUPABASE_S3_REGION             = var.supabase_s3_region
    BACKUP_STORAGE_BUCKETS         = join(",", var.storage_buckets)
  }

  console_settings = {
    SUPABASE_URL      = var.supabase_url
    SUPABASE_ANON_KEY = var.supabase_anon_key
    # The jobs a manager's schedule settings update (scheduler.tf).
    SCHEDULER_BACKUP_JOB  = local.job_names["backup"]
    SCHEDULER_CLEANUP_JOB = local.job_names["cleanup"]
  }

  # Sizing and exposure per function (keys: the entry points, as in the module).
  functions = {
    database_backup = {
      description = "Nightly backup of the database to Google Drive (called by Cloud Scheduler only)."
      memory      = var.backup_memory
      cpu         = var.backup_cpu
      timeout     = var.backup_timeout_seconds
      # One at a time: the advisory lock refuses a second dump anyway; no instance waits for it.
      max_instances = 1
      ingress       = var.scheduled_ingress
      public        = false
    }
    cleanup_old_backups = {
      description   = "Daily retention cleanup and missed-run watchdog (called by Cloud Scheduler only)."
      memory        = var.cleanup_memory
      cpu           = "1"
      timeout       = var.cleanup_timeout_seconds
      max_instances = 1
      ingress       = var.scheduled_ingress
      public        = false
    }
    verify_backup = {
      description = "Weekly restore drill of the latest backup (called by Cloud Scheduler only)."
      # The embedded server's data directory lives in /tmp, which is this memory.
      memory        = var.verify_memory
      cpu           = "1"
      timeout       = var.verify_timeout_seconds
      max_instances = 1
      ingress       = var.scheduled_ingress
      public        = false
    }
    backup_console = {
      description = "Managers' console and Run Backup Now (public URL; every API call needs a manager's Supabase token)."
      # It runs the manual backup itself, synchronously: sized like the backup.
      memory        = var.backup_memory
      cpu           = var.backup_cpu
      timeout       = var.backup_timeout_seconds
      max_instances = 2
      # Browsers reach it directly; the JWT check in the code is its gate (docs/security.md).
      ingress = "ALLOW_ALL"
      public  = true
    }
  }
}

resource "google_cloudfunctions2_function" "fn" {
  # checkov:skip=CKV_GCP_124:Only backup_console allows all ingress (browsers reach it, its JWT check is its gate); the scheduled two use var.scheduled_ingress, internal-only by default.
  for_each    = local.functions
  project     = var.project_id
  location    = var.region
  name        = module.function_env.service_names[each.key]
  description = each.value.description

  build_config {
    runtime         = "python312"
    entry_point     = each.key
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        # verify_backup's source also carries the throwaway server its drill runs (source.tf).
        object = each.key == "verify_backup" ? google_storage_bucket_object.verify_source.name : google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    available_memory                 = each.value.memory
    available_cpu                    = each.value.cpu
    timeout_seconds                  = each.value.timeout
    min_instance_count               = 0
    max_instance_count               = each.value.max_instances
    max_instance_request_concurrency = 1
    ingress_settings                 = each.value.ingress
    all_traffic_on_latest_revision   = true
    service_account_email            = each.key == "backup_console" ? google_service_account.console.email : google_service_account.runtime.email
    environment_variables            = module.function_env.env[each.key]
  }

  labels = { app = "dbbackup" }

  depends_on = [
    google_project_service.api,
    google_project_iam_member.build,
    google_storage_bucket_iam_member.build_reads_source,
    google_secret_manager_secret_iam_member.runtime,
    google_secret_manager_secret_iam_member.console,
  ]
}

# Cloud Scheduler may invoke the two scheduled functions, and nothing else may (no allUsers).
resource "google_cloud_run_service_iam_member" "scheduler_invokes" {
  for_each = toset(["database_backup", "cleanup_old_backups", "verify_backup"])
  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.fn[each.key].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

# The console is reached by managers' browsers with a Supabase token, which Cloud Run's IAM
# check cannot read: Cloud Run lets every request through to the code, which refuses any call
# without a manager's valid token (401/403) before it touches anything.
resource "google_cloud_run_service_iam_member" "console_public" {
  for_each = { for name, f in local.functions : name => f if f.public }
  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.fn[each.key].name
  role     = "roles/run.invoker"
  member   = "allUsers" # checkov:skip=CKV_GCP_102:Public by design: the console's own JWT check is its gate (docs/security.md).
}
