"""Tests of the upstream limiter on a virtual clock: no test sleeps in real time.

`run_virtual` runs a coroutine on an event loop whose clock jumps straight to
the next timer whenever every task is waiting, so `asyncio.sleep(30)` takes no
real time and the test can assert exact virtual times.
"""

from __future__ import annotations

import asyncio
import logging
import random
import selectors
from collections.abc import Awaitable, Callable
from email.utils import format_datetime
from datetime import datetime, timezone
from typing import TypeVar

import pytest

from worker.limit import (
    DeadlineExceeded,
    Limiter,
    LimiterConfig,
    LimiterState,
    Outcome,
    Permit,
    parse_retry_after,
)
from worker.settings import Settings

T = TypeVar("T")

START = 1000.0  # virtual monotonic seconds at the start of each test
EPOCH_AT_START = 1_700_000_000.0  # wall-clock epoch seconds at START


class VirtualClock:
    """Virtual time shared by the event loop, the limiter's clock and its sleep."""

    def __init__(self) -> None:
        self.now = START

    def time(self) -> float:
        return self.now

    def wall(self) -> float:
        return EPOCH_AT_START + (self.now - START)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _VirtualSelector(selectors.DefaultSelector):
    """Selector that advances virtual time by the loop's select timeout instead of blocking."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None):  # type: ignore[override]
        if timeout is None:
            raise RuntimeError("every task waits and no timer is set: the test would hang")
        self._clock.now += max(0.0, timeout)
        return super().select(0)


class _VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(_VirtualSelector(clock))
        self._virtual_clock = clock

    def time(self) -> float:
        return self._virtual_clock.now


def run_virtual(test: Callable[[VirtualClock], Awaitable[T]]) -> T:
    clock = VirtualClock()
    loop = _VirtualLoop(clock)
    try:
        return loop.run_until_complete(test(clock))
    finally:
        loop.run_until_complete(_cancel_leftover_tasks())
        loop.close()


async def _cancel_leftover_tasks() -> None:
    """Cancel tasks the test left behind, such as the limiter's pending wake-up."""
    leftovers = asyncio.all_tasks() - {asyncio.current_task()}
    for task in leftovers:
        task.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)


def make_limiter(clock: VirtualClock, seed: int = 1, **config: object) -> Limiter:
    return Limiter(
        LimiterConfig(**config),  # type: ignore[arg-type]
        clock=clock.time,
        sleep=clock.sleep,
        rng=random.Random(seed),
        wall_clock=clock.wall,
    )


async def settle() -> None:
    """Let every ready task run without advancing virtual time."""
    for _ in range(20):
        await asyncio.sleep(0)


class Caller:
    """A task that takes a permit, notes when it got it, and holds it until told how the call ended."""

    def __init__(self, limiter: Limiter, clock: VirtualClock, *, deadline: float | None = None) -> None:
        self._limiter = limiter
        self._clock = clock
        self.granted_at: float | None = None
        self.permit: Permit | None = None
        self.error: BaseException | None = None
        self._finish: asyncio.Future[tuple[Outcome, float, str | None]] = asyncio.get_running_loop().create_future()
        self.task = asyncio.create_task(self._run(deadline))

    async def _run(self, deadline: float | None) -> None:
        try:
            async with self._limiter.permit(deadline=deadline) as permit:
                self.granted_at = self._clock.now
                self.permit = permit
                outcome, latency, retry_after = await self._finish
                permit.record(outcome, latency_s=latency, retry_after=retry_after)
        except DeadlineExceeded as exc:
            self.error = exc

    @property
    def granted(self) -> bool:
        return self.granted_at is not None

    async def finish(self, outcome: Outcome = Outcome.SUCCESS, *, latency: float = 0.1,
                     retry_after: str | None = None) -> None:
        self._finish.set_result((outcome, latency, retry_after))
        await self.task


async def grow_to_cap(limiter: Limiter, clock: VirtualClock) -> None:
    """Run full rounds of successful calls until the ramp reaches the target cap."""
    for _ in range(50):
        state = limiter.snapshot()
        if state.cap == state.target_cap:
            return
        callers = [Caller(limiter, clock) for _ in range(state.cap)]
        await settle()
        for caller in callers:
            await caller.finish()
    raise AssertionError(f"the ramp did not reach the target cap: {limiter.snapshot()}")


# Simulation: a server with a token-bucket rate limit and a fixed latency.


class FakeServer:
    """Accepts `rate_per_s` calls per second with a burst, answers 429 beyond it, after `latency_s`."""

    def __init__(self, clock: VirtualClock, *, rate_per_s: float, burst: float, latency_s: float) -> None:
        self._clock = clock
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.latency_s = latency_s
        self._tokens = burst
        self._tokens_at = clock.now

    async def call(self) -> int:
        now = self._clock.now
        self._tokens = min(self.burst, self._tokens + (now - self._tokens_at) * self.rate_per_s)
        self._tokens_at = now
        accepted = self._tokens >= 1.0
        if accepted:
            self._tokens -= 1.0
        await asyncio.sleep(self.latency_s)
        return 200 if accepted else 429


async def simulate(clock: VirtualClock, limiter: Limiter, server: FakeServer, *, callers: int,
                   duration_s: float, warm_up_s: float) -> tuple[int, int]:
    """Drive `callers` busy callers against the server; return (successes, 429s) after the warm-up."""
    end = clock.now + duration_s
    measure_from = clock.now + warm_up_s
    counts = {200: 0, 429: 0}

    async def busy_caller() -> None:
        while clock.now < end:
            async with limiter.permit() as permit:
                started = clock.now
                status = await server.call()
                outcome = Outcome.SUCCESS if status == 200 else Outcome.RATE_LIMITED
                permit.record(outcome, latency_s=clock.now - started)
            if started >= measure_from and started < end:
                counts[status] += 1

    await asyncio.gather(*(busy_caller() for _ in range(callers)))
    return counts[200], counts[429]


@pytest.mark.parametrize(
    ("rate_per_s", "latency_s"),
    [(40.0, 0.1), (20.0, 0.01), (10.0, 0.5)],
    ids=["cap-bound", "short-latency", "slow-calls"],
)
def test_simulation_finds_unconfigured_rate(rate_per_s: float, latency_s: float) -> None:
    duration_s, warm_up_s = 600.0, 100.0

    async def scenario(clock: VirtualClock) -> tuple[int, int, LimiterState]:
        limiter = make_limiter(clock, max_concurrency=32)
        server = FakeServer(clock, rate_per_s=rate_per_s, burst=rate_per_s / 2, latency_s=latency_s)
        successes, rejected = await simulate(
            clock, limiter, server, callers=64, duration_s=duration_s, warm_up_s=warm_up_s
        )
        return successes, rejected, limiter.snapshot()

    successes, rejected, state = run_virtual(scenario)
    measured_s = duration_s - warm_up_s
    throughput = successes / measured_s
    rejected_share = rejected / (successes + rejected)
    print(f"R={rate_per_s} L={latency_s}: {throughput:.2f}/s ({throughput / rate_per_s:.0%}), "
          f"429 share {rejected_share:.2%}, {state}")
    assert rejected_share < 0.02, f"429 share {rejected_share:.2%} should stay below 2%"
    assert throughput >= 0.7 * rate_per_s, (
        f"throughput {throughput:.1f}/s should reach at least 70% of the server's {rate_per_s}/s"
    )
