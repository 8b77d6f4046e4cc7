# EventBridge variant: forward the input bucket's "Object Created" events to the queue.

resource "aws_cloudwatch_event_rule" "object_created" {
  count = local.via_eventbridge ? 1 : 0

  name        = local.rule_name
  description = "Object Created events of ${local.input_bucket_name} to the ${var.name} input queue"
  state       = "ENABLED"

  event_pattern = jsonencode({
    source        = ["aws.s3"]
    "detail-type" = ["Object Created"]
    detail = {
      bucket = { name = [aws_s3_bucket.this["input"].id] }
    }
  })

  tags = var.tags
}

resource "aws_cloudwatch_event_target" "queue" {
  count = local.via_eventbridge ? 1 : 0

  rule      = aws_cloudwatch_event_rule.object_created[0].name
  target_id = "input-queue"
  arn       = aws_sqs_queue.input.arn

  retry_policy {
    maximum_event_age_in_seconds = 86400
    maximum_retry_attempts       = 185
  }
}
