# pipelined Google Cloud resources as a Terraform module (PIPELINED_BACKEND=gcp): the buckets, the
# Pub/Sub topics and subscriptions, the Firestore database and the worker's service account. The
# AWS resources are deploy/terraform.
#
#   module "pipelined" {
#     source     = "./deploy/terraform-gcp"
#     project_id = "my-project"
#     location   = "europe-west1"
#     name       = "pipelined-production"
#   }
#
# The project needs the Pub/Sub, Cloud Storage, Firestore, IAM and IAM Service Account
# Credentials APIs enabled (the last only for signed URLs); the module does not switch APIs on or
# off, since that is project-wide.

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0.0, < 8.0.0"
    }
  }
}

data "google_project" "this" {
  project_id = var.project_id
}

# The Cloud Storage service agent publishes the input bucket's notifications. Reading it through
# this data source also makes Google create it, so the IAM binding below never names an account
# that does not exist yet.
data "google_storage_project_service_account" "this" {
  project = var.project_id
}

locals {
  project_number = data.google_project.this.number

  # Service agents: Pub/Sub forwards dead letters, Cloud Storage publishes notifications.
  pubsub_agent  = "serviceAccount:service-${local.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  storage_agent = "serviceAccount:${data.google_storage_project_service_account.this.email_address}"

  # Project IDs are globally unique, so these bucket names are too (at most 23 + 8 + 30 = 61
  # characters, within the 63 Cloud Storage allows).
  input_bucket_name  = "${var.name}-input-${var.project_id}"
  output_bucket_name = "${var.name}-output-${var.project_id}"

  database_name = "projects/${var.project_id}/databases/${var.database}"
  worker_member = "serviceAccount:${google_service_account.worker.email}"
  signed_urls   = var.presign_ttl_seconds > 0

  # GKE's Workload Identity pool: one per project, shared by every cluster in it.
  workload_pool = "${var.project_id}.svc.id.goog"
  # A Kubernetes ServiceAccount as an IAM principal of its own, without a Google service account.
  pool_principal = "principal://iam.googleapis.com/projects/${local.project_number}/locations/global/workloadIdentityPools/${local.workload_pool}"
  keda_member = (
    var.keda_google_service_account != ""
    ? "serviceAccount:${var.keda_google_service_account}"
    : "${local.pool_principal}/subject/ns/${var.keda_namespace}/sa/${var.keda_service_account}"
  )

  # Custom role IDs allow letters, digits, "_" and "." only.
  role_prefix = replace(var.name, "-", "_")
}
