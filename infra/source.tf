# The functions' source: build/function-source/ (made by `make package`: the package, the
# entry points, the pinned requirements and the bundled pg_dump), zipped and uploaded under its
# hash, so a changed source is a new object and redeploys the functions. verify_backup gets
# build/verify-source/ instead: the same, plus the throwaway server its restore drill runs
# (about 20 MiB more), which the other functions do not carry.

data "archive_file" "source" {
  type        = "zip"
  source_dir  = "${path.module}/../build/function-source"
  output_path = "${path.module}/../build/function-source.zip"
  # Belt and braces: the directory is built clean, but a local run may leave bytecode behind.
  excludes = ["**/__pycache__/**", "**/*.pyc"]
}

data "archive_file" "verify_source" {
  type        = "zip"
  source_dir  = "${path.module}/../build/verify-source"
  output_path = "${path.module}/../build/verify-source.zip"
  excludes    = ["**/__pycache__/**", "**/*.pyc"]
}

resource "google_storage_bucket" "source" {
  project                     = var.project_id
  name                        = "${var.project_id}-${var.name_prefix}-source"
  location                    = var.source_bucket_location != "" ? var.source_bucket_location : var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true # holds only rebuildable zips

  versioning {
    enabled = true
  }

  # Each source version is its own object (named by hash) and stays: a rollback re-uses it.
  # Only overwritten generations go.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
    }
    action {
      type = "Delete"
    }
  }

  # checkov:skip=CKV_GCP_62:Access logs of a bucket holding only rebuildable source zips would cost more than they tell.
  depends_on = [google_project_service.api]
}

resource "google_storage_bucket_object" "source" {
  bucket = google_storage_bucket.source.name
  name   = "function-source-${data.archive_file.source.output_md5}.zip"
  source = data.archive_file.source.output_path
}

resource "google_storage_bucket_iam_member" "build_reads_source" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.build.email}"
}

resource "google_storage_bucket_object" "verify_source" {
  bucket = google_storage_bucket.source.name
  name   = "verify-source-${data.archive_file.verify_source.output_md5}.zip"
  source = data.archive_file.verify_source.output_path
}
