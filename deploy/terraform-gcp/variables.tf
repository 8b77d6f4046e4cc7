variable "project_id" {
  description = "Project of every resource; GOOGLE_CLOUD_PROJECT."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID (6-30 lower-case letters, digits and dashes), not a project number."
  }
}

variable "location" {
  description = "Location of the buckets and, unless firestore_location is set, of the Firestore database, e.g. europe-west1."
  type        = string
}

variable "firestore_location" {
  description = "Firestore location when it differs from location (e.g. the multi-region eur3); null: location."
  type        = string
  default     = null
}

variable "name" {
  description = "Prefix of every resource name, 2-23 characters (the worker's service account ID adds \"-worker\" and must stay within 30)."
  type        = string
  default     = "pipelined"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,21}[a-z0-9]$", var.name)) && !startswith(var.name, "goog") && !strcontains(var.name, "google")
    error_message = "name: lower-case letters, digits and dashes, 2-23 characters, not ending in a dash; not starting with \"goog\" nor containing \"google\" (bucket names may not)."
  }
}

variable "output_prefix" {
  description = "PIPELINED_OUTPUT_PREFIX; the worker may write only below it. Not empty, ending in \"/\"."
  type        = string
  default     = "pipelined/"

  validation {
    condition     = var.output_prefix != "" && endswith(var.output_prefix, "/") && !startswith(var.output_prefix, "/")
    error_message = "output_prefix must be non-empty, end with \"/\" and not start with one."
  }
}

variable "ack_deadline_seconds" {
  description = "The jobs subscription's ack deadline, the initial lease of a pulled message; keep equal to PIPELINED_VISIBILITY_TIMEOUT_S."
  type        = number
  default     = 60

  validation {
    condition     = var.ack_deadline_seconds >= 10 && var.ack_deadline_seconds <= 600
    error_message = "ack_deadline_seconds must be between 10 and 600 (Pub/Sub's limits)."
  }
}

variable "message_retention_seconds" {
  description = "How long the jobs subscription keeps an unacknowledged message (the dead-letter subscription keeps its own for dead_letter_retention_seconds)."
  type        = number
  default     = 345600

  validation {
    condition     = var.message_retention_seconds >= 600 && var.message_retention_seconds <= 2678400
    error_message = "message_retention_seconds must be between 600 (10 minutes) and 2678400 (31 days)."
  }
}

variable "max_delivery_attempts" {
  description = "Delivery attempts before Pub/Sub moves a message to the dead-letter topic."
  type        = number
  default     = 5

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be between 5 and 100 (Pub/Sub's limits)."
  }
}

variable "retry_minimum_backoff_seconds" {
  description = "Pub/Sub's delay before redelivering a message that was nacked or whose deadline ran out."
  type        = number
  default     = 10

  validation {
    condition     = var.retry_minimum_backoff_seconds >= 0 && var.retry_minimum_backoff_seconds <= 600
    error_message = "retry_minimum_backoff_seconds must be between 0 and 600."
  }
}

variable "retry_maximum_backoff_seconds" {
  description = "Upper bound of Pub/Sub's exponential redelivery backoff."
  type        = number
  default     = 600

  validation {
    condition     = var.retry_maximum_backoff_seconds >= 0 && var.retry_maximum_backoff_seconds <= 600
    error_message = "retry_maximum_backoff_seconds must be between 0 and 600."
  }
}

variable "dead_letter_retention_seconds" {
  description = "How long the dead-letter subscription keeps a message."
  type        = number
  default     = 1209600

  validation {
    condition     = var.dead_letter_retention_seconds >= 600 && var.dead_letter_retention_seconds <= 2678400
    error_message = "dead_letter_retention_seconds must be between 600 (10 minutes) and 2678400 (31 days)."
  }
}

variable "create_results_subscription" {
  description = "Also create a pull subscription of the results topic (NAME-results), for a consumer of the notifications."
  type        = bool
  default     = false
}

variable "create_database" {
  description = "Create the Firestore database. false: use an existing Native-mode database named var.database (a project has only one \"(default)\")."
  type        = bool
  default     = true
}

variable "database" {
  description = "Firestore database ID; PIPELINED_DATABASE."
  type        = string
  default     = "(default)"

  validation {
    condition     = var.database == "(default)" || can(regex("^[a-z][a-z0-9-]{2,61}[a-z0-9]$", var.database))
    error_message = "database must be \"(default)\" or 4-63 lower-case letters, digits and dashes."
  }
}

variable "collection" {
  description = "Firestore collection of the ledger's documents; PIPELINED_COLLECTION."
  type        = string
  default     = "pipelined-jobs"

  validation {
    condition     = can(regex("^[^/]+$", var.collection)) && !startswith(var.collection, "__")
    error_message = "collection must be a top-level collection ID: no \"/\", not starting with \"__\"."
  }
}

variable "input_versioning" {
  description = "Object versioning on the input bucket: an upload overwritten before its job ran stays readable by generation until noncurrent_version_expiration_days."
  type        = bool
  default     = true
}

variable "noncurrent_version_expiration_days" {
  description = "Days before a noncurrent input generation is deleted."
  type        = number
  default     = 30
}

variable "artifact_retention_days" {
  description = "Days before artifacts under output_prefix are deleted; 0 keeps them."
  type        = number
  default     = 0

  validation {
    condition     = var.artifact_retention_days >= 0
    error_message = "artifact_retention_days must be 0 (keep) or a number of days."
  }
}

variable "presign_ttl_seconds" {
  description = "PIPELINED_PRESIGN_TTL_S. Above 0 the daemon signs V4 URLs through IAM signBlob: the worker may then mint tokens for itself and read its artifacts (a signed URL carries the signer's access)."
  type        = number
  default     = 0

  validation {
    condition     = var.presign_ttl_seconds >= 0 && var.presign_ttl_seconds <= 604800
    error_message = "presign_ttl_seconds must be between 0 (off) and 604800 (7 days, the V4 limit)."
  }
}

variable "access_log_bucket" {
  description = "Existing bucket for Cloud Storage usage logs; empty disables them (Cloud Audit Logs record data access either way, when enabled)."
  type        = string
  default     = ""
}

variable "workload_identity" {
  description = "Bind the worker's Kubernetes ServiceAccount to its service account (Workload Identity Federation for GKE), and let the KEDA operator read the subscription backlog. Needs a GKE cluster with Workload Identity in the project."
  type        = bool
  default     = true
}

variable "gke_namespace" {
  description = "Namespace of the worker's Kubernetes ServiceAccount."
  type        = string
  default     = "pipelined"
}

variable "gke_service_account" {
  description = "The worker's Kubernetes ServiceAccount."
  type        = string
  default     = "pipelined"
}

variable "keda_namespace" {
  description = "Namespace of the KEDA operator."
  type        = string
  default     = "keda"
}

variable "keda_service_account" {
  description = "Kubernetes ServiceAccount of the KEDA operator."
  type        = string
  default     = "keda-operator"
}

variable "keda_google_service_account" {
  description = "Email of the Google service account the KEDA operator's ServiceAccount is annotated with, if it is; empty: grant the operator's Kubernetes identity directly."
  type        = string
  default     = ""
}

variable "labels" {
  description = "Labels for every resource that takes them."
  type        = map(string)
  default     = {}
}
