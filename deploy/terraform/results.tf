# Results: the DynamoDB table (only key: string partition key `pk`) and the SNS topic.

resource "aws_dynamodb_table" "results" {
  name                        = "${var.name}-results"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  deletion_protection_enabled = true

  attribute {
    name = "pk"
    type = "S"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = local.kms_key_arn
  }

  tags = var.tags
}

resource "aws_sns_topic" "results" {
  name              = "${var.name}-results"
  kms_master_key_id = local.use_kms ? aws_kms_key.this[0].arn : "alias/aws/sns"
  tags              = var.tags
}
