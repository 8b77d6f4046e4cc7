"""AWS implementations of the ports: SQS queue, S3 object store, DynamoDB ledger, SNS notifier."""
