# Input queue, dead-letter queue, and who may send to the queue.

resource "aws_sqs_queue" "dlq" {
  name                              = "${local.queue_name}-dlq"
  message_retention_seconds         = 1209600
  sqs_managed_sse_enabled           = local.use_kms ? null : true
  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = local.use_kms ? 300 : null
  tags                              = var.tags
}

resource "aws_sqs_queue" "input" {
  name                              = local.queue_name
  visibility_timeout_seconds        = var.queue_visibility_timeout
  receive_wait_time_seconds         = 20
  message_retention_seconds         = var.message_retention_seconds
  sqs_managed_sse_enabled           = local.use_kms ? null : true
  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = local.use_kms ? 300 : null

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })

  tags = var.tags
}

# Only the input queue may dead-letter into the DLQ.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.input.arn]
  })
}

data "aws_iam_policy_document" "queue" {
  dynamic "statement" {
    for_each = local.direct_to_sqs ? [1] : []
    content {
      sid       = "S3ObjectCreatedNotifications"
      effect    = "Allow"
      actions   = ["sqs:SendMessage"]
      resources = [aws_sqs_queue.input.arn]
      principals {
        type        = "Service"
        identifiers = ["s3.amazonaws.com"]
      }
      condition {
        test     = "ArnEquals"
        variable = "aws:SourceArn"
        values   = ["arn:${local.partition}:s3:::${local.input_bucket_name}"]
      }
      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [local.account_id]
      }
    }
  }

  dynamic "statement" {
    for_each = local.via_eventbridge ? [1] : []
    content {
      sid       = "EventBridgeObjectCreatedRule"
      effect    = "Allow"
      actions   = ["sqs:SendMessage"]
      resources = [aws_sqs_queue.input.arn]
      principals {
        type        = "Service"
        identifiers = ["events.amazonaws.com"]
      }
      condition {
        test     = "ArnEquals"
        variable = "aws:SourceArn"
        values   = ["arn:${local.partition}:events:${local.region}:${local.account_id}:rule/${local.rule_name}"]
      }
      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [local.account_id]
      }
    }
  }

  # Guard rail: a Deny can only remove access.
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.input.arn]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "input" {
  queue_url = aws_sqs_queue.input.id
  policy    = data.aws_iam_policy_document.queue.json
}
