output "project_id" {
  description = "GOOGLE_CLOUD_PROJECT"
  value       = var.project_id
}

output "subscription" {
  description = "PIPELINED_SUBSCRIPTION"
  value       = google_pubsub_subscription.jobs.id
}

output "subscription_name" {
  description = "Subscription ID (Cloud Monitoring label subscription_id, for backlog-based scaling)"
  value       = google_pubsub_subscription.jobs.name
}

output "topic" {
  description = "PIPELINED_TOPIC"
  value       = google_pubsub_topic.results.id
}

output "jobs_topic" {
  value = google_pubsub_topic.jobs.id
}

output "dead_letter_subscription" {
  value = google_pubsub_subscription.dead_letter.id
}

output "results_subscription" {
  value = var.create_results_subscription ? google_pubsub_subscription.results[0].id : null
}

output "input_bucket_name" {
  value = google_storage_bucket.input.name
}

output "output_bucket_name" {
  description = "PIPELINED_OUTPUT_BUCKET"
  value       = google_storage_bucket.output.name
}

output "output_prefix" {
  description = "PIPELINED_OUTPUT_PREFIX"
  value       = var.output_prefix
}

output "database" {
  description = "PIPELINED_DATABASE"
  value       = var.database
}

output "collection" {
  description = "PIPELINED_COLLECTION"
  value       = var.collection
}

output "presign_ttl_s" {
  description = "PIPELINED_PRESIGN_TTL_S"
  value       = var.presign_ttl_seconds
}

output "worker_service_account_email" {
  description = "ServiceAccount annotation iam.gke.io/gcp-service-account"
  value       = google_service_account.worker.email
}
