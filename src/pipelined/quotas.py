"""Limits of the cloud services themselves, in one place (not settings: AWS fixes them)."""

SQS_MAX_BATCH = 10
"""ReceiveMessage, DeleteMessageBatch and ChangeMessageVisibilityBatch take at most ten."""

SQS_MAX_WAIT_TIME_S = 20
"""Longest long poll ReceiveMessage allows."""

SQS_MAX_VISIBILITY_TIMEOUT_S = 12 * 60 * 60
"""A message's visibility timeout can never exceed twelve hours in total."""

SNS_MAX_MESSAGE_BYTES = 256 * 1024
"""A notification larger than this is refused by SNS."""

PUBSUB_MAX_ACK_DEADLINE_S = 600
"""The longest ack deadline one modifyAckDeadline sets (or a subscription has): ten minutes."""
