variable "name" {
  description = "Prefix of every resource name, 2-24 characters (bucket names add account and region and must stay within 63)."
  type        = string
  default     = "pipelined"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,23}$", var.name))
    error_message = "name: lower-case letters, digits and dashes, 2-24 characters."
  }
}

variable "notification_mode" {
  description = "sqs: the bucket notifies the queue directly. eventbridge: the bucket sends events to EventBridge and a rule forwards Object Created events to the queue (message body is the EventBridge envelope)."
  type        = string
  default     = "sqs"

  validation {
    condition     = contains(["sqs", "eventbridge"], var.notification_mode)
    error_message = "notification_mode must be \"sqs\" or \"eventbridge\"."
  }
}

variable "max_receive_count" {
  description = "Receives before SQS moves a message to the dead-letter queue."
  type        = number
  default     = 5

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000
    error_message = "max_receive_count must be between 1 and 1000."
  }
}

variable "queue_visibility_timeout" {
  description = "Initial lease of a received message, in seconds; keep equal to PIPELINED_VISIBILITY_TIMEOUT_S."
  type        = number
  default     = 60
}

variable "message_retention_seconds" {
  description = "Input queue retention (the dead-letter queue keeps messages 14 days)."
  type        = number
  default     = 345600
}

variable "output_prefix" {
  description = "PIPELINED_OUTPUT_PREFIX; the worker may write only below it. Not empty, ending in \"/\"."
  type        = string
  default     = "pipelined/"

  validation {
    condition     = var.output_prefix != "" && endswith(var.output_prefix, "/")
    error_message = "output_prefix must be non-empty and end with \"/\"."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days before overwritten or deleted object versions are removed from both buckets."
  type        = number
  default     = 30
}

variable "access_log_bucket" {
  description = "Existing bucket for S3 server access logs; empty disables access logging."
  type        = string
  default     = ""
}

variable "create_kms_key" {
  description = "true: one customer managed key encrypts queues, buckets, topic and table. false: SSE-SQS, SSE-S3 and AWS managed keys."
  type        = bool
  default     = true
}

variable "eks_oidc_provider_arn" {
  description = "IAM OIDC provider of the EKS cluster; when set, creates the worker's IRSA role and the KEDA scaler role."
  type        = string
  default     = ""
}

variable "eks_namespace" {
  description = "Namespace of the worker's ServiceAccount."
  type        = string
  default     = "pipelined"
}

variable "eks_service_account" {
  description = "The worker's ServiceAccount."
  type        = string
  default     = "pipelined"
}

variable "keda_namespace" {
  description = "Namespace of the KEDA operator."
  type        = string
  default     = "keda"
}

variable "keda_service_account" {
  description = "ServiceAccount of the KEDA operator."
  type        = string
  default     = "keda-operator"
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
