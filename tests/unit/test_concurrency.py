import itertools

from pipelined.concurrency import AimdLimit


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_throttling_halves_the_limit_once_per_cooldown() -> None:
    clock = FakeClock()
    limit = AimdLimit(16, decrease_cooldown_s=2, clock=clock)
    assert limit.on_throttle()
    assert limit.current == 8
    assert not limit.on_throttle(), "a burst of throttles within the cooldown is one signal"
    assert limit.current == 8
    clock.now = 2.5
    assert limit.on_throttle()
    assert limit.current == 4


def test_the_limit_never_drops_below_the_minimum() -> None:
    clock = FakeClock()
    limit = AimdLimit(4, minimum=1, decrease_cooldown_s=0, clock=clock)
    for step in range(10):
        clock.now = step
        limit.on_throttle()
    assert limit.current == 1


def test_successes_raise_it_one_at_a_time_back_to_the_maximum() -> None:
    clock = FakeClock()
    limit = AimdLimit(8, decrease_cooldown_s=0, clock=clock)
    limit.on_throttle()
    limit.on_throttle()
    assert limit.current == 2
    history = []
    for _ in range(100):
        limit.on_success()
        history.append(limit.current)
    # Additive: each step up needs as many successes as the current limit.
    assert history[:2] == [2, 3]
    assert history.index(4) == 1 + 3
    assert max(history) == 8
    assert all(b - a in (0, 1) for a, b in itertools.pairwise(history))


def test_a_throttle_resets_the_success_streak() -> None:
    clock = FakeClock()
    limit = AimdLimit(8, decrease_cooldown_s=10, clock=clock)
    limit.on_throttle()  # 4
    limit.on_success()
    limit.on_success()
    limit.on_success()
    limit.on_throttle()  # within the cooldown: not lowered, but the streak starts again
    limit.on_success()
    assert limit.current == 4
