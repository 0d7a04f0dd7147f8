# The second, independent copy (docs/storage.md "3-2-1"): when var.gcs_bucket is set, a GCS
# bucket whose retention policy keeps every object for the retention period. GCS refuses to
# delete or overwrite an object younger than the policy, whoever asks: the functions' own
# account, so a compromised function (or a leaked token of it) cannot destroy the history.
# Retention policies and Object Versioning exclude each other on GCS, so the bucket is not
# versioned; "never overwrite" is the policy's (and the backend's ifGenerationMatch=0).

resource "google_storage_bucket" "backups" {
  count                       = var.gcs_bucket != "" ? 1 : 0
  project                     = var.project_id
  name                        = var.gcs_bucket
  location                    = var.gcs_bucket_location != "" ? var.gcs_bucket_location : var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false # never: `terraform destroy` must not take the backups with it

  retention_policy {
    retention_period = var.retention_days * 86400
    # Locking is irreversible (the bucket can then only be deleted when empty, and the period
    # only lengthened): set it once the retention period is settled.
    is_locked = var.gcs_retention_locked
  }

  # A backstop for what the cleanup did not delete (it stopped, or ran with another retention):
  # a while after the retention period, GCS deletes the object itself. The margin protects the
  # newest copies (BACKUP_KEEP_MIN) when backups stop for a while.
  lifecycle_rule {
    condition {
      age = var.retention_days + var.gcs_delete_after_extra_days
    }
    action {
      type = "Delete"
    }
  }

  labels = { app = "dbbackup" }

  # checkov:skip=CKV_GCP_78:Object Versioning cannot be enabled on a bucket with a retention policy; the policy is what keeps old data.
  # checkov:skip=CKV_GCP_62:Access logs would record the functions' own nightly writes; Cloud Audit Logs record admin changes.
  depends_on = [google_project_service.api]
}

# What the backend does, and nothing more (no storage.buckets.*, no objects.update, no IAM):
#  - objectCreator: storage.objects.create (the resumable upload; cancelling it needs nothing);
#  - objectViewer: storage.objects.get/list (the existence check, list, verify, restore);
#  - a custom role with storage.objects.delete alone, for the cleanup; the retention policy
#    still refuses it for any object younger than the retention period.
# roles/storage.objectUser or objectAdmin would also grant objects.update (metadata, holds)
# and more; the custom role is the narrowest grant of delete.
resource "google_project_iam_custom_role" "backup_object_deleter" {
  count       = var.gcs_bucket != "" ? 1 : 0
  project     = var.project_id
  role_id     = "${replace(var.name_prefix, "-", "_")}_backup_object_deleter"
  title       = "Delete expired backup objects"
  description = "storage.objects.delete only; granted on the backup bucket, whose retention policy refuses early deletes."
  permissions = ["storage.objects.delete"]
}

resource "google_storage_bucket_iam_member" "runtime_backups" {
  for_each = var.gcs_bucket != "" ? {
    create = "roles/storage.objectCreator"
    read   = "roles/storage.objectViewer"
    delete = google_project_iam_custom_role.backup_object_deleter[0].id
  } : {}
  bucket = google_storage_bucket.backups[0].name
  role   = each.value
  member = "serviceAccount:${google_service_account.runtime.email}"
}

# The console writes (Run Backup Now) and reads (downloads) backups as the scheduled functions do.
resource "google_storage_bucket_iam_member" "console_backups" {
  for_each = var.gcs_bucket != "" ? {
    create = "roles/storage.objectCreator"
    read   = "roles/storage.objectViewer"
    delete = google_project_iam_custom_role.backup_object_deleter[0].id
  } : {}
  bucket = google_storage_bucket.backups[0].name
  role   = each.value
  member = "serviceAccount:${google_service_account.console.email}"
}
