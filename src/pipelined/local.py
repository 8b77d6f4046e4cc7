"""The embedded stack: moto in server mode on 127.0.0.1, provisioned like production.

Used by ``pipelined local``, ``pipelined demo`` and the tests; never by ``pipelined run``.
The daemon reaches it over HTTP through AWS_ENDPOINT_URL, exactly as it would reach AWS.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

REGION = "us-east-1"
DLQ_MAX_RECEIVE_COUNT = 5


@dataclass(frozen=True)
class Credentials:
    """An access key pair. The emulator accepts any pair unless it is told to enforce IAM."""

    access_key_id: str = "test"
    secret_access_key: str = "test"  # noqa: S105 (the emulator's placeholder, no secret)

    def environment(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }


CREDENTIALS = Credentials()


@dataclass(frozen=True)
class LocalStack:
    """Names and addresses of everything provisioned on the emulator."""

    endpoint_url: str
    input_bucket: str
    output_bucket: str
    queue_url: str
    dead_letter_queue_url: str
    table: str
    topic_arn: str
    watch_queue_url: str  # subscribed to the topic, to read the notifications back
    # Whose keys the daemon and client() use: replace() gives the same stack as another identity.
    credentials: Credentials = CREDENTIALS

    def aws_environment(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_REGION": REGION,
            **self.credentials.environment(),
        }

    def daemon_environment(self) -> dict[str, str]:
        """Everything ``pipelined run`` needs to point at this stack."""
        return {
            **self.aws_environment(),
            "PIPELINED_QUEUE_URL": self.queue_url,
            "PIPELINED_OUTPUT_BUCKET": self.output_bucket,
            "PIPELINED_TABLE": self.table,
            "PIPELINED_TOPIC_ARN": self.topic_arn,
        }

    def client(self, service: str) -> Any:
        return aws_client(self.endpoint_url, service, self.credentials)


def aws_client(
    endpoint_url: str,
    service: str,
    credentials: Credentials = CREDENTIALS,
    config: Config | None = None,
) -> Any:
    """A synchronous boto3 client for the emulator (set-up and inspection, not the daemon)."""
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        config=config,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def emulator(port: int | None = None) -> Iterator[str]:
    """Run moto's server in a thread on 127.0.0.1; yield its endpoint URL."""
    from moto.server import ThreadedMotoServer  # the emulator is a dev/local extra

    # The emulator's request log would drown the daemon's own lines.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    make_dynamodb_writes_atomic()
    # Port 0: the kernel picks a free one as it binds, so no other process can take it between
    # the choice and the bind (as it could after free_port()).
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port or 0, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.stop()


_DYNAMODB_WRITE_LOCK = threading.Lock()


def make_dynamodb_writes_atomic() -> None:
    """DynamoDB applies each conditional write atomically; moto serves requests on threads and
    does not, so two concurrent claims could both pass their condition. A lock around the
    emulator's write operations restores the guarantee the ledger relies on.
    """
    from moto.dynamodb.models import DynamoDBBackend

    for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
        method = getattr(DynamoDBBackend, name)
        if getattr(method, "_pipelined_atomic", False):
            continue

        def locked(*args: Any, __method: Any = method, **kwargs: Any) -> Any:
            with _DYNAMODB_WRITE_LOCK:
                return __method(*args, **kwargs)

        locked._pipelined_atomic = True  # type: ignore[attr-defined]
        setattr(DynamoDBBackend, name, functools.wraps(method)(locked))


def provision(
    endpoint_url: str, name: str | None = None, *, same_bucket: bool = True
) -> LocalStack:
    """Create the resources as production has them: input bucket -> SQS (with a DLQ), a topic,
    the ledger table. With ``same_bucket`` the artifacts go back into the input bucket under the
    output prefix, which exercises the daemon's guard against processing its own output.
    """
    name = name or f"pipelined-{uuid.uuid4().hex[:8]}"
    sqs, s3, sns, dynamodb = (aws_client(endpoint_url, s) for s in ("sqs", "s3", "sns", "dynamodb"))

    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = queue_arn(sqs, dlq_url)
    queue_url = sqs.create_queue(
        QueueName=f"{name}-jobs",
        Attributes={
            "VisibilityTimeout": "60",
            "SqsManagedSseEnabled": "true",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": DLQ_MAX_RECEIVE_COUNT}
            ),
        },
    )["QueueUrl"]
    jobs_arn = queue_arn(sqs, queue_url)

    input_bucket = f"{name}-uploads"
    output_bucket = input_bucket if same_bucket else f"{name}-artifacts"
    for bucket in {input_bucket, output_bucket}:
        s3.create_bucket(Bucket=bucket)
    sqs.set_queue_attributes(
        QueueUrl=queue_url, Attributes={"Policy": _allow_s3_policy(jobs_arn, input_bucket)}
    )
    s3.put_bucket_notification_configuration(
        Bucket=input_bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": jobs_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )

    topic_arn = sns.create_topic(Name=f"{name}-results")["TopicArn"]
    watch_url = sqs.create_queue(QueueName=f"{name}-watch")["QueueUrl"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn(sqs, watch_url))

    table = f"{name}-jobs"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return LocalStack(
        endpoint_url=endpoint_url,
        input_bucket=input_bucket,
        output_bucket=output_bucket,
        queue_url=queue_url,
        dead_letter_queue_url=dlq_url,
        table=table,
        topic_arn=topic_arn,
        watch_queue_url=watch_url,
    )


def queue_arn(sqs: Any, queue_url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def _allow_s3_policy(queue_arn: str, bucket: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "s3.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
                }
            ],
        }
    )


def apply_environment(stack: LocalStack) -> None:
    """Point this process's AWS clients (and the daemon's settings) at the stack."""
    os.environ.update(stack.daemon_environment())
