"""The daemon's lifecycle in one place: start order, signals, drain, release, close."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from typing import Any

from pipelined import metrics
from pipelined.backends import Backend, open_backend
from pipelined.concurrency import ThrottleSignal
from pipelined.consumer import Consumer, ConsumerConfig
from pipelined.disposition import BackoffPolicy
from pipelined.handler import MessageHandler
from pipelined.ledger.store import Ledger
from pipelined.logs import get_logger
from pipelined.pipeline import Pipeline, PipelineConfig
from pipelined.pool import WorkerPool
from pipelined.processing import ProcessingOptions
from pipelined.processing.options import EncoderEffort
from pipelined.queuestats import QueueStatsPoller, ReceivedAges
from pipelined.sdnotify import SystemdNotifier
from pipelined.settings import Settings
from pipelined.staging import JobFolders

log = get_logger(__name__)


def consumer_config(settings: Settings) -> ConsumerConfig:
    return ConsumerConfig(
        max_inflight=settings.max_inflight,
        pollers=settings.pollers,
        wait_time_s=settings.wait_time_s,
        visibility_timeout_s=settings.visibility_timeout_s,
        max_job_time_s=settings.max_job_time_s,
        drain_timeout_s=settings.drain_timeout_s,
        delete_flush_s=settings.delete_flush_s,
        lease_renew_interval_s=settings.lease_renew_interval_s,
        backoff=backoff_policy(settings),
        retries_in_place=settings.retries_in_place,
        workers=settings.workers,
    )


def backoff_policy(settings: Settings) -> BackoffPolicy:
    return BackoffPolicy(settings.retry_base_delay_s, settings.retry_max_delay_s)


def pipeline_config(settings: Settings) -> PipelineConfig:
    return PipelineConfig(
        output_bucket=settings.output_bucket,
        output_prefix=settings.output_prefix,
        options=ProcessingOptions(
            thumbnail_sizes=settings.thumbnail_sizes,
            thumbnail_format=settings.thumbnail_format,
            effort=EncoderEffort(settings.webp_method, settings.avif_speed),
            max_pixels=settings.max_pixels,
            max_frames=settings.max_frames,
            max_pages=settings.max_pages,
            # The preview renders in its own child with its own deadline, always inside the job's.
            pdf_preview_timeout_s=min(10.0, settings.job_timeout_s / 2),
            job_timeout_s=settings.job_timeout_s,
        ),
        rules=settings.rules_file.rules if settings.rules_file else (),
        max_object_bytes=settings.max_object_bytes,
        claim_lease_s=settings.claim_lease_s,
        presign_ttl_s=settings.presign_ttl_s,
    )


async def run_daemon(
    settings: Settings,
    stop: asyncio.Event | None = None,
    *,
    handle_signals: bool = True,
    started: asyncio.Event | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (or ``stop``), then drain and close everything, in order."""
    stop = stop or asyncio.Event()
    notifier = SystemdNotifier()
    health = metrics.Health()
    metrics.set_build_info(settings.backend)
    metrics.JOB_TIMEOUT_SECONDS.set(settings.job_timeout_s)
    if handle_signals:
        # First of all: a SIGTERM during start-up must still end in an orderly exit 0.
        _install_signal_handlers(stop)
    async with AsyncExitStack() as stack:
        runner = await metrics.start_http_server(
            health, settings.metrics_host, settings.metrics_port
        )
        stack.push_async_callback(runner.cleanup)
        log.info("metrics_listening", port=metrics.bound_port(runner))
        throttled = ThrottleSignal()
        backend = await open_backend(settings, stack, throttled)
        folders = JobFolders(settings.tmp_dir)
        stack.callback(folders.close)  # after the pool's: no worker is left writing there
        pool = WorkerPool(
            settings.workers,
            settings.job_timeout_s,
            settings.worker_memory_mb,
            settings.worker_max_tasks,
        )
        stack.callback(pool.close)
        await _unless_stopped(_warn_without_dead_letters(backend), stop, "queue_check")
        _warn_if_drain_cuts_long_polls(settings)
        pipeline = Pipeline(
            backend.store,
            Ledger(backend.ledger_store, settings.claim_lease_s),
            backend.notifier,
            pool,
            pipeline_config(settings),
            folders=folders,
        )
        consumer = Consumer(
            backend.queue,
            MessageHandler(
                pipeline,
                backoff_policy(settings),
                parse=backend.parse,
                input_buckets=settings.input_buckets,
            ),
            consumer_config(settings),
            health,
        )
        throttled.subscribe(consumer.note_throttle)
        consumer.on_ready = notifier.ready
        consumer.on_draining = lambda: notifier.stopping(settings.drain_timeout_s)
        watchdog = _start_watchdog(notifier, health)
        ages = ReceivedAges()
        consumer.on_received = ages.note
        queue_stats = asyncio.create_task(
            QueueStatsPoller(backend.queue_stats, ages).run(), name="queue-stats"
        )
        if started is not None:
            started.set()
        log.info(
            "daemon_started",
            backend=settings.backend,
            source=backend.source,
            workers=settings.workers,
        )
        try:
            await consumer.run(stop)
        finally:
            if watchdog is not None:
                watchdog.cancel()
            # Before the clients close: no attributes call may be left in flight.
            queue_stats.cancel()
            await asyncio.gather(queue_stats, return_exceptions=True)
        log.info("daemon_stopped")


async def _unless_stopped(check: Coroutine[Any, Any, None], stop: asyncio.Event, name: str) -> None:
    """Run a start-up ``check``, but give it up when a stop is requested meanwhile: against an
    unreachable endpoint botocore's retries would otherwise hold up the shutdown for seconds."""
    checking = asyncio.create_task(check)
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({checking, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        abandoned = not checking.done()
        for task in (checking, stopping):
            task.cancel()
    await asyncio.gather(checking, stopping, return_exceptions=True)
    if abandoned:
        log.info("start_up_check_abandoned", check=name, reason="shutdown requested")


def _warn_if_drain_cuts_long_polls(settings: Settings) -> None:
    """A receive still in its long poll when the drain's time runs out is given up; SQS goes on
    with it all the same, and what it hands over then stays hidden for a visibility timeout."""
    if settings.drain_timeout_s < settings.wait_time_s:
        log.warning(
            "drain_shorter_than_long_poll",
            drain_timeout_s=settings.drain_timeout_s,
            wait_time_s=settings.wait_time_s,
            hidden_for_s=settings.visibility_timeout_s,
        )


async def _warn_without_dead_letters(backend: Backend) -> None:
    try:
        configured = await backend.has_dead_letters()
    except Exception as error:
        log.warning("queue_check_failed", error=str(error))
        return
    if not configured:
        log.warning("queue_without_dead_letter_queue", hint=backend.dead_letter_hint)


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _on_signal, stop, signum)


def _on_signal(stop: asyncio.Event, signum: int) -> None:
    log.info("shutdown_requested", signal=signal.Signals(signum).name)
    stop.set()


def _start_watchdog(notifier: SystemdNotifier, health: metrics.Health) -> asyncio.Task[None] | None:
    """Ping systemd's watchdog only while the consume loop ticks, so a hung loop is restarted."""
    if not notifier.enabled or not notifier.watchdog_interval_s:
        return None

    async def ping() -> None:
        while True:
            await asyncio.sleep(notifier.watchdog_interval_s)
            if health.alive:
                notifier.watchdog()

    return asyncio.create_task(ping(), name="systemd-watchdog")
