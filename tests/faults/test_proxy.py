"""The fault proxy itself: every fault, observed by a real AWS client in front of the emulator."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any

import aioboto3
import aiohttp
import pytest
from aiohttp import web
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from yarl import URL

from pipelined.aws.errors import THROTTLING_CODES, translated
from pipelined.errors import RetryableError, ThrottledError
from pipelined.local import CREDENTIALS, REGION, LocalStack, aws_client, free_port
from tests.faults.proxy import (
    FaultProxy,
    ProxyProcess,
    Rule,
    ThreadedFaultProxy,
    classify,
    internal_error,
    throttle,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def proxy(emulator_url: str) -> Iterator[ThreadedFaultProxy]:
    with ThreadedFaultProxy(emulator_url, port=free_port(), seed=1) as running:
        yield running


def aws(service: str, endpoint_url: str, **config: Any) -> Any:
    """A boto3 client through the proxy; no retries unless asked, so every fault shows."""
    options: dict[str, Any] = {
        "retries": {"mode": "standard", "total_max_attempts": 1},
        "connect_timeout": 2,
        "read_timeout": 5,
        **config,
    }
    return aws_client(endpoint_url, service, config=Config(**options))


def error_of(call: Callable[[], object]) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value


# -- forwarding --------------------------------------------------------------------------------


def test_forwards_every_service_unchanged(proxy: ThreadedFaultProxy, stack: LocalStack) -> None:
    s3, sqs = aws("s3", proxy.url), aws("sqs", proxy.url)
    dynamodb, sns = aws("dynamodb", proxy.url), aws("sns", proxy.url)
    body = bytes(range(256)) * (12 * 1024)  # 3 MiB
    key = "odd keys/a b+c=d&e/ünï.bin"
    s3.put_object(Bucket=stack.input_bucket, Key=key, Body=io.BytesIO(body))  # Expect: 100
    assert s3.get_object(Bucket=stack.input_bucket, Key=key)["Body"].read() == body
    assert s3.head_object(Bucket=stack.input_bucket, Key=key)["ContentLength"] == len(body)
    direct = stack.client("s3").get_object(Bucket=stack.input_bucket, Key=key)["Body"].read()
    assert hashlib.sha256(direct).digest() == hashlib.sha256(body).digest()

    sqs.send_message(QueueUrl=stack.watch_queue_url, MessageBody="héllo ✓")
    [message] = sqs.receive_message(QueueUrl=stack.watch_queue_url, WaitTimeSeconds=1)["Messages"]
    assert message["Body"] == "héllo ✓"
    dynamodb.put_item(TableName=stack.table, Item={"pk": {"S": "k"}, "n": {"N": "7"}})
    item = dynamodb.get_item(TableName=stack.table, Key={"pk": {"S": "k"}})["Item"]
    assert item["n"] == {"N": "7"}
    assert sns.publish(TopicArn=stack.topic_arn, Message="m")["MessageId"]

    stats = proxy.stats()
    for operation in (
        "s3.PutObject",
        "s3.GetObject",
        "s3.HeadObject",
        "sqs.SendMessage",
        "sqs.ReceiveMessage",
        "dynamodb.PutItem",
        "dynamodb.GetItem",
        "sns.Publish",
    ):
        assert stats.forwarded_count(operation) == 1, operation
    assert stats.injected_count() == 0


@pytest.fixture
async def echo() -> AsyncIterator[str]:
    """An upstream that reports exactly what reached it."""

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        if request.raw_path == "/big":
            return web.Response(body=b"x" * (5 * 1024 * 1024))
        if request.method == "HEAD":
            response = web.StreamResponse(headers={"X-Echo": "head"})
            response.content_length = 12345
            return response
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "headers": list(request.headers.items()),
                "sha256": hashlib.sha256(body).hexdigest(),
            }
        )

    runner = web.ServerRunner(web.Server(handler), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_headers_host_path_and_body_reach_upstream_intact(echo: str) -> None:
    body = bytes(range(256)) * 4096
    sent = {
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=abc",
        "X-Amz-Date": "20260101T000000Z",
        "X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest(),
        "Content-Type": "application/octet-stream",
        "X-Custom": "one",
    }
    async with (
        FaultProxy(echo) as proxy,
        aiohttp.ClientSession(skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding")) as s,
    ):
        path = "/bucket/a%20b%2Bc/%C3%BC?x-id=PutObject&z=%2F"
        url = URL(proxy.url + path, encoded=True)  # sent exactly as written
        async with s.put(url, data=body, headers=sent) as reply:
            seen = await reply.json()
        async with s.get(proxy.url + "/big") as reply:
            assert len(await reply.read()) == 5 * 1024 * 1024
        async with s.head(proxy.url + "/bucket/k") as reply:
            assert reply.headers["Content-Length"] == "12345"
            assert reply.headers["X-Echo"] == "head"
        assert proxy.stats().forwarded_count("s3.PutObject") == 1
    assert seen["method"] == "PUT"
    assert seen["raw_path"] == path
    assert seen["sha256"] == hashlib.sha256(body).hexdigest()
    headers = {name.lower(): value for name, value in seen["headers"]}
    assert headers["host"] == proxy.url.removeprefix("http://")
    for name, value in sent.items():
        assert headers[name.lower()] == value
    assert headers["content-length"] == str(len(body))
    assert set(headers) == {name.lower() for name in sent} | {"host", "content-length"}


def test_requests_are_classified_like_aws_routes_them() -> None:
    scope = "Credential=AKID/20260101/us-east-1/{}/aws4_request, SignedHeaders=host"

    def auth(service: str) -> dict[str, str]:
        return {"Authorization": "AWS4-HMAC-SHA256 " + scope.format(service)}

    target = {"X-Amz-Target": "DynamoDB_20120810.UpdateItem", **auth("dynamodb")}
    assert classify("POST", "/", target, b"{}").name == "dynamodb.UpdateItem"
    target = {"X-Amz-Target": "AmazonSQS.ReceiveMessage", **auth("sqs")}
    assert classify("POST", "/", target, b"{}").protocol == "json"
    form = {"Content-Type": "application/x-www-form-urlencoded", **auth("sns")}
    info = classify("POST", "/", form, b"Action=Publish&TopicArn=x")
    assert (info.name, info.protocol) == ("sns.Publish", "query")
    cases = {
        ("GET", "/b/k/x.jpg"): "GetObject",
        ("HEAD", "/b/k"): "HeadObject",
        ("PUT", "/b/k?x-id=PutObject"): "PutObject",
        ("PUT", "/b/k?partNumber=1&uploadId=u"): "UploadPart",
        ("GET", "/b?list-type=2&prefix=p"): "ListObjectsV2",
        ("PUT", "/b"): "CreateBucket",
        ("PUT", "/b?notification"): "PutBucketNotificationConfiguration",
        ("POST", "/b?delete"): "DeleteObjects",
        ("DELETE", "/b/k"): "DeleteObject",
    }
    for (method, path), operation in cases.items():
        assert classify(method, path, auth("s3"), b"").operation == operation, path


# -- connection faults -------------------------------------------------------------------------


def test_delay_adds_latency_to_matching_requests_only(
    proxy: ThreadedFaultProxy, stack: LocalStack
) -> None:
    sqs, dynamodb = aws("sqs", proxy.url), aws("dynamodb", proxy.url)
    proxy.add(Rule(action="delay", service="sqs", operation="GetQueueAttributes", delay_s=0.5))
    started = time.monotonic()
    sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["All"])
    assert time.monotonic() - started >= 0.5
    started = time.monotonic()
    dynamodb.describe_table(TableName=stack.table)
    assert time.monotonic() - started < 0.5
    stats = proxy.stats()
    assert stats.injected_count("delay", "sqs.GetQueueAttributes") == 1
    assert stats.forwarded_count("sqs.GetQueueAttributes") == 1  # delayed, then forwarded


def test_reset_closes_the_connection_before_the_request_reaches_upstream(
    proxy: ThreadedFaultProxy, stack: LocalStack
) -> None:
    sqs = aws("sqs", proxy.url)
    proxy.add(Rule(action="reset", service="sqs", operation="SendMessage", count=1))
    with pytest.raises(ConnectionClosedError):
        sqs.send_message(QueueUrl=stack.watch_queue_url, MessageBody="lost")
    direct = stack.client("sqs").receive_message(QueueUrl=stack.watch_queue_url)
    assert "Messages" not in direct, "the request never reached upstream"
    sqs.send_message(QueueUrl=stack.watch_queue_url, MessageBody="next one passes")
    stats = proxy.stats()
    assert stats.injected_count("reset", "sqs.SendMessage") == 1
    assert stats.forwarded_count("sqs.SendMessage") == 1


def test_reset_after_applies_the_request_and_drops_the_answer(
    proxy: ThreadedFaultProxy, stack: LocalStack
) -> None:
    sqs = aws("sqs", proxy.url)
    proxy.add(Rule(action="reset_after", service="sqs", operation="SendMessage", count=1))
    with pytest.raises(ConnectionClosedError):
        sqs.send_message(QueueUrl=stack.watch_queue_url, MessageBody="applied")
    [message] = stack.client("sqs").receive_message(QueueUrl=stack.watch_queue_url)["Messages"]
    assert message["Body"] == "applied", "upstream applied it although the client saw an error"
    stats = proxy.stats()
    assert stats.injected_count("reset_after") == 1
    assert stats.lost_answers == {"sqs.SendMessage": 1}
    [lost] = proxy.lost_answers()
    assert (lost.operation, lost.status) == ("sqs.SendMessage", 200)
    assert '"MessageBody": "applied"' in lost.body


def test_blackhole_holds_requests_until_the_client_times_out(
    proxy: ThreadedFaultProxy, stack: LocalStack
) -> None:
    dynamodb = aws("dynamodb", proxy.url, read_timeout=1)
    rule = proxy.add(Rule(action="blackhole", service="dynamodb"))
    started = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        dynamodb.describe_table(TableName=stack.table)
    assert time.monotonic() - started >= 1
    assert proxy.remove(rule)
    dynamodb.describe_table(TableName=stack.table)
    stats = proxy.stats()
    assert stats.injected_count("blackhole", "dynamodb.DescribeTable") == 1
    assert stats.forwarded_count("dynamodb.DescribeTable") == 1


def test_clearing_a_blackhole_resets_the_held_requests(
    proxy: ThreadedFaultProxy, stack: LocalStack
) -> None:
    dynamodb = aws("dynamodb", proxy.url, read_timeout=30)
    proxy.add(Rule(action="blackhole", service="dynamodb", count=1))
    started = time.monotonic()

    def clear_soon() -> None:
        time.sleep(0.5)
        assert proxy.stats().held == 1
        proxy.clear()

    clearer = threading.Thread(target=clear_soon)
    clearer.start()
    with pytest.raises(ConnectionClosedError):
        dynamodb.describe_table(TableName=stack.table)
    clearer.join()
    assert time.monotonic() - started < 5


def test_refuse_closes_the_listener_and_accept_reopens_it(
    proxy: ThreadedFaultProxy, stack: LocalStack
) -> None:
    sqs = aws("sqs", proxy.url)
    sqs.get_queue_attributes(QueueUrl=stack.queue_url)  # a pooled keep-alive connection exists
    proxy.refuse()
    with pytest.raises(EndpointConnectionError):
        sqs.get_queue_attributes(QueueUrl=stack.queue_url)
    assert proxy.stats().refusing
    proxy.accept()
    sqs.get_queue_attributes(QueueUrl=stack.queue_url)

    proxy.refuse(duration_s=1.0)
    with pytest.raises(EndpointConnectionError):
        sqs.get_queue_attributes(QueueUrl=stack.queue_url)
    time.sleep(1.3)
    sqs.get_queue_attributes(QueueUrl=stack.queue_url)  # reopened by itself
    stats = proxy.stats()
    assert (stats.refusals, stats.refusing) == (2, False)


# -- AWS errors --------------------------------------------------------------------------------

ErrorCase = tuple[str, Rule, str, int, Callable[[LocalStack, str], object]]


def _get_object(stack: LocalStack, url: str) -> object:
    stack.client("s3").put_object(Bucket=stack.input_bucket, Key="k", Body=b"data")
    return aws("s3", url).get_object(Bucket=stack.input_bucket, Key="k")


def _put_object(stack: LocalStack, url: str) -> object:
    body = io.BytesIO(b"data")
    return aws("s3", url).put_object(Bucket=stack.input_bucket, Key="k", Body=body)


def _head_object(stack: LocalStack, url: str) -> object:
    stack.client("s3").put_object(Bucket=stack.input_bucket, Key="k", Body=b"data")
    return aws("s3", url).head_object(Bucket=stack.input_bucket, Key="k")


def _update_item(stack: LocalStack, url: str) -> object:
    return aws("dynamodb", url).update_item(
        TableName=stack.table,
        Key={"pk": {"S": "k"}},
        UpdateExpression="SET #a = :a",
        ExpressionAttributeNames={"#a": "a"},
        ExpressionAttributeValues={":a": {"S": "x"}},
    )


def _receive(stack: LocalStack, url: str) -> object:
    return aws("sqs", url).receive_message(QueueUrl=stack.queue_url, WaitTimeSeconds=0)


def _publish(stack: LocalStack, url: str) -> object:
    return aws("sns", url).publish(TopicArn=stack.topic_arn, Message="m")


ERROR_CASES: dict[str, ErrorCase] = {
    "s3 SlowDown on GetObject": (
        "s3.GetObject",
        throttle("s3", "GetObject"),
        "SlowDown",
        503,
        _get_object,
    ),
    "s3 SlowDown on PutObject (Expect: 100-continue)": (
        "s3.PutObject",
        throttle("s3", "PutObject"),
        "SlowDown",
        503,
        _put_object,
    ),
    "s3 HeadObject has no body: the status is the code": (
        "s3.HeadObject",
        throttle("s3", "HeadObject"),
        "503",
        503,
        _head_object,
    ),
    "s3 InternalError": ("s3.GetObject", internal_error("s3"), "InternalError", 500, _get_object),
    "dynamodb ProvisionedThroughputExceeded": (
        "dynamodb.UpdateItem",
        throttle("dynamodb", "DynamoDB_20120810.UpdateItem"),
        "ProvisionedThroughputExceededException",
        400,
        _update_item,
    ),
    "dynamodb ThrottlingException": (
        "dynamodb.UpdateItem",
        Rule(action="error", service="dynamodb", code="ThrottlingException"),
        "ThrottlingException",
        400,
        _update_item,
    ),
    "dynamodb InternalServerError": (
        "dynamodb.UpdateItem",
        internal_error("dynamodb", "UpdateItem"),
        "InternalServerError",
        500,
        _update_item,
    ),
    "sqs RequestThrottled (query-compatible JSON)": (
        "sqs.ReceiveMessage",
        throttle("sqs", "ReceiveMessage"),
        "RequestThrottled",
        400,
        _receive,
    ),
    "sqs ThrottlingException": (
        "sqs.ReceiveMessage",
        Rule(action="error", service="sqs", code="ThrottlingException"),
        "ThrottlingException",
        400,
        _receive,
    ),
    "sqs InternalError": (
        "sqs.ReceiveMessage",
        internal_error("sqs", "ReceiveMessage"),
        "InternalError",
        500,
        _receive,
    ),
    "sns Throttling (query XML)": (
        "sns.Publish",
        throttle("sns", "Publish"),
        "Throttling",
        400,
        _publish,
    ),
    "sns InternalError": ("sns.Publish", internal_error("sns"), "InternalError", 500, _publish),
}


@pytest.mark.parametrize("case", ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_injected_errors_parse_into_the_intended_code(
    case: ErrorCase, proxy: ThreadedFaultProxy, stack: LocalStack
) -> None:
    operation, rule, code, status, call = case
    proxy.add(replace(rule, count=1, fired=0))
    error = error_of(lambda: call(stack, proxy.url))
    assert error.response["Error"]["Code"] == code
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == status
    if operation == "sqs.ReceiveMessage" and code == "RequestThrottled":
        details: dict[str, Any] = dict(error.response["Error"])
        assert details["QueryErrorCode"] == "ThrottlingException"
    # The daemon sorts it the way its retry policy expects: throttling, or another retryable.
    with pytest.raises(RetryableError) as translated_error, translated(operation):
        raise error
    assert isinstance(translated_error.value, ThrottledError) == (code in THROTTLING_CODES)
    call(stack, proxy.url)  # count=1: the next one passes
    assert proxy.stats().injected_count("error", operation) == 1


def test_only_matching_requests_fail_and_only_the_next_n(
    proxy: ThreadedFaultProxy, stack: LocalStack
) -> None:
    dynamodb = aws("dynamodb", proxy.url)
    proxy.add(throttle("dynamodb", "UpdateItem", count=2))
    dynamodb.get_item(TableName=stack.table, Key={"pk": {"S": "k"}})  # not matched
    for _ in range(2):
        assert error_of(lambda: _update_item(stack, proxy.url)).response["Error"]["Code"] == (
            "ProvisionedThroughputExceededException"
        )
    _update_item(stack, proxy.url)
    stats = proxy.stats()
    assert stats.injected_count("error", "dynamodb.UpdateItem") == 2
    assert stats.forwarded_count("dynamodb") == 2


def test_body_matchers_pick_one_kind_of_write(proxy: ThreadedFaultProxy, stack: LocalStack) -> None:
    proxy.add(throttle("dynamodb", "UpdateItem", body_contains="SET #b"))
    _update_item(stack, proxy.url)  # SET #a: passes
    dynamodb = aws("dynamodb", proxy.url)
    with pytest.raises(ClientError):
        dynamodb.update_item(
            TableName=stack.table,
            Key={"pk": {"S": "k"}},
            UpdateExpression="SET #b = :b",
            ExpressionAttributeNames={"#b": "b"},
            ExpressionAttributeValues={":b": {"S": "x"}},
        )


def test_probability_and_duration(proxy: ThreadedFaultProxy, stack: LocalStack) -> None:
    sqs = aws("sqs", proxy.url)
    proxy.add(throttle("sqs", "GetQueueUrl", probability=0.3))
    name = stack.queue_url.rsplit("/", 1)[-1]
    failures = 0
    for _ in range(100):
        try:
            sqs.get_queue_url(QueueName=name)
        except ClientError:
            failures += 1
    assert 10 <= failures <= 50
    stats = proxy.stats()
    assert stats.injected_count("error", "sqs.GetQueueUrl") == failures
    assert stats.forwarded_count("sqs.GetQueueUrl") == 100 - failures

    proxy.clear()
    proxy.add(throttle("sqs", "GetQueueUrl", duration_s=0.5))
    with pytest.raises(ClientError):
        sqs.get_queue_url(QueueName=name)
    time.sleep(0.6)
    sqs.get_queue_url(QueueName=name)


def test_botocore_retries_absorb_a_burst_shorter_than_max_attempts(
    proxy: ThreadedFaultProxy, stack: LocalStack
) -> None:
    # The daemon runs standard mode with max_attempts 4: 4 retries, 5 attempts in all. Two
    # retries here keep the test short; the rule is the same.
    retrying = aws("sns", proxy.url, retries={"mode": "standard", "max_attempts": 2})
    proxy.add(throttle("sns", "Publish", count=2))
    retrying.publish(TopicArn=stack.topic_arn, Message="after two throttles")
    stats = proxy.stats()
    assert (stats.injected_count("error"), stats.forwarded_count("sns.Publish")) == (2, 1)
    proxy.add(throttle("sns", "Publish", count=3))
    error = error_of(lambda: retrying.publish(TopicArn=stack.topic_arn, Message="x"))
    assert error.response["Error"]["Code"] == "Throttling"
    assert proxy.stats().injected_count("error") == 5


async def test_aiobotocore_parses_injected_errors_like_the_daemon_sees_them(
    emulator_url: str, stack: LocalStack
) -> None:
    config = Config(retries={"mode": "standard", "total_max_attempts": 1})
    session = aioboto3.Session(
        region_name=REGION,
        aws_access_key_id=CREDENTIALS.access_key_id,
        aws_secret_access_key=CREDENTIALS.secret_access_key,
    )
    async with FaultProxy(emulator_url) as proxy:
        proxy.add(throttle("dynamodb", "GetItem", count=1))
        proxy.add(throttle("sqs", "ReceiveMessage", count=1))
        proxy.add(throttle("s3", "GetObject", count=1))
        async with (
            session.client("dynamodb", endpoint_url=proxy.url, config=config) as dynamodb,
            session.client("sqs", endpoint_url=proxy.url, config=config) as sqs,
            session.client("s3", endpoint_url=proxy.url, config=config) as s3,
        ):
            with (
                pytest.raises(ThrottledError, match="ProvisionedThroughputExceeded"),
                translated("dynamodb.GetItem"),
            ):
                await dynamodb.get_item(TableName=stack.table, Key={"pk": {"S": "k"}})
            with (
                pytest.raises(ThrottledError, match="RequestThrottled"),
                translated("sqs.ReceiveMessage"),
            ):
                await sqs.receive_message(QueueUrl=stack.queue_url, WaitTimeSeconds=0)
            with pytest.raises(ThrottledError, match="SlowDown"), translated("s3.GetObject"):
                await s3.get_object(Bucket=stack.input_bucket, Key="anything")
        assert proxy.stats().injected_count("error") == 3


def test_as_a_process_driven_through_the_control_endpoint(
    emulator_url: str, stack: LocalStack
) -> None:
    with ProxyProcess(emulator_url) as proxy:
        sns = aws("sns", proxy.url)
        rule_id = proxy.add_json(
            {"action": "throttle", "service": "sns", "operation": "Publish", "count": 1}
        )
        assert [rule["id"] for rule in proxy.rules()] == [rule_id]
        assert error_of(lambda: _publish(stack, proxy.url)).response["Error"]["Code"] == (
            "Throttling"
        )
        sns.publish(TopicArn=stack.topic_arn, Message="m")
        proxy.add(Rule(action="reset", service="sns"))
        with pytest.raises(ConnectionClosedError):
            sns.publish(TopicArn=stack.topic_arn, Message="m")
        proxy.clear()
        proxy.refuse()
        with pytest.raises(EndpointConnectionError):
            sns.publish(TopicArn=stack.topic_arn, Message="m")
        proxy.accept()
        sns.publish(TopicArn=stack.topic_arn, Message="m")
        stats = proxy.stats()
        assert stats.forwarded_count("sns.Publish") == 2
        assert stats.injected_count("error:Throttling") == 1
        assert stats.injected_count("reset") == 1
        assert stats.refusals == 1
        assert proxy.lost_answers() == []
        with pytest.raises(RuntimeError, match="400"):
            proxy.add_json({"action": "explode"})
        assert json.loads(json.dumps(stats.to_json())) == stats.to_json()
