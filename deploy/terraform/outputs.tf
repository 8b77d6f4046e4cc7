output "queue_url" {
  description = "PIPELINED_QUEUE_URL"
  value       = aws_sqs_queue.input.url
}

output "queue_name" {
  description = "Input queue name (CloudWatch dimension for backlog-based scaling)"
  value       = aws_sqs_queue.input.name
}

output "queue_arn" {
  value = aws_sqs_queue.input.arn
}

output "dead_letter_queue_url" {
  value = aws_sqs_queue.dlq.url
}

output "input_bucket_name" {
  value = aws_s3_bucket.this["input"].id
}

output "output_bucket_name" {
  description = "PIPELINED_OUTPUT_BUCKET"
  value       = aws_s3_bucket.this["output"].id
}

output "output_prefix" {
  description = "PIPELINED_OUTPUT_PREFIX"
  value       = var.output_prefix
}

output "table_name" {
  description = "PIPELINED_TABLE"
  value       = aws_dynamodb_table.results.name
}

output "topic_arn" {
  description = "PIPELINED_TOPIC_ARN"
  value       = aws_sns_topic.results.arn
}

output "worker_policy_arn" {
  description = "Attach to the role the daemon runs as"
  value       = aws_iam_policy.worker.arn
}

output "kms_key_arn" {
  value = local.kms_key_arn
}

output "worker_irsa_role_arn" {
  description = "ServiceAccount annotation eks.amazonaws.com/role-arn"
  value       = local.on_eks ? aws_iam_role.worker_irsa[0].arn : null
}

output "keda_scaler_role_arn" {
  description = "TriggerAuthentication spec.podIdentity.roleArn"
  value       = local.on_eks ? aws_iam_role.keda_scaler[0].arn : null
}
