# The jobs topic and its pull subscription (the daemon's queue), the dead-letter topic and the
# subscription that keeps dead letters, and the results topic.

resource "google_pubsub_topic" "jobs" {
  # checkov:skip=CKV_GCP_83:Google-managed encryption at rest; a customer-managed key is a project decision (key rings cannot be deleted) and the messages carry object names, not contents.
  project = var.project_id
  name    = "${var.name}-jobs"
  labels  = var.labels
}

resource "google_pubsub_topic_iam_member" "storage_agent_publishes_jobs" {
  project = var.project_id
  topic   = google_pubsub_topic.jobs.name
  role    = "roles/pubsub.publisher"
  member  = local.storage_agent
}

resource "google_pubsub_subscription" "jobs" {
  project = var.project_id
  name    = "${var.name}-jobs"
  topic   = google_pubsub_topic.jobs.id
  labels  = var.labels

  # The initial lease of a pulled message. The daemon sets its own deadline right after each pull
  # and extends it while the job runs, so this matters only for a message pulled by a worker that
  # died before that first modifyAckDeadline.
  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = "${var.message_retention_seconds}s"
  retain_acked_messages      = false
  # The ledger makes a second delivery safe; exactly-once would add a round trip to every ack
  # and deadline change, and refuse acks of expired ack IDs.
  enable_exactly_once_delivery = false
  enable_message_ordering      = false

  # Never deleted for inactivity (the default is after 31 days without a pull), e.g. while the
  # workers are scaled down.
  expiration_policy {
    ttl = ""
  }

  # Pub/Sub counts delivery attempts only on a subscription with a dead-letter policy; without
  # one, a message that keeps failing is retried until it expires. The daemon checks for it at
  # start-up (subscriptions.get) and warns when it is missing.
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  # Applied on top of the daemon's own delays (a release is a deadline change), and to messages
  # whose deadline ran out because their worker died.
  retry_policy {
    minimum_backoff = "${var.retry_minimum_backoff_seconds}s"
    maximum_backoff = "${var.retry_maximum_backoff_seconds}s"
  }

  lifecycle {
    precondition {
      condition     = var.retry_minimum_backoff_seconds <= var.retry_maximum_backoff_seconds
      error_message = "retry_minimum_backoff_seconds must not exceed retry_maximum_backoff_seconds."
    }
  }
}

resource "google_pubsub_topic" "dead_letter" {
  # checkov:skip=CKV_GCP_83:Google-managed encryption at rest; a customer-managed key is a project decision (key rings cannot be deleted) and the messages carry object names, not contents.
  project = var.project_id
  name    = "${var.name}-jobs-dead-letter"
  labels  = var.labels
}

# Pub/Sub's service agent forwards a message to the dead-letter topic (publish) and then
# acknowledges it on the jobs subscription (subscriber). Without either, dead-lettering
# silently does not happen and the message is redelivered until it expires.
resource "google_pubsub_topic_iam_member" "pubsub_agent_publishes_dead_letters" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_acknowledges_dead_letters" {
  project      = var.project_id
  subscription = google_pubsub_subscription.jobs.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# A topic without subscriptions drops what is published to it: this one keeps the dead letters
# for an operator to inspect and to move back. The worker has no access to it.
resource "google_pubsub_subscription" "dead_letter" {
  project                    = var.project_id
  name                       = "${var.name}-jobs-dead-letter"
  topic                      = google_pubsub_topic.dead_letter.id
  labels                     = var.labels
  ack_deadline_seconds       = 600
  message_retention_duration = "${var.dead_letter_retention_seconds}s"

  expiration_policy {
    ttl = ""
  }
}

# One notification per outcome, attributes "status" and "kind".
resource "google_pubsub_topic" "results" {
  # checkov:skip=CKV_GCP_83:Google-managed encryption at rest; a customer-managed key is a project decision (key rings cannot be deleted) and notifications carry object names and artifact keys, not contents.
  project = var.project_id
  name    = "${var.name}-results"
  labels  = var.labels
}

resource "google_pubsub_subscription" "results" {
  count = var.create_results_subscription ? 1 : 0

  project                    = var.project_id
  name                       = "${var.name}-results"
  topic                      = google_pubsub_topic.results.id
  labels                     = var.labels
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  expiration_policy {
    ttl = ""
  }
}
