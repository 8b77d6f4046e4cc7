"""Every Prometheus object, and the HTTP server for /metrics, /healthz and /readyz.

docs/metrics.md lists each series with its labels and meaning; a test compares the two. Label
values are small fixed sets: never a key, a message id or an error's text.
"""

from __future__ import annotations

import functools
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

import pipelined

JOB_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
"""Processing, stage and end-to-end times: from a small thumbnail to the longest job allowed."""
CLOUD_CALL_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
MESSAGE_AGE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600)

BUILD_INFO = Gauge(
    "pipelined_build_info",
    "Always 1: the version, the Python and the backend of this process.",
    ["version", "python", "backend"],
)
JOB_TIMEOUT_SECONDS = Gauge(
    "pipelined_job_timeout_seconds",
    "The configured time limit of one job in a worker (JOB_TIMEOUT_S).",
)

# -- messages ------------------------------------------------------------------------------

MESSAGES_RECEIVED = Counter(
    "pipelined_messages_received_total", "Messages received from the queue or subscription."
)
MESSAGES = Counter(
    "pipelined_messages_total",
    "Messages finished, by disposition (ack, retry, reject, released, lost), and the waits of"
    " deliveries that met a live claim (deferred) or retry in place (retry_in_place).",
    ["outcome"],
)
MESSAGE_AGE_SECONDS = Histogram(
    "pipelined_message_age_seconds",
    "Age of a message when received, from its send time (SQS SentTimestamp, Pub/Sub publish_time).",
    buckets=MESSAGE_AGE_BUCKETS,
)
LAST_RECEIVE_TIMESTAMP = Gauge(
    "pipelined_last_receive_timestamp_seconds",
    "Unix time of the last successful receive call (an empty one counts).",
)
IN_FLIGHT = Gauge("pipelined_in_flight_messages", "Messages received and not yet finished.")
FREE_SLOTS = Gauge(
    "pipelined_free_slots", "Messages this process could still take under its concurrency limit."
)
RECEIVE_FLOOR = Gauge(
    "pipelined_receive_floor_slots",
    "Free slots a receive waits for: half of those beyond the workers' share, at least 1.",
)
CONCURRENCY_LIMIT = Gauge(
    "pipelined_concurrency_limit",
    "Messages this process may hold at once; lowered when the cloud throttles (AIMD).",
)
VISIBILITY_EXTENSIONS = Counter(
    "pipelined_visibility_extensions_total",
    "Lease extensions (SQS visibility, Pub/Sub ack deadline), by result (extended, failed).",
    ["result"],
)
LEASES_LOST = Counter(
    "pipelined_leases_lost_total",
    "Message leases found lost (the receipt handle or ack id no longer works); the job is"
    " cancelled.",
)
DELETES = Counter(
    "pipelined_deletes_total",
    "Message deletions (acknowledgements) sent, by result (deleted, failed).",
    ["result"],
)

# -- jobs ----------------------------------------------------------------------------------

JOBS = Counter(
    "pipelined_jobs_total",
    "Object jobs finished, by kind and outcome (processed, failed, skipped).",
    ["kind", "outcome"],
)
PROCESSING_SECONDS = Histogram(
    "pipelined_processing_seconds",
    "Wall time of one object job from claim to notification, by kind.",
    ["kind"],
    buckets=JOB_SECONDS_BUCKETS,
)
STAGE_SECONDS = Histogram(
    "pipelined_stage_seconds",
    "Wall time of one stage of a job (download, process, upload, record, notify), by kind.",
    ["kind", "stage"],
    buckets=JOB_SECONDS_BUCKETS,
)
END_TO_END_SECONDS = Histogram(
    "pipelined_end_to_end_seconds",
    "From the event's own time (S3 eventTime, GCS timeCreated) to its notification published,"
    " by kind.",
    ["kind"],
    buckets=JOB_SECONDS_BUCKETS,
)
DOWNLOADED_BYTES = Counter("pipelined_downloaded_bytes_total", "Source bytes downloaded.")
UPLOADED_BYTES = Counter("pipelined_uploaded_bytes_total", "Artifact bytes uploaded.")
LEDGER_REFUSALS = Counter(
    "pipelined_ledger_refusals_total",
    "Ledger requests refused, by reason (duplicate, stale, busy, lost).",
    ["reason"],
)
INTERNAL_ERRORS = Counter(
    "pipelined_internal_errors_total",
    "Jobs ended by a bug in pipelined's own code (retried, so they reach the dead-letter"
    " queue); each is logged once as internal_error with its traceback.",
)

# -- the worker pool -----------------------------------------------------------------------

POOL_WORKERS = Gauge("pipelined_pool_workers", "Worker processes configured.")
POOL_BUSY_WORKERS = Gauge("pipelined_pool_busy_workers", "Workers running a job.")
POOL_QUEUED_JOBS = Gauge("pipelined_pool_queued_jobs", "Jobs waiting for a free worker.")
POOL_WORKER_RESTARTS = Counter(
    "pipelined_pool_worker_restarts_total",
    "Workers replaced after being killed at the job time limit (timeout), killed by SIGKILL"
    " (memory), or dying otherwise (died).",
    ["reason"],
)
POOL_TIMEOUTS = Counter("pipelined_pool_timeouts_total", "Jobs stopped at the job time limit.")
POOL_MEMORY_KILLS = Counter(
    "pipelined_pool_memory_kills_total",
    "Jobs stopped at the memory cap: MemoryError under the worker's RLIMIT_AS, or the worker"
    " killed by SIGKILL.",
)

# -- cloud calls ---------------------------------------------------------------------------

CLOUD_CALLS = Counter(
    "pipelined_cloud_calls_total",
    "Calls to cloud services, by service, API operation and outcome (ok, error, throttled).",
    ["service", "operation", "outcome"],
)
CLOUD_CALL_SECONDS = Histogram(
    "pipelined_cloud_call_seconds",
    "Latency of calls to cloud services, by service and API operation.",
    ["service", "operation"],
    buckets=CLOUD_CALL_SECONDS_BUCKETS,
)

# -- the queue, from its own attributes ----------------------------------------------------

QUEUE_MESSAGES = Gauge(
    "pipelined_queue_messages",
    "Messages on the queue (main, dlq) by state (visible, in_flight, delayed), from the"
    " queue's own attributes.",
    ["queue", "state"],
)
QUEUE_OLDEST_MESSAGE_AGE = Gauge(
    "pipelined_queue_oldest_message_age_seconds",
    "Approximate age of the oldest message on the queue (main, dlq); see docs/metrics.md.",
    ["queue"],
)
QUEUE_STATS_TIMESTAMP = Gauge(
    "pipelined_queue_stats_timestamp_seconds",
    "Unix time of the last successful poll of the queue's attributes.",
)

STAGES = ("download", "process", "upload", "record", "notify")
CALL_OUTCOMES = ("ok", "error", "throttled")


@dataclass(frozen=True)
class CallSeries:
    """The series of one (service, operation), looked up once and reused by every call."""

    outcomes: dict[str, Counter]
    seconds: Histogram

    def record(self, outcome: str, seconds: float) -> None:
        self.outcomes[outcome].inc()
        self.seconds.observe(seconds)


@functools.cache
def cloud_call(service: str, operation: str) -> CallSeries:
    """The series a call to ``operation`` of ``service`` counts in (a fixed set of both)."""
    return CallSeries(
        outcomes={o: CLOUD_CALLS.labels(service, operation, o) for o in CALL_OUTCOMES},
        seconds=CLOUD_CALL_SECONDS.labels(service, operation),
    )


@functools.cache
def stage_seconds(kind: str, stage: str) -> Histogram:
    return STAGE_SECONDS.labels(kind, stage)


@functools.cache
def end_to_end_seconds(kind: str) -> Histogram:
    return END_TO_END_SECONDS.labels(kind)


def observe_end_to_end(kind: str, event_time: str | None) -> None:
    """Observe the time from ``event_time`` (the event's own, ISO 8601) to now; nothing for
    an event without one (a synthetic event, a replay) or with one that does not parse."""
    started = epoch_of(event_time)
    if started is not None:
        # A clock ahead of the cloud's must not make a negative time.
        end_to_end_seconds(kind).observe(max(0.0, time.time() - started))


def epoch_of(iso_time: str | None) -> float | None:
    """Unix time of an ISO 8601 time ('2026-12-02T19:02:57.123Z'); None if there is none."""
    if not iso_time:
        return None
    try:
        moment = datetime.fromisoformat(iso_time)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None  # no zone: cannot be placed in time
    return moment.timestamp()


def set_build_info(backend: str) -> None:
    # One series: a process runs one build on one backend (a test process may start daemons
    # on both, one after the other).
    BUILD_INFO.clear()
    BUILD_INFO.labels(pipelined.version(), platform.python_version(), backend).set(1)


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
