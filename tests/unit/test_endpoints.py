"""Endpoint resolution served by botocore's cache: S3's unread Key no longer defeats it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import aioboto3
import pytest

from pipelined.aws.endpoints import cache_endpoints_by_what_they_depend_on, referenced_names

KEYS = [f"uploads/photo-{n}.jpg" for n in range(5)]


@pytest.fixture
async def clients() -> AsyncIterator[tuple[Any, Any]]:
    """Two S3 clients on AWS's own endpoints (no call is sent): one as botocore makes it, one
    with the fix; each has an endpoint provider of its own."""
    session = aioboto3.Session(
        region_name="eu-west-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    async with AsyncExitStack() as stack:
        plain = await stack.enter_async_context(session.client("s3"))
        fixed = await stack.enter_async_context(session.client("s3"))
        cache_endpoints_by_what_they_depend_on(fixed)
        yield plain, fixed


async def resolve(client: Any, operation: str, **params: str) -> str:
    model = client.meta.service_model.operation_model(operation)
    url, _, _ = await client._resolve_endpoint_ruleset(model, params, {})
    return str(url)


def count_evaluations(client: Any, monkeypatch: pytest.MonkeyPatch) -> list[None]:
    ruleset = client._ruleset_resolver._provider.ruleset
    calls: list[None] = []
    evaluate = ruleset.evaluate

    def counted(parameters: dict[str, Any]) -> Any:
        calls.append(None)
        return evaluate(parameters)

    monkeypatch.setattr(ruleset, "evaluate", counted)
    return calls


async def test_s3_drops_exactly_the_parameters_no_rule_reads(clients: tuple[Any, Any]) -> None:
    plain, fixed = clients
    declared = set(plain._ruleset_resolver._param_definitions)
    kept = set(fixed._ruleset_resolver._param_definitions)
    assert declared - kept == {"Key", "Prefix", "CopySource"}
    assert kept <= referenced_names(fixed._ruleset_resolver._provider.ruleset.rules)


async def test_new_keys_resolve_from_the_cache_to_the_same_endpoints(
    clients: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain, fixed = clients
    plain_calls = count_evaluations(plain, monkeypatch)
    fixed_calls = count_evaluations(fixed, monkeypatch)
    for key in KEYS:
        for operation in ("PutObject", "GetObject"):
            expected = await resolve(plain, operation, Bucket="media", Key=key)
            assert await resolve(fixed, operation, Bucket="media", Key=key) == expected
    assert expected == "https://media.s3.eu-west-1.amazonaws.com"
    assert len(plain_calls) == len(KEYS)  # the hole: each new key evaluates the whole ruleset
    assert len(fixed_calls) == 1
