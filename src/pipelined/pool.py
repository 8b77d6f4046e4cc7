"""The process pool for CPU-bound work: a time limit that kills the worker, a memory cap,
and workers recycled after a number of jobs. Built on pebble, which can kill a busy worker
(concurrent.futures cannot).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import resource
from collections.abc import Callable
from typing import Any, TypeVar

import pebble

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
        """Run ``function(*args)`` in a worker; cancelling the call kills a busy worker."""
        future: concurrent.futures.Future[T] = self._pool.schedule(
            function, args=args, timeout=self._timeout_s
        )
        try:
            return await asyncio.wrap_future(future)
        except concurrent.futures.TimeoutError:
            raise LimitExceededError(
                f"processing ran past the job_timeout_s limit of {self._timeout_s:g} s; "
                "its worker was stopped"
            ) from None
        except MemoryError:
            raise LimitExceededError(
                f"processing needed more than the worker_memory_mb limit of {self._memory_mb} MB"
            ) from None
        except pebble.ProcessExpired as error:
            # Killed from outside (the OOM killer, an operator): not the file's fault for sure.
            raise WorkerDiedError(f"worker process died (exit code {error.exitcode})") from None

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the workers; a busy one is killed."""
        self._pool.stop()  # type: ignore[no-untyped-call]
        self._pool.join(timeout=timeout_s)
