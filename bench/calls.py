"""CPU per AWS call, in isolation: the calls one job makes, through the daemon's own clients.

Each call type runs --calls times per round against MiniStack (tests/ministack.py), one after
another on keep-alive connections, after a warm-up; the figure is this process's CPU (user +
system) per call, the median over the rounds, so the emulator's own work and the network's
waits are left out. It tells what the SDK and the HTTP stack cost per call before anything of
pipelined's, and what a change to either (a batched call, the AWS CRT's signing and
checksums) would save.

  ledger put      PutItem of a claim-sized item, conditioned as the ledger's writes are
  ledger record   PutItem of a finished job's whole document (two artifacts and metadata)
  ledger mark     UpdateItem of the three fields a notification mark changes, as an option
                  to the whole-document write
  publish         SNS Publish of a notification-sized message with attributes
  publish x10     SNS PublishBatch of ten such messages (per call, not per message)
  put 20 KB       S3 PutObject of a thumbnail-sized body, sent as bytes (aws/s3.py)
  get 3 MB        S3 GetObject of a 12 MP photo's size, streamed to a file (aws/s3.py)

Usage: python bench/calls.py [--calls 100] [--rounds 5] [--only NAME,...]
To compare the AWS CRT (botocore's optional `crt` extra): install awscrt into a folder of its
own (`pip install --target DIR awscrt==0.27.6`, botocore's pin) and run again with
PYTHONPATH=DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import uvloop
from botocore.compat import HAS_CRT

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.ministack: the emulator the bench runs on

from pipelined.aws.clients import Clients, open_clients  # noqa: E402
from pipelined.aws.ledger import item_to_dynamo  # noqa: E402
from pipelined.aws.s3 import S3Store  # noqa: E402
from pipelined.events import ObjectEvent  # noqa: E402
from tests.ministack import ministack  # noqa: E402

TABLE, BUCKET, TOPIC = "bench-ledger", "bench-calls", "bench-notifications"
WARM_UP_CALLS = 20
PHOTO_BYTES = 3_000_000
THUMBNAIL_BYTES = 20_000

Call = Callable[[int], Awaitable[object]]


def record_document(index: int) -> dict[str, Any]:
    """A finished photo's ledger document, shaped as pipelined.ledger.document writes it."""
    version = "4f1c2b7e9d0a4c3b8e6f5a2d1c0b9a87"

    def artifact(size: int) -> dict[str, Any]:
        key = f"pipelined/{BUCKET}/photos/p{index}.jpg/{version}/thumb-{size}.webp"
        return {"bucket": BUCKET, "key": key, "content_type": "image/webp", "size": 15426,
                "width": size, "height": size * 3 // 4}  # fmt: skip

    return {
        "pk": f"s3://{BUCKET}/photos/p{index}.jpg", "bucket": BUCKET,
        "object_key": f"photos/p{index}.jpg", "status": "processed", "version": version,
        "sequencer": "0055AED6DCD90281E5", "kind": "image", "rule": "default",
        "etag": "d41d8cd98f00b204e9800998ecf8427e", "size": PHOTO_BYTES, "version_id": version,
        "artifacts": [artifact(256), artifact(1024)],
        "metadata": {"width": 4000, "height": 3000, "format": "JPEG", "mode": "RGB",
                     "frames": 1, "camera_make": "Canon", "camera_model": "EOS R6"},
        "attempts": 1, "started_at": "2026-12-03T16:00:00.000Z",
        "finished_at": "2026-12-03T16:00:00.200Z", "duration_ms": 200,
        "recorded_by": "0123456789abcdef0123456789abcdef", "notified": False,
        "notifier": "0123456789abcdef0123456789abcdef",
        "notify_lease_expires_at": 1764777600.5, "forced": False, "rev": 2,
        "write_id": "fedcba9876543210fedcba9876543210",
    }  # fmt: skip


async def prepare(clients: Clients, workdir: Path) -> dict[str, Call]:
    """Create the table, bucket and topic; return each call type as a function of its index."""
    dynamodb, s3, sns = clients.dynamodb, clients.s3, clients.sns
    await dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    await s3.create_bucket(Bucket=BUCKET)
    topic = (await sns.create_topic(Name=TOPIC))["TopicArn"]
    await s3.put_object(Bucket=BUCKET, Key="photo", Body=os.urandom(PHOTO_BYTES))
    store, thumbnail = S3Store(s3), os.urandom(THUMBNAIL_BYTES)
    photo = ObjectEvent(bucket=BUCKET, key="photo", etag=None, size=PHOTO_BYTES)
    message = json.dumps(record_document(0))
    attributes = {"status": {"DataType": "String", "StringValue": "processed"}}
    small_item = {"pk": {"S": ""}, "claim": {"M": {"owner": {"S": "0" * 32}}}}

    async def ledger_put(index: int) -> object:
        item = {**small_item, "pk": {"S": f"claim/{index}"}}
        return await dynamodb.put_item(
            TableName=TABLE, Item=item, ConditionExpression="attribute_not_exists(pk)"
        )

    async def ledger_record(index: int) -> object:
        item = item_to_dynamo({**record_document(index), "pk": f"record/{index}"})
        return await dynamodb.put_item(TableName=TABLE, Item=item)

    async def ledger_mark(index: int) -> object:
        return await dynamodb.update_item(
            TableName=TABLE,
            Key={"pk": {"S": f"record/{index}"}},
            UpdateExpression="SET #notified = :yes, #rev = :next, #write = :write",
            ConditionExpression="#rev = :rev",
            ExpressionAttributeNames={"#notified": "notified", "#rev": "rev", "#write": "write_id"},
            ExpressionAttributeValues={":yes": {"BOOL": True}, ":next": {"N": "3"},
                                       ":rev": {"N": "2"}, ":write": {"S": "0" * 32}},
        )  # fmt: skip

    async def publish(_: int) -> object:
        return await sns.publish(TopicArn=topic, Message=message, MessageAttributes=attributes)

    async def publish_batch(_: int) -> object:
        entries = [
            {"Id": str(n), "Message": message, "MessageAttributes": attributes} for n in range(10)
        ]
        return await sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=entries)

    async def put_thumbnail(index: int) -> object:
        return await s3.put_object(
            Bucket=BUCKET, Key=f"thumbs/{index}", Body=thumbnail, ContentType="image/webp"
        )

    async def get_photo(_: int) -> object:
        return await store.download(photo, workdir / "photo", PHOTO_BYTES)

    calls: dict[str, Call] = {
        "ledger put": ledger_put,
        "ledger record": ledger_record,
        "ledger mark": ledger_mark,
        "publish": publish,
        "publish x10": publish_batch,
        "put 20 KB": put_thumbnail,
        "get 3 MB": get_photo,
    }
    return calls


async def measure(call: Call, count: int, first: int) -> float:
    """CPU ms per call of ``call`` over ``count`` calls from index ``first``."""
    started = time.process_time()
    for index in range(first, first + count):
        await call(index)
    return 1000 * (time.process_time() - started) / count


async def run(endpoint: str, count: int, rounds: int, only: list[str]) -> dict[str, list[float]]:
    """Per call type, its CPU ms per call in each round.

    The rounds take every type in turn, so that a change in the host's speed during the run
    (other tenants' load) reaches every type alike rather than the ones measured last.
    """
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106 (the emulator's, not a secret)
        AWS_DEFAULT_REGION="us-east-1",
    )
    async with AsyncExitStack() as stack:
        clients = await open_clients(stack, max_connections=10, region="us-east-1")
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="calls-")))
        calls = await prepare(clients, workdir)
        unknown = set(only) - set(calls)
        if unknown:
            raise SystemExit(f"unknown call types {sorted(unknown)}; known: {', '.join(calls)}")
        names = only or list(calls)
        # Each mark moves a record from revision 2 to 3: write every record it will mark.
        for index in range(-WARM_UP_CALLS, count * rounds):
            await calls["ledger record"](index)
        for name in names:
            await measure(calls[name], WARM_UP_CALLS, -WARM_UP_CALLS)
        results: dict[str, list[float]] = {name: [] for name in names}
        for round_ in range(rounds):
            for name in names:
                results[name].append(await measure(calls[name], count, round_ * count))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=100, help="calls per type and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--only", default="", help="comma-separated call types")
    arguments = parser.parse_args()
    only = [name.strip() for name in arguments.only.split(",") if name.strip()]
    sdk = "with the AWS CRT" if HAS_CRT else "without the AWS CRT"  # botocore's own test
    with ministack() as running:
        results = uvloop.run(run(running.url, arguments.calls, arguments.rounds, only))
    print(f"CPU ms per call, {sdk}: median of {arguments.rounds} rounds of "
          f"{arguments.calls} calls (lowest, highest)")  # fmt: skip
    for name, per_round in results.items():
        print(f"  {name:<16}{statistics.median(per_round):>7.2f}"
              f"   ({min(per_round):.2f}, {max(per_round):.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
