"""Small operator helpers for a local stack: upload a file, watch the notifications."""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path

import boto3


def upload(path: str, bucket: str, key: str | None) -> int:
    source = Path(path)
    key = key or source.name
    content_type = mimetypes.guess_type(source.name)[0] or "application/octet-stream"
    boto3.client("s3").upload_file(
        str(source), bucket, key, ExtraArgs={"ContentType": content_type}
    )
    print(f"uploaded s3://{bucket}/{key} ({source.stat().st_size} bytes)")
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
