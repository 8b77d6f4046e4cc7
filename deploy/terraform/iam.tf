# The worker's permissions: exactly the calls the daemon makes (docs/iam.md), on exactly this
# module's resources. Attach aws_iam_policy.worker to the ECS task role, the IRSA role below or an
# EC2 instance role.

data "aws_iam_policy_document" "worker" {
  statement {
    sid    = "ConsumeInputQueue"
    effect = "Allow"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
    ]
    resources = [aws_sqs_queue.input.arn]
  }

  # The depth gauges: the dead-letter queue is found from the redrive policy by name.
  statement {
    sid       = "WatchDeadLetterQueue"
    effect    = "Allow"
    actions   = ["sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.dlq.arn]
  }

  statement {
    sid       = "ReadInputObjects"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.this["input"].arn}/*"]
  }

  # Not a call the daemon makes: S3 answers a read of a missing object with 404 only to a caller
  # that may list the bucket, and 403 to anyone else. 404 is recorded as "gone"; 403 would be
  # retried into the dead-letter queue.
  statement {
    sid       = "TellMissingInputsFromDenials"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this["input"].arn]
  }

  statement {
    sid       = "WriteArtifactsUnderOutputPrefix"
    effect    = "Allow"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.this["output"].arn}/${var.output_prefix}*"]
  }

  statement {
    sid       = "RecordResults"
    effect    = "Allow"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem"]
    resources = [aws_dynamodb_table.results.arn]
  }

  statement {
    sid       = "PublishNotifications"
    effect    = "Allow"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.results.arn]
  }

  dynamic "statement" {
    for_each = local.use_kms ? [1] : []
    content {
      sid       = "UseKeyThroughTheseServices"
      effect    = "Allow"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [local.kms_key_arn]
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values = [
          "sqs.${local.region}.${local.dns_suffix}",
          "s3.${local.region}.${local.dns_suffix}",
          "sns.${local.region}.${local.dns_suffix}",
          "dynamodb.${local.region}.${local.dns_suffix}",
        ]
      }
    }
  }
}

resource "aws_iam_policy" "worker" {
  name        = "${var.name}-worker"
  description = "pipelined worker - consume the input queue, read inputs, write outputs, record and notify results"
  policy      = data.aws_iam_policy_document.worker.json
  tags        = var.tags
}

# EKS (optional): the worker's IRSA role and the KEDA scaler role.

locals {
  oidc_issuer = local.on_eks ? split("oidc-provider/", var.eks_oidc_provider_arn)[1] : ""
}

data "aws_iam_policy_document" "irsa_trust" {
  for_each = local.on_eks ? {
    worker = "system:serviceaccount:${var.eks_namespace}:${var.eks_service_account}"
    keda   = "system:serviceaccount:${var.keda_namespace}:${var.keda_service_account}"
  } : {}

  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.eks_oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = [each.value]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "worker_irsa" {
  count = local.on_eks ? 1 : 0

  name                 = "${var.name}-worker"
  description          = "pipelined worker on EKS (IRSA)"
  max_session_duration = 3600
  assume_role_policy   = data.aws_iam_policy_document.irsa_trust["worker"].json
  tags                 = var.tags
}

resource "aws_iam_role_policy_attachment" "worker_irsa" {
  count = local.on_eks ? 1 : 0

  role       = aws_iam_role.worker_irsa[0].name
  policy_arn = aws_iam_policy.worker.arn
}

# KEDA's aws-sqs-queue scaler reads the queue depth with this role (TriggerAuthentication
# podIdentity.roleArn), so KEDA never holds the worker's permissions.
resource "aws_iam_role" "keda_scaler" {
  count = local.on_eks ? 1 : 0

  name                 = "${var.name}-keda-scaler"
  description          = "KEDA reads the pipelined input queue depth"
  max_session_duration = 3600
  assume_role_policy   = data.aws_iam_policy_document.irsa_trust["keda"].json
  tags                 = var.tags
}

data "aws_iam_policy_document" "keda_scaler" {
  statement {
    effect    = "Allow"
    actions   = ["sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.input.arn]
  }
}

resource "aws_iam_role_policy" "keda_scaler" {
  count = local.on_eks ? 1 : 0

  name   = "read-queue-depth"
  role   = aws_iam_role.keda_scaler[0].id
  policy = data.aws_iam_policy_document.keda_scaler.json
}
