# Every setting a deployment chooses. Defaults follow the code's own defaults (docs/configuration.md
# "Configuration"); terraform.tfvars.example shows a filled-in set.

variable "project_id" {
  description = "Google Cloud project that runs the functions, the schedules and the secrets."
  type        = string
}

variable "region" {
  description = "Region of the functions and the Scheduler jobs; pick one near the database (e.g. the Supabase project's region)."
  type        = string
  default     = "us-central1"
}

variable "name_prefix" {
  description = "Prefix of every resource name (functions, service accounts, secrets, jobs)."
  type        = string
  default     = "dbbackup"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}$", var.name_prefix))
    error_message = "name_prefix: 2-15 lower-case letters, digits or hyphens, starting with a letter (service account ids are at most 30 characters)."
  }
}

# --- secrets: Terraform creates the secret containers only; their values are added with
# gcloud (docs/deployment.md), so no password or key ever sits in Terraform's state.

variable "database_url_secret_id" {
  description = "Secret holding DATABASE_URL (the Supabase session-pooler URL with its password)."
  type        = string
  default     = "dbbackup-database-url"
}

variable "drive_credentials_secret_id" {
  description = "Secret holding GOOGLE_DRIVE_CREDENTIALS: the key of the Drive service account (a Shared drive member) or an OAuth authorized_user JSON. A separate identity from the runtime account, which has no key."
  type        = string
  default     = "dbbackup-drive-credentials"
}

variable "sendgrid_api_key_secret_id" {
  description = "Secret holding SENDGRID_API_KEY; empty: no SendGrid, alerts go to the function's log only."
  type        = string
  default     = "dbbackup-sendgrid-api-key"
}

variable "supabase_jwt_secret_secret_id" {
  description = "Secret holding SUPABASE_JWT_SECRET (legacy HS256 projects); empty when the project uses signing keys (supabase_jwks_url)."
  type        = string
  default     = ""
}

variable "secret_version" {
  description = "Version of each secret the functions read at an instance's first request and keep for its life: a number pins it; with \"latest\" a rotation reaches new instances only."
  type        = string
  default     = "latest"
}

# --- who may call

variable "supabase_url" {
  description = "https://<project-ref>.supabase.co, for the console's sign-in (SUPABASE_URL)."
  type        = string
  default     = ""
}

variable "supabase_anon_key" {
  description = "The project's anon (publishable) key, public by design, for the console's sign-in (SUPABASE_ANON_KEY)."
  type        = string
  default     = ""
}

variable "supabase_jwks_url" {
  description = "https://<project-ref>.supabase.co/auth/v1/.well-known/jwks.json (signing keys; SUPABASE_JWKS_URL)."
  type        = string
  default     = ""
}

variable "supabase_jwt_issuer" {
  description = "https://<project-ref>.supabase.co/auth/v1: the iss user tokens must carry (SUPABASE_JWT_ISSUER); empty: not checked."
  type        = string
  default     = ""
}

variable "allowed_origins" {
  description = "Origins (scheme://host[:port]) of the app pages that may call the console from a browser (ALLOWED_ORIGINS)."
  type        = list(string)
  default     = []
}

variable "manual_backup_interval_seconds" {
  description = "One manual backup per manager per this many seconds (MANUAL_BACKUP_INTERVAL_SECONDS)."
  type        = number
  default     = 300
}

# --- alerts

variable "ops_alert_email" {
  description = "Receives Cloud Monitoring's alerts (monitoring.tf): failed backups, no success for max_age_hours, function crashes. Independent of SendGrid and of the code."
  type        = string

  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.ops_alert_email))
    error_message = "ops_alert_email must be an e-mail address."
  }
}

variable "notification_email" {
  description = "Who gets the code's alert e-mails (BACKUP_NOTIFICATION_EMAIL): replaces the spec's default backup_notification_email at the first run, so a new deployment's failure details never go to that address. A manager may change it later in the console."
  type        = string

  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.notification_email)) && lower(var.notification_email) != "pega2023test@gmail.com"
    error_message = "notification_email must be an e-mail address of this deployment's operators (not the spec's default)."
  }
}

variable "alert_organization" {
  description = "The portal's name in the alerts' closing line (ALERT_ORGANIZATION)."
  type        = string
  default     = "Aamodha Operations Portal"
}

variable "alert_webhook_url_secret_id" {
  description = "Secret holding ALERT_WEBHOOK_URL (a Slack/Google Chat/Teams incoming-webhook URL; its path is a token); empty: no webhook channel."
  type        = string
  default     = ""
}

variable "verify_database_url_secret_id" {
  description = "Secret holding VERIFY_DATABASE_URL, a scratch database the weekly restore drill empties and restores into (never the backed-up one); empty: the drill uses a throwaway server when the backup fits VERIFY_MAX_SQL_BYTES."
  type        = string
  default     = ""
}

variable "restore_targets_secret_id" {
  description = "Secret holding RESTORE_TARGETS, the JSON object of databases a manager may restore into from the console (name => URL, or {url, replace}); empty: no restore from the console."
  type        = string
  default     = ""
}

variable "alert_from_email" {
  description = "SendGrid-verified sender of alerts (ALERT_FROM_EMAIL); required with a SendGrid key."
  type        = string
  default     = ""
}

variable "alert_fallback_email" {
  description = "Receives the alert when backup_notification_email is invalid or the database is down (ALERT_FALLBACK_EMAIL)."
  type        = string
  default     = ""
}

variable "sendgrid_api_host" {
  description = "SendGrid API base URL (SENDGRID_API_HOST); https://api.eu.sendgrid.com for EU data residency."
  type        = string
  default     = "https://api.sendgrid.com"
}

variable "environment_name" {
  description = "Environment name shown in alert e-mails (BACKUP_ENVIRONMENT)."
  type        = string
  default     = "production"
}

# --- what, when, how long

variable "time_zone" {
  description = "IANA time zone of both schedules and of the file names (Scheduler time_zone and BACKUP_TIMEZONE)."
  type        = string
  default     = "UTC"
}

variable "backup_schedule" {
  description = "Cron schedule of the daily backup, in time_zone."
  type        = string
  default     = "0 1 * * *"
}

variable "cleanup_schedule" {
  description = "Cron schedule of the daily cleanup (retention and the missed-run watchdog), in time_zone; after the backup."
  type        = string
  default     = "0 2 * * *"
}

variable "backup_profile" {
  description = "full (every schema the role can read) or supabase (restorable into a fresh Supabase project) (BACKUP_PROFILE)."
  type        = string
  default     = "full"

  validation {
    condition     = contains(["full", "supabase"], var.backup_profile)
    error_message = "backup_profile must be full or supabase."
  }
}

variable "backup_exclude_tables" {
  description = "Comma-separated schema.table (* allowed) left out of the backup (BACKUP_EXCLUDE_TABLES)."
  type        = string
  default     = ""
}

variable "age_recipients" {
  description = "age public keys (age1…) every backup is encrypted to (BACKUP_AGE_RECIPIENTS); empty: plain .sql.gz. Never an identity: the functions must not be able to decrypt."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for r in var.age_recipients : can(regex("^age1[02-9ac-hj-np-z]{58}$", r))])
    error_message = "Each age_recipients entry must be an age X25519 public key (age1 followed by 58 characters), never an AGE-SECRET-KEY identity."
  }
}

variable "drive_subject" {
  description = "With a service-account key and domain-wide delegation: the user whose My Drive holds the backups (GOOGLE_DRIVE_SUBJECT)."
  type        = string
  default     = ""
}

variable "gzip_level" {
  description = "ISA-L compression level 0-3 (BACKUP_GZIP_LEVEL)."
  type        = number
  default     = 1
}

variable "retention_days" {
  description = "The cleanup deletes backups older than this many days (BACKUP_RETENTION_DAYS)."
  type        = number
  default     = 15
}

variable "keep_min" {
  description = "The newest N successful backups are never deleted (BACKUP_KEEP_MIN)."
  type        = number
  default     = 3
}

variable "max_age_hours" {
  description = "The cleanup alerts when no backup succeeded for longer than this (BACKUP_MAX_AGE_HOURS)."
  type        = number
  default     = 26
}

variable "size_warning_percent" {
  description = "A backup under this % of the previous one is flagged (BACKUP_SIZE_WARNING_PERCENT; 0 = off)."
  type        = number
  default     = 50
}

variable "shrink_warning_percent" {
  description = "A table that lost more than this % of its rows since the previous backup is warned about (BACKUP_SHRINK_WARNING_PERCENT; 0 = only vanished or emptied tables)."
  type        = number
  default     = 50
}

variable "shrink_min_rows" {
  description = "Only tables that had at least this many rows are warned about for shrinking (BACKUP_SHRINK_MIN_ROWS)."
  type        = number
  default     = 1000
}

variable "keep_weekly" {
  description = "Also keep the newest backup of each of the last N ISO weeks (BACKUP_KEEP_WEEKLY; 0 = the daily rule only)."
  type        = number
  default     = 0

  validation {
    condition     = var.keep_weekly >= 0 && var.keep_weekly <= 5000
    error_message = "keep_weekly must be 0-5000."
  }
}

variable "keep_monthly" {
  description = "Also keep the newest backup of each of the last N calendar months (BACKUP_KEEP_MONTHLY; 0 = the daily rule only)."
  type        = number
  default     = 0

  validation {
    condition     = var.keep_monthly >= 0 && var.keep_monthly <= 1200
    error_message = "keep_monthly must be 0-1200."
  }
}

variable "verify_schedule" {
  description = "Cron schedule of the weekly restore drill (verify_backup), in time_zone; default Sunday 03:00."
  type        = string
  default     = "0 3 * * 0"
}

variable "verify_memory" {
  description = "Memory of verify_backup. Its /tmp is this memory: the throwaway server's data directory and the restore share it (see verify_max_sql_bytes)."
  type        = string
  default     = "2Gi"
}

variable "verify_max_sql_bytes" {
  description = "Without a scratch database, the drill restores into a throwaway server only when the backup's SQL is at most this (VERIFY_MAX_SQL_BYTES): a quarter of verify_memory by default (512 MiB of 2Gi)."
  type        = number
  default     = 536870912
}

variable "verify_timeout_seconds" {
  description = "Request timeout of verify_backup (a restore of the whole database)."
  type        = number
  default     = 3600

  validation {
    condition     = var.verify_timeout_seconds >= 60 && var.verify_timeout_seconds <= 3600
    error_message = "verify_timeout_seconds must be 60-3600 (HTTP functions run at most 60 minutes)."
  }
}

variable "backup_memory" {
  description = "Memory of the functions that dump (database_backup, backup_console). The benchmark's backup peaked at 68 MiB RSS (process tree, flat in the database size); served by functions-framework with the Google libraries, the Drive chunk (8 MiB) and pg_dump unpacked in /tmp (an in-memory disk), tests/test_as_deployed.py measures about 80 MiB. 512Mi leaves six times that."
  type        = string
  default     = "512Mi"
}

variable "backup_cpu" {
  description = "vCPUs of the dumping functions: one keeps pace with the server (compression and the pipe reader share it)."
  type        = string
  default     = "1"
}

variable "backup_timeout_seconds" {
  description = "Request timeout of the dumping functions; 3600 is the most an HTTP function allows (a large dump)."
  type        = number
  default     = 3600

  validation {
    condition     = var.backup_timeout_seconds >= 60 && var.backup_timeout_seconds <= 3600
    error_message = "backup_timeout_seconds must be 60-3600 (HTTP functions run at most 60 minutes)."
  }
}

variable "cleanup_memory" {
  description = "Memory of cleanup_old_backups (it lists and deletes files, never holds one)."
  type        = string
  default     = "256Mi"
}

variable "cleanup_timeout_seconds" {
  description = "Request timeout of cleanup_old_backups."
  type        = number
  default     = 540
}

variable "scheduled_ingress" {
  description = "Ingress of the two scheduled functions. Cloud Scheduler in the same project counts as internal traffic, so nothing else can even reach them; ALLOW_ALL still leaves them IAM-protected."
  type        = string
  default     = "ALLOW_INTERNAL_ONLY"

  validation {
    condition     = contains(["ALLOW_INTERNAL_ONLY", "ALLOW_ALL"], var.scheduled_ingress)
    error_message = "scheduled_ingress must be ALLOW_INTERNAL_ONLY or ALLOW_ALL."
  }
}

variable "scheduler_retry_count" {
  description = "Scheduler retries of a failed or timed-out backup attempt; a retry of a slot that already succeeded is answered 'already done'."
  type        = number
  default     = 2
}

variable "source_bucket_location" {
  description = "Location of the bucket holding the zipped function source (defaults to the region)."
  type        = string
  default     = ""
}

variable "storage_targets" {
  description = "Where each backup is written, in order (BACKUP_STORAGE): one dump, a copy in each; the first fills backup_logs. The 3-2-1 setup: [\"google_drive\", \"gcs\"] with gcs_bucket set (docs/storage.md)."
  type        = list(string)
  default     = ["google_drive"]
  validation {
    condition     = length(var.storage_targets) > 0 && length(distinct(var.storage_targets)) == length(var.storage_targets) && alltrue([for t in var.storage_targets : contains(["google_drive", "gcs", "s3"], t)])
    error_message = "storage_targets: one or more of google_drive, gcs, s3, each once (a function's local disk is memory: local is not a deployed target)."
  }
}

variable "gcs_bucket" {
  description = "Name of a GCS bucket to create for a second, retention-locked copy of every backup (BACKUP_GCS_BUCKET; docs/storage.md). Empty: none."
  type        = string
  default     = ""
}

variable "gcs_bucket_location" {
  description = "Location of the backup bucket (defaults to the region; a dual-region or another region puts the copy elsewhere)."
  type        = string
  default     = ""
}

variable "gcs_retention_locked" {
  description = "Lock the backup bucket's retention policy (irreversible: the period can then only grow, and no one can shorten it)."
  type        = bool
  default     = false
}

variable "gcs_delete_after_extra_days" {
  description = "The backup bucket's lifecycle rule deletes objects this many days after the retention period (a backstop for the cleanup)."
  type        = number
  default     = 30
  validation {
    condition     = var.gcs_delete_after_extra_days >= 1
    error_message = "gcs_delete_after_extra_days must be at least 1."
  }
}

variable "aws_access_key_id_secret_id" {
  description = "Secret holding AWS_ACCESS_KEY_ID for an S3-compatible target (empty: none)."
  type        = string
  default     = ""
}

variable "aws_secret_access_key_secret_id" {
  description = "Secret holding AWS_SECRET_ACCESS_KEY for an S3-compatible target (empty: none)."
  type        = string
  default     = ""
}

variable "s3_bucket" {
  description = "Bucket of an S3-compatible target (BACKUP_S3_BUCKET; docs/storage.md). Empty: none."
  type        = string
  default     = ""
}

variable "s3_endpoint_url" {
  description = "Endpoint of a non-AWS S3-compatible store: R2, B2, MinIO, Supabase Storage (BACKUP_S3_ENDPOINT_URL)."
  type        = string
  default     = ""
}

variable "s3_region" {
  description = "Region of the S3 bucket (BACKUP_S3_REGION; R2: auto)."
  type        = string
  default     = ""
}

variable "s3_object_lock_days" {
  description = "Object Lock (COMPLIANCE) retention of each S3 backup in days; the bucket must have Object Lock enabled (BACKUP_S3_OBJECT_LOCK_DAYS). 0: none."
  type        = number
  default     = 0
}
