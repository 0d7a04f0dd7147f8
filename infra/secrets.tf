# The secret containers. Their values are added outside Terraform (docs/deployment.md:
# `gcloud secrets versions add ... --data-file=-`), so no password or key is in the state.

locals {
  # Variable the code reads (secret_manager.SECRET_VARIABLES) => secret id; optional ones when set.
  secret_ids = { for name, id in {
    DATABASE_URL             = var.database_url_secret_id
    GOOGLE_DRIVE_CREDENTIALS = var.drive_credentials_secret_id
    SENDGRID_API_KEY         = var.sendgrid_api_key_secret_id
    SUPABASE_JWT_SECRET      = var.supabase_jwt_secret_secret_id
    ALERT_WEBHOOK_URL        = var.alert_webhook_url_secret_id
    AWS_ACCESS_KEY_ID        = var.aws_access_key_id_secret_id
    AWS_SECRET_ACCESS_KEY    = var.aws_secret_access_key_secret_id
    VERIFY_DATABASE_URL      = var.verify_database_url_secret_id
    RESTORE_TARGETS          = var.restore_targets_secret_id # read by the console only (restore)
    # Supabase Storage's S3 access key (backup_supabase_storage).
    SUPABASE_S3_ACCESS_KEY_ID     = var.supabase_s3_access_key_id_secret_id
    SUPABASE_S3_SECRET_ACCESS_KEY = var.supabase_s3_secret_access_key_secret_id
  } : name => id if id != "" }
}

resource "google_secret_manager_secret" "this" {
  for_each  = local.secret_ids
  project   = var.project_id
  secret_id = each.value

  replication {
    auto {}
  }

  labels     = { app = "dbbackup" }
  depends_on = [google_project_service.api]
}

# Only the functions' accounts may read them, and only these secrets (not the project's others):
# the scheduled functions' runtime account every one but RESTORE_TARGETS (the console's alone),
# the console's account every one.
resource "google_secret_manager_secret_iam_member" "runtime" {
  for_each  = { for name, secret in google_secret_manager_secret.this : name => secret if name != "RESTORE_TARGETS" }
  project   = var.project_id
  secret_id = each.value.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.runtime.email}"
}

resource "google_secret_manager_secret_iam_member" "console" {
  for_each  = google_secret_manager_secret.this
  project   = var.project_id
  secret_id = each.value.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.console.email}"
}
