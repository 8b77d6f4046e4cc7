"""Every Prometheus object, and the HTTP server for /metrics, /healthz and /readyz."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

MESSAGES = Counter(
    "pipelined_messages_total",
    "SQS messages handled, by disposition (ack, retry, reject, released, lost), and the waits of"
    " deliveries that met a live claim (deferred).",
    ["outcome"],
)
JOBS = Counter(
    "pipelined_jobs_total",
    "Object jobs finished, by kind and outcome (processed, failed, skipped).",
    ["kind", "outcome"],
)
PROCESSING_SECONDS = Histogram(
    "pipelined_processing_seconds",
    "Wall time of one object job from claim to notification, by kind.",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)
IN_FLIGHT = Gauge("pipelined_in_flight_messages", "Messages received and not yet finished.")
CONCURRENCY_LIMIT = Gauge(
    "pipelined_concurrency_limit",
    "Messages this process may hold at once; lowered when the cloud throttles (AIMD).",
)
VISIBILITY_EXTENSIONS = Counter(
    "pipelined_visibility_extensions_total",
    "Visibility timeout extensions, by result (extended, failed).",
    ["result"],
)
DELETES = Counter(
    "pipelined_deletes_total", "Message deletions sent, by result (deleted, failed).", ["result"]
)
AWS_ERRORS = Counter(
    "pipelined_aws_errors_total", "Failed calls to cloud services, by operation.", ["operation"]
)

INTERNAL_ERRORS = Counter(
    "pipelined_internal_errors_total",
    "Jobs ended by a bug in pipelined's own code (retried, so they reach the dead-letter"
    " queue); each is logged once as internal_error with its traceback.",
)

HEALTH_STALL_S = 30.0
"""The consume loop must have ticked within this long for /healthz to pass."""


class Health:
    """What /healthz and /readyz report; the consumer updates it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_tick = clock()
        self.ready = False
        self.reason = "starting"

    def tick(self) -> None:
        """Called from the consume loop: proof that it still turns."""
        self._last_tick = self._clock()

    def set_ready(self, ready: bool, reason: str = "") -> None:
        self.ready = ready
        self.reason = reason

    @property
    def alive(self) -> bool:
        return self._clock() - self._last_tick < HEALTH_STALL_S


def build_app(health: Health) -> web.Application:
    """The aiohttp application: it runs on the daemon's own loop, so a stuck loop fails it."""

    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def healthz(_: web.Request) -> web.Response:
        if health.alive:
            return web.Response(text="ok\n")
        return web.Response(status=503, text="consume loop stalled\n")

    async def readyz(_: web.Request) -> web.Response:
        if health.ready and health.alive:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {health.reason or 'stalled'}\n")

    app = web.Application()
    app.add_routes(
        [web.get("/metrics", metrics), web.get("/healthz", healthz), web.get("/readyz", readyz)]
    )
    return app


async def start_http_server(health: Health, host: str, port: int) -> web.AppRunner:
    """Serve the health and metrics endpoints; the caller cleans up the returned runner."""
    runner = web.AppRunner(build_app(health), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port actually bound (useful when the configured port is 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise RuntimeError("the metrics server is not listening")
