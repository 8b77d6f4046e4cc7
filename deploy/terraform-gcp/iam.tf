# The worker's permissions: exactly the calls the daemon makes (src/pipelined/gcp/), on exactly
# this module's resources, granted on each resource rather than on the project wherever the service
# allows it. deploy/lint/checks.py compares these bindings with the calls.

resource "google_service_account" "worker" {
  project      = var.project_id
  account_id   = "${var.name}-worker"
  display_name = "pipelined worker (${var.name})"
  description  = "pipelined worker - pull the jobs subscription, read inputs, write artifacts, record and publish results"
}

# subscriber: pull, acknowledge, modifyAckDeadline. viewer: subscriptions.get, the start-up check
# for a dead-letter policy (subscriber lacks it); on a subscription it grants nothing else.
resource "google_pubsub_subscription_iam_member" "worker" {
  for_each = toset(["roles/pubsub.subscriber", "roles/pubsub.viewer"])

  project      = var.project_id
  subscription = google_pubsub_subscription.jobs.name
  role         = each.value
  member       = local.worker_member
}

resource "google_pubsub_topic_iam_member" "worker_publishes_results" {
  project = var.project_id
  topic   = google_pubsub_topic.results.name
  role    = "roles/pubsub.publisher"
  member  = local.worker_member
}

# storage.objects.get: downloads pinned by generation (and the size check before them). With get
# on the bucket, a missing object answers 404 ("source_version_deleted"), not 403.
resource "google_storage_bucket_iam_member" "worker_reads_inputs" {
  bucket = google_storage_bucket.input.name
  role   = "roles/storage.objectViewer"
  member = local.worker_member
}

# No predefined role has create and delete without list, update or ACL rights. Cloud Storage needs
# delete to replace an existing object, and a retried job uploads the same keys again.
# storage.objects.get only for signed URLs: a V4 URL carries the signer's own access.
resource "google_project_iam_custom_role" "artifact_writer" {
  project     = var.project_id
  role_id     = "${local.role_prefix}_artifact_writer"
  title       = "pipelined artifact writer (${var.name})"
  description = "Create and replace pipelined artifacts; granted on the output bucket, under the output prefix."
  permissions = concat(
    ["storage.objects.create", "storage.objects.delete"],
    local.signed_urls ? ["storage.objects.get"] : [],
  )
}

resource "google_storage_bucket_iam_member" "worker_writes_artifacts" {
  bucket = google_storage_bucket.output.name
  role   = google_project_iam_custom_role.artifact_writer.name
  member = local.worker_member

  condition {
    title       = "under-output-prefix"
    description = "Only objects under ${var.output_prefix}"
    expression  = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.output.name}/objects/${var.output_prefix}\")"
  }
}

# Firestore has no per-database or per-collection IAM: the binding is on the project, conditioned
# on the database. datastore.user is the narrowest predefined role that reads, creates and
# updates documents.
resource "google_project_iam_member" "worker_records_results" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = local.worker_member

  condition {
    title       = "ledger-database-only"
    description = "Only the ${var.database} database"
    expression  = "resource.name == \"${local.database_name}\""
  }

  depends_on = [google_firestore_database.this]
}

# Signed URLs (PIPELINED_PRESIGN_TTL_S > 0): Workload Identity credentials hold no key, so the
# daemon has IAM's signBlob sign as its own service account.
resource "google_service_account_iam_member" "worker_signs_urls" {
  count = local.signed_urls ? 1 : 0

  service_account_id = google_service_account.worker.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.worker_member
}

# GKE (optional): the worker's Kubernetes ServiceAccount acts as the service account above
# (annotation iam.gke.io/gcp-service-account), and KEDA reads the subscription backlog.

resource "google_service_account_iam_member" "worker_workload_identity" {
  count = var.workload_identity ? 1 : 0

  service_account_id = google_service_account.worker.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${local.workload_pool}[${var.gke_namespace}/${var.gke_service_account}]"
}

# KEDA's gcp-pubsub scaler reads num_undelivered_messages from Cloud Monitoring, whose IAM stops
# at the project, so KEDA never holds the worker's permissions. By default the grant goes to the
# KEDA operator's Kubernetes identity itself; with an annotated operator, to that service account.
resource "google_project_iam_member" "keda_reads_backlog" {
  count = var.workload_identity ? 1 : 0

  project = var.project_id
  role    = "roles/monitoring.viewer"
  member  = local.keda_member
}
