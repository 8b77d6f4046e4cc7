"""/healthz and /readyz, served by the daemon's own event loop."""

import asyncio
import urllib.error
import urllib.request

import pytest

from pipelined.metrics import HEALTH_STALL_S, Health, bound_port, start_http_server


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.timeout(30)
async def test_health_follows_the_consume_loop_and_readiness() -> None:
    clock = FakeClock()
    health = Health(clock=clock)
    runner = await start_http_server(health, "127.0.0.1", 0)
    port = bound_port(runner)
    try:

        async def get(path: str) -> int:
            return await asyncio.to_thread(status, port, path)

        assert await get("/healthz") == 200
        assert await get("/readyz") == 503, "not ready until the first receive succeeds"
        health.set_ready(True)
        assert await get("/readyz") == 200
        clock.now += HEALTH_STALL_S + 1  # the consume loop stopped ticking
        assert await get("/healthz") == 503
        assert await get("/readyz") == 503
        health.tick()
        assert await get("/healthz") == 200
        health.set_ready(False, "draining")
        assert await get("/readyz") == 503
    finally:
        await runner.cleanup()
