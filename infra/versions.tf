# Providers and state. The state lives in a GCS bucket named at `terraform init`
# (-backend-config="bucket=..."; cloudbuild.yaml passes its _TF_STATE_BUCKET substitution).
terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3.0"
    }
  }

  backend "gcs" {
    prefix = "dbbackup"
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
