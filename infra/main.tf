# Project, APIs and identities. Least privilege: three service accounts, none with a key, none
# with a project-wide role beyond what Cloud Build needs to build the functions.

data "google_project" "this" {
  project_id = var.project_id
}

# The APIs the deployment uses. disable_on_destroy = false: destroying this stack must not
# switch off an API something else in the project relies on.
resource "google_project_service" "api" {
  for_each = toset([
    "artifactregistry.googleapis.com", # the functions' container images
    "cloudbuild.googleapis.com",       # builds the functions from source
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com", # Terraform reads the project (data.google_project)
    "cloudscheduler.googleapis.com",
    "drive.googleapis.com", # the backups' storage (called with the Drive identity's credentials)
    "iam.googleapis.com",
    "logging.googleapis.com",    # log-based metrics (monitoring.tf)
    "monitoring.googleapis.com", # alert policies and the e-mail channel (monitoring.tf)
    "run.googleapis.com",        # gen2 functions are Cloud Run services
    "secretmanager.googleapis.com",
    "serviceusage.googleapis.com", # enabling the others; enable it and cloudresourcemanager by hand first (docs/deployment.md)
    "storage.googleapis.com",      # the source bucket
  ])
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# The identity the three scheduled functions (backup, cleanup, drill) run as. It holds no key file
# and no predefined role: it may read the deployment's secrets but RESTORE_TARGETS (secrets.tf)
# and use the backup bucket when there is one, nothing else. Drive is reached with the separate
# credentials in the Drive secret; the database with the URL in its secret.
resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-runtime"
  display_name = "Database backup functions (runtime)"
  depends_on   = [google_project_service.api]
}

# The identity backup_console runs as: what the runtime account may (the secrets, RESTORE_TARGETS
# too, and the bucket: Run Backup Now, downloads), plus getting and updating the two Scheduler jobs
# and acting as the scheduler account when it does (scheduler.tf). No key, no predefined role.
resource "google_service_account" "console" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-console"
  display_name = "Database backup console (runtime)"
  depends_on   = [google_project_service.api]
}

# The identity Cloud Scheduler signs its OIDC tokens as (SCHEDULER_SERVICE_ACCOUNT). Its only
# right: run.invoker on the two scheduled functions (functions.tf).
resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "Database backup schedules (invoker)"
  depends_on   = [google_project_service.api]
}

# The identity Cloud Build uses to build the functions from the zipped source (instead of the
# project's default compute account, which may hold Editor).
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-build"
  display_name = "Database backup functions (build)"
  depends_on   = [google_project_service.api]
}

# What a function build needs: write its logs, push the image to Artifact Registry's
# gcf-artifacts repository (created by Cloud Functions), read the source (source.tf).
resource "google_project_iam_member" "build" {
  for_each = toset(["roles/logging.logWriter", "roles/artifactregistry.writer"])
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.build.email}"
}

# Everything the functions are told, computed from plain values in a provider-free module that
# the local as-deployed test evaluates too.
module "function_env" {
  source = "./modules/function_env"

  project_id                = var.project_id
  project_number            = data.google_project.this.number
  region                    = var.region
  name_prefix               = var.name_prefix
  scheduler_service_account = google_service_account.scheduler.email
  secret_ids                = local.secret_ids
  secret_version            = var.secret_version
  settings                  = local.settings
  console_settings          = local.console_settings
}
