"""MiniStack with a network's latency: each request waits a fixed time per AWS service.

Against a local emulator a call answers in about a millisecond, so a sequential loop waits for
almost nothing and the comparison with a concurrent daemon measures CPU alone. AWS answers in
milliseconds to tens of them (DynamoDB's single-digit milliseconds, S3's median of tens of
milliseconds for small requests, by AWS's own guides). This runs MiniStack's application behind
a wait before each request, chosen by the service the request is signed for (the SigV4
credential scope), so the loop and the daemon meet the same network in the same run. The wait
is a timer in the emulator's event loop: it costs no CPU.

Run by MiniStack's own interpreter (tests/ministack.py, ``entry``), never imported by the bench:
  EMULATOR_LATENCY_MS="s3=20,dynamodb=5,sqs=10,sns=10" .venv/ministack/bin/python bench/latency.py
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

LATENCY_VARIABLE = "EMULATOR_LATENCY_MS"
SERVICES = ("s3", "dynamodb", "sqs", "sns")

# The service name in a SigV4 credential scope: AKID/20261204/us-east-1/s3/aws4_request, in the
# Authorization header or, for a presigned URL, in X-Amz-Credential (URL-encoded slashes).
_SLASH = rb"(?:/|%2F)"
_SCOPE = re.compile(
    rb"%s\d{8}%s[a-z0-9-]+%s([a-z0-9-]+)%saws4_request" % ((_SLASH,) * 4), re.IGNORECASE
)

Scope = dict[str, Any]
App = Callable[[Scope, Any, Any], Awaitable[None]]


def parse_latency(spec: str) -> dict[str, float]:
    """``s3=20,dynamodb=5`` (milliseconds) as seconds per service; a clear error otherwise."""
    delays: dict[str, float] = {}
    for part in filter(None, (piece.strip() for piece in spec.split(","))):
        service, _, value = part.partition("=")
        if service not in SERVICES:
            raise ValueError(f"latency for {service!r}: not one of {', '.join(SERVICES)}")
        try:
            milliseconds = float(value)
        except ValueError:
            raise ValueError(f"latency for {service}: {value!r} is not milliseconds") from None
        if not 0 <= milliseconds <= 10_000:
            raise ValueError(f"latency for {service}: {milliseconds:g} ms is not 0 to 10000")
        delays[service] = milliseconds / 1000
    return delays


def service_of(scope: Scope) -> str | None:
    """The AWS service an HTTP request is signed for, or None (MiniStack's own health check)."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            found = _SCOPE.search(value)
            return found.group(1).decode() if found else None
    found = _SCOPE.search(scope.get("query_string", b""))
    return found.group(1).decode() if found else None


def delayed(app: App, delays: Mapping[str, float]) -> App:
    async def with_latency(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            delay = delays.get(service_of(scope) or "", 0.0)
            if delay:
                await asyncio.sleep(delay)
        await app(scope, receive, send)

    return with_latency


def main() -> int:
    # Imported here: the bench imports this module for parse_latency, without MiniStack.
    import ministack.app as emulator  # noqa: PLC0415

    # MiniStack's main() serves the module's ``app``: replace it before it starts.
    emulator.app = delayed(emulator.app, parse_latency(os.environ.get(LATENCY_VARIABLE, "")))
    sys.argv = ["ministack"]
    result: int | None = emulator.main()
    return result or 0


if __name__ == "__main__":
    sys.exit(main())
