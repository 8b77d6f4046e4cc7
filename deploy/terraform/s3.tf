# Input bucket (with its object-created notification) and output bucket.

locals {
  buckets = {
    input  = local.input_bucket_name
    output = local.output_bucket_name
  }
}

resource "aws_s3_bucket" "this" {
  for_each = local.buckets

  # checkov:skip=CKV_AWS_18:Access logging is optional (var.access_log_bucket, aws_s3_bucket_logging below); the log bucket is account infrastructure this module does not own.
  # checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery decision of the operator; inputs can be re-uploaded and artifacts regenerated.
  # checkov:skip=CKV2_AWS_62:Only the input bucket needs event notifications (aws_s3_bucket_notification.input); the output bucket feeds nothing.
  bucket = each.value
  tags   = var.tags
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each = local.buckets

  bucket                  = aws_s3_bucket.this[each.key].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = local.buckets

  bucket = aws_s3_bucket.this[each.key].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "this" {
  for_each = local.buckets

  bucket = aws_s3_bucket.this[each.key].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = local.buckets

  bucket = aws_s3_bucket.this[each.key].id
  rule {
    bucket_key_enabled = true
    apply_server_side_encryption_by_default {
      sse_algorithm     = local.use_kms ? "aws:kms" : "AES256"
      kms_master_key_id = local.kms_key_arn
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  for_each = local.buckets

  bucket = aws_s3_bucket.this[each.key].id
  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

resource "aws_s3_bucket_logging" "this" {
  for_each = var.access_log_bucket == "" ? {} : local.buckets

  bucket        = aws_s3_bucket.this[each.key].id
  target_bucket = var.access_log_bucket
  target_prefix = "${var.name}-${each.key}/"
}

data "aws_iam_policy_document" "bucket" {
  for_each = local.buckets

  # Guard rail: a Deny can only remove access.
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.this[each.key].arn, "${aws_s3_bucket.this[each.key].arn}/*"]
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

resource "aws_s3_bucket_policy" "this" {
  for_each = local.buckets

  bucket = aws_s3_bucket.this[each.key].id
  policy = data.aws_iam_policy_document.bucket[each.key].json

  depends_on = [aws_s3_bucket_public_access_block.this]
}

# Direct mode: s3:ObjectCreated:* to the queue. EventBridge mode: everything to the default bus,
# filtered by the rule in eventbridge.tf. S3 validates the destination when this is applied, so
# the queue policy must exist first.
resource "aws_s3_bucket_notification" "input" {
  bucket      = aws_s3_bucket.this["input"].id
  eventbridge = local.via_eventbridge

  dynamic "queue" {
    for_each = local.direct_to_sqs ? [1] : []
    content {
      queue_arn = aws_sqs_queue.input.arn
      events    = ["s3:ObjectCreated:*"]
    }
  }

  depends_on = [aws_sqs_queue_policy.input]
}
