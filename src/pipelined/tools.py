"""Small operator helpers for a local stack: upload a file, watch the notifications."""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING

import boto3

if TYPE_CHECKING:  # Google's libraries load only for the commands that use them
    from google.pubsub_v1.services.subscriber import SubscriberClient
    from google.pubsub_v1.types import PubsubMessage


def upload(path: str, bucket: str, key: str | None, backend: str = "aws") -> int:
    source = Path(path)
    key = key or source.name
    content_type = mimetypes.guess_type(source.name)[0] or "application/octet-stream"
    if backend == "gcp":
        from google.cloud import storage

        blob = storage.Client().bucket(bucket).blob(key)
        blob.upload_from_filename(str(source), content_type=content_type)
        url = f"gs://{bucket}/{key}"
    else:
        boto3.client("s3").upload_file(
            str(source), bucket, key, ExtraArgs={"ContentType": content_type}
        )
        url = f"s3://{bucket}/{key}"
    print(f"uploaded {url} ({source.stat().st_size} bytes)")
    return 0


def watch(queue_url: str) -> int:
    """Long-poll the queue and print each notification until interrupted."""
    sqs = boto3.client("sqs")
    print(f"watching {queue_url} (Ctrl-C to stop)")
    while True:
        response = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=20
        )
        for message in response.get("Messages", []):
            print(json.dumps(unwrap_notification(message["Body"]), indent=2, ensure_ascii=False))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def watch_subscription(subscription: str) -> int:
    """Pull the subscription and print each notification until interrupted."""
    from google.pubsub_v1.services.subscriber import SubscriberClient

    client = SubscriberClient()
    print(f"watching {subscription} (Ctrl-C to stop)")
    while True:
        for message in take_messages(client, subscription, timeout_s=20):
            notification = json.loads(message.data)
            print(json.dumps(notification, indent=2, ensure_ascii=False))


def take_messages(
    client: SubscriberClient, subscription: str, timeout_s: float
) -> list[PubsubMessage]:
    """One pull of up to ten messages, acknowledged: [] when none came within ``timeout_s``."""
    from google.api_core import exceptions

    try:
        response = client.pull(subscription=subscription, max_messages=10, timeout=timeout_s)
    except exceptions.DeadlineExceeded:
        return []  # an empty pull may end so, rather than with no messages
    received = response.received_messages
    if received:
        ack_ids = [message.ack_id for message in received]
        client.acknowledge(subscription=subscription, ack_ids=ack_ids)
    return [message.message for message in received]


def unwrap_notification(body: str) -> dict[str, object]:
    """An SNS -> SQS message wraps our JSON in an envelope; return ours."""
    envelope = json.loads(body)
    if isinstance(envelope, dict) and envelope.get("Type") == "Notification":
        inner: dict[str, object] = json.loads(envelope["Message"])
        return inner
    result: dict[str, object] = envelope
    return result


def notification_attributes(body: str) -> dict[str, str]:
    """The SNS message attributes (status, kind) an enveloped notification carries."""
    envelope = json.loads(body)
    attributes = envelope.get("MessageAttributes", {}) if isinstance(envelope, dict) else {}
    return {name: str(value["Value"]) for name, value in attributes.items()}
