"""CPU per AWS call, in isolation: the calls one job makes, through the daemon's own clients.

Each call type runs --calls times per round against MiniStack (tests/ministack.py), one after
another on keep-alive connections, after a warm-up; the figure is this process's CPU (user +
system) per call, the median over the rounds, so the emulator's own work and the network's
waits are left out. It tells what the SDK and the HTTP stack cost per call before anything of
pipelined's, and what a change to either (a batched call, the AWS CRT's signing and
checksums) would save.

  ledger put      the ledger store's write of a new object's claim (a conditioned PutItem)
  ledger record   the same of a finished job's whole document (two artifacts and metadata)
  ledger mark     UpdateItem of the three fields a notification mark changes, as an option
                  to the whole-document write
  publish         SnsNotifier's Publish of that job's notification
  publish x10     SNS PublishBatch of ten such messages (per call, not per message)
  put 20 KB       S3 PutObject of a thumbnail-sized body, sent as bytes (aws/s3.py)
  get 3 MB        S3 GetObject of a 12 MP photo's size, streamed to a file (aws/s3.py)
  receive         SqsQueue's ReceiveMessage that brings one message (aws/sqs.py)
  delete          SqsQueue's DeleteMessageBatch of one of them: what each receive and delete
                  costs tells what batching them saves

Usage: python bench/calls.py [--calls 100] [--rounds 5] [--only NAME,...]
To compare the AWS CRT (botocore's optional `crt` extra): install awscrt into a folder of its
own (`pip install --target DIR awscrt==0.27.6`, botocore's pin) and run again with
PYTHONPATH=DIR.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import uvloop
from botocore.compat import HAS_CRT

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.ministack: the emulator the bench runs on

from pipelined.aws.clients import Clients, open_clients  # noqa: E402
from pipelined.aws.ledger import DynamoLedgerStore, item_key  # noqa: E402
from pipelined.aws.s3 import S3Store  # noqa: E402
from pipelined.aws.sns import SnsNotifier, sns_message  # noqa: E402
from pipelined.aws.sqs import SqsQueue  # noqa: E402
from pipelined.consumer import Delivery  # noqa: E402
from pipelined.events import ObjectEvent  # noqa: E402
from pipelined.ledger.machine import ObjectState, Processing, Recorded, Version  # noqa: E402
from pipelined.records import JobRecord, SourceObject, StoredArtifact  # noqa: E402
from tests.ministack import ministack  # noqa: E402

TABLE, BUCKET, TOPIC, QUEUE = "bench-ledger", "bench-calls", "bench-notifications", "bench-events"
WARM_UP_CALLS = 20
PHOTO_BYTES = 3_000_000
THUMBNAIL_BYTES = 20_000
EVENT_BYTES = 1_200  # an S3 event notification's body is about this long

Call = Callable[[int], Awaitable[object]]


PHOTO_RECORD = JobRecord(
    source=SourceObject(BUCKET, "photos/p.jpg", "d41d8cd98f00b204e9800998ecf8427e", PHOTO_BYTES),
    status="processed",
    kind="image",
    attempts=1,
    started_at="2026-12-03T16:00:00.000Z",
    finished_at="2026-12-03T16:00:00.200Z",
    duration_ms=200,
    artifacts=tuple(
        StoredArtifact(BUCKET, f"pipelined/{BUCKET}/photos/p.jpg/v1/thumb-{size}.webp",
                       "image/webp", 15426, size, size * 3 // 4)
        for size in (256, 1024)
    ),
    metadata={"width": 4000, "height": 3000, "format": "JPEG", "mode": "RGB",
              "camera_make": "Canon", "camera_model": "EOS R6"},
)  # fmt: skip
"""A finished photo's record, two thumbnails and its metadata: what the ledger stores and the
notification carries."""


def ledger_states() -> tuple[ObjectState, ObjectState]:
    """A claim of a new object, and the same object recorded, its notification still held."""
    version, owner = Version("v1", "0055AED6DCD90281E5"), uuid.uuid4().hex
    lease_expires_at = time.time() + 120
    claimed = ObjectState(processing=Processing(version, owner, lease_expires_at))
    recorded = ObjectState(
        recorded=Recorded(version, PHOTO_RECORD, owner, notifier=owner,
                          notify_lease_expires_at=lease_expires_at)
    )  # fmt: skip
    return claimed, recorded


async def prepare(clients: Clients, workdir: Path, messages: int) -> dict[str, Call]:
    """Create the table, bucket, topic and a queue of ``messages``; return each call type as a
    function of its index.

    Each goes through the daemon's own port where it has one (the ledger store, the notifier,
    the S3 store), so it costs what the daemon's call costs, serialisation included.
    """
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
    ledger, notifier = DynamoLedgerStore(dynamodb, TABLE), SnsNotifier(sns, topic)
    claimed, recorded = ledger_states()
    message, attributes = PHOTO_RECORD.notification(), PHOTO_RECORD.notification_attributes()

    async def ledger_put(index: int) -> object:
        return await ledger.write(BUCKET, f"claim/{index}", None, claimed, uuid.uuid4().hex)

    async def ledger_record(index: int) -> object:
        return await ledger.write(BUCKET, f"record/{index}", None, recorded, uuid.uuid4().hex)

    async def ledger_mark(index: int) -> object:
        return await dynamodb.update_item(
            TableName=TABLE,
            Key={"pk": {"S": item_key(BUCKET, f"marked/{index}")}},
            UpdateExpression="SET #notified = :yes, #rev = :next, #write = :write",
            ConditionExpression="#rev = :rev",
            ExpressionAttributeNames={"#notified": "notified", "#rev": "rev", "#write": "write_id"},
            ExpressionAttributeValues={":yes": {"BOOL": True}, ":next": {"N": "2"},
                                       ":rev": {"N": "1"}, ":write": {"S": uuid.uuid4().hex}},
        )  # fmt: skip

    async def publish(_: int) -> object:
        return await notifier.publish(message, attributes)

    async def publish_batch(_: int) -> object:
        # SnsNotifier.publish's message, ten to a call.
        entries = [{"Id": str(n), **sns_message(message, attributes)} for n in range(10)]
        return await sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=entries)

    async def put_thumbnail(index: int) -> object:
        return await s3.put_object(
            Bucket=BUCKET, Key=f"thumbs/{index}", Body=thumbnail, ContentType="image/webp"
        )

    async def get_photo(_: int) -> object:
        return await store.download(photo, workdir / "photo", PHOTO_BYTES)

    queue, received = await filled_queue(clients, messages), list[Delivery]()

    async def receive(_: int) -> object:
        received.extend(await queue.receive(1, 0, 300))
        return received

    async def delete(_: int) -> object:
        return await queue.delete([received.pop()])

    calls: dict[str, Call] = {
        "ledger put": ledger_put,
        "ledger record": ledger_record,
        "ledger mark": ledger_mark,
        "publish": publish,
        "publish x10": publish_batch,
        "put 20 KB": put_thumbnail,
        "get 3 MB": get_photo,
        "receive": receive,  # before delete: each delete takes a message a receive brought
        "delete": delete,
    }
    return calls


async def filled_queue(clients: Clients, messages: int) -> SqsQueue:
    url = (await clients.sqs.create_queue(QueueName=QUEUE))["QueueUrl"]
    body = "e" * EVENT_BYTES
    for start in range(0, messages, 10):
        entries = [{"Id": str(n), "MessageBody": body} for n in range(min(10, messages - start))]
        await clients.sqs.send_message_batch(QueueUrl=url, Entries=entries)
    return SqsQueue(clients.sqs, url)


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
        calls = await prepare(clients, workdir, WARM_UP_CALLS + count * rounds)
        unknown = set(only) - set(calls)
        if unknown:
            raise SystemExit(f"unknown call types {sorted(unknown)}; known: {', '.join(calls)}")
        names = [name for name in calls if name in only] if only else list(calls)
        if "delete" in names and "receive" not in names:
            raise SystemExit("delete deletes what receive brought: ask for both")
        # Each mark moves a record of its own from revision 1 to 2: write them first.
        ledger, (_, recorded) = DynamoLedgerStore(clients.dynamodb, TABLE), ledger_states()
        for index in range(-WARM_UP_CALLS, count * rounds):
            await ledger.write(BUCKET, f"marked/{index}", None, recorded, uuid.uuid4().hex)
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
