"""The process pool for CPU-bound work: a time limit that kills the worker, a memory cap,
and workers recycled after a number of jobs. Built on pebble, which can kill a busy worker
(concurrent.futures cannot).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import resource
import signal
from collections.abc import Callable
from typing import Any, TypeVar

import pebble

from pipelined import jobclock, metrics
from pipelined.errors import LimitExceededError, WorkerDiedError

T = TypeVar("T")

_PRELOAD = ["pipelined.processing"]
"""Imported once in the fork server, so each new worker starts warm."""


def _limit_memory(memory_mb: int) -> None:
    """Cap the worker's address space: an allocation past it raises MemoryError in the worker."""
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


class WorkerPool:
    """Runs picklable functions in killable worker processes."""

    def __init__(
        self, workers: int, timeout_s: float, memory_mb: int, max_tasks: int = 200
    ) -> None:
        self._timeout_s = timeout_s
        self._memory_mb = memory_mb
        metrics.POOL_WORKERS.set(workers)
        # One permit per worker, so pebble's own queue stays empty and no job waits unseen.
        self._free_workers = asyncio.Semaphore(workers)
        # forkserver: workers never inherit the daemon's threads or sockets, and the preloaded
        # server makes starting one (after a crash or a recycle) cheap.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        self._pool = pebble.ProcessPool(
            max_workers=workers,
            max_tasks=max_tasks,
            initializer=_limit_memory,
            initargs=(memory_mb,),
            context=context,
        )

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(*args)`` in a worker; cancelling the call kills a busy worker.

        Calls wait for a free worker here, not in pebble's queue: the wait is not the job's
        own time, so the current job's budget clock is paused for it (see ``jobclock``).
        """
        metrics.POOL_QUEUED_JOBS.inc()
        try:
            with jobclock.waiting_for_worker():
                await self._free_workers.acquire()
        finally:
            metrics.POOL_QUEUED_JOBS.dec()
        metrics.POOL_BUSY_WORKERS.inc()
        try:
            return await self._run_in_worker(function, args)
        finally:
            metrics.POOL_BUSY_WORKERS.dec()
            self._free_workers.release()

    async def _run_in_worker(self, function: Callable[..., T], args: tuple[Any, ...]) -> T:
        future: concurrent.futures.Future[T] = self._pool.schedule(
            function, args=args, timeout=self._timeout_s
        )
        try:
            return await asyncio.wrap_future(future)
        except concurrent.futures.TimeoutError:
            # pebble kills the worker at the limit and starts another.
            metrics.POOL_TIMEOUTS.inc()
            metrics.POOL_WORKER_RESTARTS.labels("timeout").inc()
            raise LimitExceededError.of("job_timeout", limit_s=f"{self._timeout_s:g}") from None
        except MemoryError:
            # Raised in the worker at its RLIMIT_AS: the worker lives on.
            metrics.POOL_MEMORY_KILLS.inc()
            raise LimitExceededError.of("memory_limit", limit_mb=self._memory_mb) from None
        except pebble.ProcessExpired as error:
            # Killed from outside (the OOM killer, an operator): not the file's fault for sure.
            _count_death(error.exitcode)
            raise WorkerDiedError.of("worker_died", exit_code=error.exitcode) from None

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the workers; a busy one is killed."""
        self._pool.stop()  # type: ignore[no-untyped-call]
        self._pool.join(timeout=timeout_s)


def _count_death(exit_code: int | None) -> None:
    """A worker that died is replaced. SIGKILL is how the kernel's OOM killer (a cgroup's
    memory limit) ends a process, so it is counted as a memory kill; an operator's kill -9
    looks the same."""
    if exit_code == -signal.SIGKILL:
        metrics.POOL_MEMORY_KILLS.inc()
        metrics.POOL_WORKER_RESTARTS.labels("memory").inc()
    else:
        metrics.POOL_WORKER_RESTARTS.labels("died").inc()
