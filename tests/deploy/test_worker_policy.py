"""The daemon runs with exactly the worker policy the templates deploy, on an emulator that
enforces IAM.

moto enforces IAM once it is told to (``/moto-api/reset-auth``): from then on every request
must be signed with the keys of an IAM user, and the user's policies must allow it. That
switch is process-wide, so these tests get a moto process of their own and the session
emulator the other tests share is never affected.

The policy is rendered from ``deploy/cloudformation/pipelined-resources.yaml``, then put in
the emulator's dialect, where moto's authorisation differs from AWS's:

- moto authorises a batch call under the batch's own name (``sqs:DeleteMessageBatch``); AWS
  authorises it under the single-message action the policy grants (``sqs:DeleteMessage``).
  The batch names are added beside those actions.
- moto checks the resource of SQS and S3 requests only. DynamoDB and SNS requests are matched
  against ``*``, so a statement naming the table or the topic would never match; those
  statements are widened to ``*``, their actions unchanged.
- moto finds an SQS request's queue from its QueueUrl, which GetQueueUrl does not have (it
  names the queue), and matches it against ``*``: that action moves to a statement of its own
  on ``*``.

Everything else is enforced as AWS would: each action by name, and the queue, the input bucket
and its objects, and the output prefix by ARN.
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pipelined import samples
from pipelined.aws.ledger import item_key, item_to_dynamo
from pipelined.ledger.document import to_document
from pipelined.ledger.machine import ObjectState, Processing, Version
from pipelined.local import (
    REGION,
    Credentials,
    LocalStack,
    aws_client,
    free_port,
    provision,
    queue_arn,
)
from tests.deploy.cloudformation import Resolver, load_template, policy_document
from tests.faults.daemon import Daemon, Upload, Watcher, ledger, object_keys, upload, wait_until
from tests.integration.helpers import queue_counts

pytestmark = pytest.mark.timeout(120)

ACCOUNT_ID = "123456789012"  # moto's default account
BATCH_NAMES = {
    "sqs:DeleteMessage": "sqs:DeleteMessageBatch",
    "sqs:ChangeMessageVisibility": "sqs:ChangeMessageVisibilityBatch",
}
RESOURCE_BLIND_SERVICES = ("dynamodb:", "sns:")
RESOURCE_BLIND_ACTIONS = frozenset({"sqs:GetQueueUrl"})


@dataclass(frozen=True)
class Deployment:
    """A provisioned stack on an IAM-enforcing emulator, seen by its operator, and the worker."""

    stack: LocalStack  # signed with the operator's keys: uploads and inspection
    worker: Credentials
    output_prefix: str
    worker_policy: dict[str, Any]  # as the template renders it for AWS
    emulator_policy: dict[str, Any]  # the same in moto's dialect

    @property
    def as_worker(self) -> LocalStack:
        return replace(self.stack, credentials=self.worker)


def emulator_dialect(policy: dict[str, Any]) -> dict[str, Any]:
    """``policy`` as moto must read it to allow exactly what AWS would (module docstring)."""
    translated = copy.deepcopy(policy)
    blind: list[str] = []
    for statement in translated["Statement"]:
        actions = as_list(statement["Action"])
        blind += [action for action in actions if action in RESOURCE_BLIND_ACTIONS]
        actions = [action for action in actions if action not in RESOURCE_BLIND_ACTIONS]
        statement["Action"] = actions + [BATCH_NAMES[a] for a in actions if a in BATCH_NAMES]
        if all(action.startswith(RESOURCE_BLIND_SERVICES) for action in actions):
            statement["Resource"] = "*"
    if blind:
        translated["Statement"].append(
            {"Sid": "ResourceBlindActions", "Effect": "Allow", "Action": blind, "Resource": "*"}
        )
    return translated


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


@pytest.fixture(scope="module")
def iam_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server process of its own, so that enforcing IAM affects only these tests."""
    port = free_port()
    log = tmp_path_factory.mktemp("iam-emulator") / "moto.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_until(lambda: _answers(url), timeout_s=30):
            raise AssertionError(f"moto did not start:\n{log.read_text(errors='replace')}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def deployment(iam_emulator: str) -> Deployment:
    """Provision, create the worker and an operator, then switch IAM enforcement on."""
    stack = provision(iam_emulator, same_bucket=False)
    template = load_template()
    output_prefix = str(template["Parameters"]["OutputPrefix"]["Default"])
    worker_policy = policy_document("WorkerPolicy", _resolver(stack, output_prefix), template)
    emulator_policy = emulator_dialect(worker_policy)

    iam = aws_client(iam_emulator, "iam")
    policy_arn = iam.create_policy(
        PolicyName="pipelined-worker", PolicyDocument=json.dumps(emulator_policy)
    )["Policy"]["Arn"]
    worker = _user(iam, "pipelined-worker", attach=policy_arn)
    # The test's own identity: it uploads, reads results and tries the worker's limits.
    everything = {"Effect": "Allow", "Action": "*", "Resource": "*"}
    operator = _user(iam, "operator", inline={"Version": "2012-10-17", "Statement": [everything]})

    _enforce_iam(iam_emulator)
    return Deployment(
        stack=replace(stack, credentials=operator),
        worker=worker,
        output_prefix=output_prefix,
        worker_policy=worker_policy,
        emulator_policy=emulator_policy,
    )


def _resolver(stack: LocalStack, output_prefix: str) -> Resolver:
    kms_key = aws_client(stack.endpoint_url, "kms").create_key()["KeyMetadata"]["Arn"]
    return Resolver(
        values={
            "AWS::Partition": "aws",
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::URLSuffix": "amazonaws.com",
            "Queue.Arn": queue_arn(stack.client("sqs"), stack.queue_url),
            "DeadLetterQueue.Arn": queue_arn(stack.client("sqs"), stack.dead_letter_queue_url),
            "InputBucket.Arn": f"arn:aws:s3:::{stack.input_bucket}",
            "OutputBucket.Arn": f"arn:aws:s3:::{stack.output_bucket}",
            "OutputPrefix": output_prefix,
            "Table.Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{stack.table}",
            "Topic": stack.topic_arn,
            "Key.Arn": kms_key,
        },
        conditions={"UseKms": True},  # the template's default: the whole policy
    )


def _user(
    iam: Any, name: str, attach: str | None = None, inline: dict[str, Any] | None = None
) -> Credentials:
    iam.create_user(UserName=name)
    if attach:
        iam.attach_user_policy(UserName=name, PolicyArn=attach)
    if inline:
        iam.put_user_policy(UserName=name, PolicyName=name, PolicyDocument=json.dumps(inline))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Credentials(key["AccessKeyId"], key["SecretAccessKey"])


def _enforce_iam(url: str) -> None:
    """From the next request on, moto authenticates and authorises every call."""
    # Not form-encoded: moto reads the raw body, which Flask leaves empty for a form.
    request = urllib.request.Request(
        f"{url}/moto-api/reset-auth", data=b"0", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=5) as reply:
        assert reply.status == 200


def refusal(call: Any) -> tuple[int, str]:
    """The HTTP status and error code ``call`` is refused with (moto's SQS reports only 403)."""
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], str(response["Error"]["Code"])


# ---------------------------------------------------------------------------------------------


def test_the_dialect_only_renames_batches_and_widens_what_moto_cannot_scope(
    deployment: Deployment,
) -> None:
    aws, emulated = deployment.worker_policy["Statement"], deployment.emulator_policy["Statement"]
    *emulated, blind = emulated
    assert blind == {
        "Sid": "ResourceBlindActions",
        "Effect": "Allow",
        "Action": sorted(RESOURCE_BLIND_ACTIONS),
        "Resource": "*",
    }
    assert [s["Sid"] for s in aws] == [s["Sid"] for s in emulated]
    for original, translated in zip(aws, emulated, strict=True):
        moved = set(as_list(original["Action"])) & RESOURCE_BLIND_ACTIONS
        assert set(as_list(original["Action"])) - set(translated["Action"]) == moved
        added = set(translated["Action"]) - set(as_list(original["Action"]))
        assert added <= set(BATCH_NAMES.values()), original["Sid"]
        if translated["Resource"] != original["Resource"]:
            assert original["Sid"] in {"RecordResults", "PublishNotifications"}
        assert translated.get("Condition") == original.get("Condition")


def test_enforcement_is_on_and_the_worker_keys_are_held_to_the_policy(
    deployment: Deployment,
) -> None:
    stack = deployment.stack
    unknown = replace(stack, credentials=Credentials())
    assert refusal(lambda: unknown.client("s3").list_buckets()) == (403, "InvalidAccessKeyId")

    worker = deployment.as_worker
    s3, sqs = worker.client("s3"), worker.client("sqs")
    denied = {
        "write into the input bucket": lambda: s3.put_object(
            Bucket=stack.input_bucket, Key="in/x", Body=b"x"
        ),
        "write outside the output prefix": lambda: s3.put_object(
            Bucket=stack.output_bucket, Key="elsewhere/x", Body=b"x"
        ),
        "send to its own queue": lambda: sqs.send_message(
            QueueUrl=stack.queue_url, MessageBody="{}"
        ),
        "read the dead-letter queue": lambda: sqs.receive_message(
            QueueUrl=stack.dead_letter_queue_url
        ),
        "delete a ledger item": lambda: worker.client("dynamodb").delete_item(
            TableName=stack.table, Key={"pk": {"S": "s3://x/y"}}
        ),
        "subscribe to the topic": lambda: worker.client("sns").subscribe(
            TopicArn=stack.topic_arn, Protocol="sqs", Endpoint="arn:aws:sqs:::x"
        ),
    }
    refusals = {what: refusal(call) for what, call in denied.items()}
    assert {status for status, _ in refusals.values()} == {403}, refusals

    # The same keys may do what the daemon does.
    s3.put_object(Bucket=stack.output_bucket, Key=f"{deployment.output_prefix}probe", Body=b"x")


def test_the_daemon_processes_files_with_only_the_worker_policy(
    deployment: Deployment, tmp_path: Path
) -> None:
    stack = deployment.stack
    uploads = [
        Upload("iam/photo.jpg", samples.photo_jpeg(640, 480), "processed", "image"),
        Upload("iam/report.pdf", samples.text_pdf(["least privilege"]), "processed", "pdf"),
        Upload("iam/broken.jpg", samples.corrupt_jpeg(), "failed", "corrupt"),
        Upload("iam/held.png", samples.transparent_png(320, 240), "processed", "image"),
    ]
    held = uploads[-1]
    # Another consumer's live claim on one of them: the daemon's claim write is refused and
    # returns the item (PutItem), the delivery waits in place until the lease runs out, its
    # message kept (ChangeMessageVisibility), then the daemon takes the claim over.
    hold_claim(stack, held, lease_s=3)
    watcher = Watcher(stack)
    daemon = Daemon(
        deployment.as_worker,
        stack.endpoint_url,
        tmp_path / "daemon.log",
        output_prefix=deployment.output_prefix,
    )
    with daemon:
        daemon.wait_ready()
        upload(stack, uploads)
        assert watcher.wait_for_keys([u.key for u in uploads], timeout_s=60), daemon.log_tail()
        # The same bytes again: a duplicate of a finished version is read and acknowledged.
        upload(stack, uploads[:1])
        assert wait_until(lambda: queue_counts(stack) == (0, 0), timeout_s=30), daemon.log_tail()
        watcher.settle(quiet_s=2)

    items = ledger(stack)
    assert {u.key: items[u.key]["status"] for u in uploads} == {u.key: u.expect for u in uploads}
    assert items[held.key]["attempts"] == 2  # the held claim, then the daemon's takeover
    assert watcher.per_key() == {u.key: 1 for u in uploads}
    assert [r["event"] for r in daemon.events("job_skipped")] == ["job_skipped"]
    artifacts = object_keys(stack, stack.output_bucket, deployment.output_prefix)
    for processed in (u.key for u in uploads if u.expect == "processed"):
        folder = f"{deployment.output_prefix}{stack.input_bucket}/{processed}/"
        assert any(key.startswith(folder) for key in artifacts), (processed, artifacts)
    # A refused call would show as a warning (release_failed, delete_failed, ...).
    expected = {("job_failed", "iam/broken.jpg"), ("job_retryable", held.key)}
    complaints = [
        record
        for record in daemon.log_records()
        if record.get("level") in {"warning", "error", "critical"}
        and (record["event"], record.get("key")) not in expected
    ]
    assert not complaints, complaints


def hold_claim(stack: LocalStack, upload: Upload, lease_s: float) -> None:
    """Write the ledger item another consumer would hold while processing ``upload``."""
    now = time.time()
    claim = Processing(
        version=Version(hashlib.md5(upload.body).hexdigest()),  # the etag of one PUT
        owner="another-consumer",
        lease_expires_at=now + lease_s,
    )
    document = to_document(ObjectState(processing=claim), stack.input_bucket, upload.key)
    document.update(pk=item_key(stack.input_bucket, upload.key), rev=1)
    stack.client("dynamodb").put_item(TableName=stack.table, Item=item_to_dynamo(document))
