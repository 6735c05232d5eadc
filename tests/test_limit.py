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
from datetime import datetime, timezone
from email.utils import format_datetime
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
    """A task that takes a permit, stores when it got it, and holds it until `finish` sets the call's outcome."""

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


async def pass_pause(limiter: Limiter, clock: VirtualClock) -> None:
    """Wait out the current pause and let one probe call succeed."""
    state = limiter.snapshot()
    if state.paused:
        await asyncio.sleep(state.pause_remaining_s)
    probe = Caller(limiter, clock)
    await settle()
    assert probe.granted, f"the probe call was not granted after the pause: {limiter.snapshot()}"
    await probe.finish()


async def rate_limit_one_call(limiter: Limiter, clock: VirtualClock) -> None:
    """Let one call get a 429 with `Retry-After: 1`, then pass the pause and ramp back up."""
    caller = Caller(limiter, clock)
    await settle()
    await caller.finish(Outcome.RATE_LIMITED, retry_after="1")
    await pass_pause(limiter, clock)
    await grow_to_cap(limiter, clock)


# Backoff and Retry-After.


def test_backoff_within_jitter_and_cap() -> None:
    limiter = Limiter(LimiterConfig(backoff_initial_s=1.0, backoff_max_s=30.0), rng=random.Random(7))
    for attempt in range(1, 12):
        nominal = min(30.0, 2.0 ** (attempt - 1))
        draws = [limiter.backoff_s(attempt) for _ in range(2000)]
        assert min(draws) >= 0.8 * nominal, f"attempt {attempt}: a delay is more than 20% below {nominal}"
        assert max(draws) <= min(1.2 * nominal, 30.0), f"attempt {attempt}: a delay exceeds +20% or the cap"
        assert min(draws) < 0.82 * nominal, f"attempt {attempt}: the jitter does not reach down to -20%"
        assert max(draws) > min(1.18 * nominal, 29.9), f"attempt {attempt}: the jitter does not reach up"


def test_backoff_rejects_attempt_zero() -> None:
    limiter = Limiter(LimiterConfig())
    with pytest.raises(ValueError, match="1-based"):
        limiter.backoff_s(0)


def _http_date(offset_s: float, form: str) -> str:
    moment = datetime.fromtimestamp(EPOCH_AT_START + offset_s, tz=timezone.utc)
    if form == "imf":
        return format_datetime(moment, usegmt=True)
    if form == "rfc850":
        return moment.strftime("%A, %d-%b-%y %H:%M:%S GMT")
    return f"{moment:%a %b} {moment.day:>2} {moment:%H:%M:%S %Y}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        (" 30 ", 30.0),
        ("1.5", 1.5),
        ("-5", None),
        ("soon", None),
        ("12abc", None),
        ("99999999999", 120.0),
        ("", None),
        ("   ", None),
        (None, None),
        (_http_date(30, "imf"), 30.0),
        (_http_date(-60, "imf"), 0.0),
        (_http_date(90, "rfc850"), 90.0),
        (_http_date(45, "asctime"), 45.0),
        (_http_date(86_400, "imf"), 120.0),
    ],
    ids=[
        "delta", "zero", "whitespace-around", "decimal", "negative", "garbage", "digits-then-garbage",
        "huge-capped", "empty", "blank", "missing", "imf-future", "imf-past", "rfc850", "asctime",
        "far-date-capped",
    ],
)
def test_parse_retry_after_table(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, EPOCH_AT_START, max_s=120.0) == expected


def test_parse_retry_after_uncapped() -> None:
    assert parse_retry_after("3600", EPOCH_AT_START) == 3600.0


# Shared pause.


def test_pause_holds_every_caller() -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock, max_concurrency=4, min_concurrency=4)
        rejected, in_flight = Caller(limiter, clock), Caller(limiter, clock)
        await settle()
        await rejected.finish(Outcome.RATE_LIMITED, retry_after="10")
        pause_end = START + 10.0

        waiting = [Caller(limiter, clock) for _ in range(5)]
        await settle()
        await in_flight.finish()
        await asyncio.sleep(9.9)
        assert not any(caller.granted for caller in waiting), "a caller started during the pause"

        await asyncio.sleep(0.2)
        granted = [caller for caller in waiting if caller.granted]
        assert len(granted) == 1, "only the probe call may start when the pause ends"
        assert granted[0].granted_at == pause_end

        await granted[0].finish()
        await settle()
        assert all(caller.granted for caller in waiting)
        assert min(caller.granted_at for caller in waiting) >= pause_end  # type: ignore[type-var]
        for caller in waiting[1:]:
            await caller.finish()

    run_virtual(scenario)


def test_pause_not_shortened_by_smaller_retry_after() -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock, max_concurrency=4, min_concurrency=4)
        first, second, third = (Caller(limiter, clock) for _ in range(3))
        await settle()

        await first.finish(Outcome.RATE_LIMITED, retry_after="10")
        await second.finish(Outcome.RATE_LIMITED, retry_after="2")
        assert limiter.snapshot().pause_until == START + 10.0, "a smaller Retry-After shortened the pause"

        await third.finish(Outcome.RATE_LIMITED, retry_after=_http_date(20, "imf"))
        assert limiter.snapshot().pause_until == START + 20.0, "a longer Retry-After did not extend the pause"
        assert limiter.snapshot().pauses_total == 1

    run_virtual(scenario)


def test_pause_without_retry_after_backs_off() -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock, max_concurrency=4, min_concurrency=4, backoff_initial_s=1.0)
        caller = Caller(limiter, clock)
        await settle()
        await caller.finish(Outcome.RATE_LIMITED, retry_after="garbage")
        first_pause = limiter.snapshot().pause_remaining_s
        assert 0.8 <= first_pause <= 1.2, f"first pause {first_pause} s is not 1 s ±20%"

        await asyncio.sleep(first_pause)
        probe = Caller(limiter, clock)
        await settle()
        await probe.finish(Outcome.RATE_LIMITED)
        second_pause = limiter.snapshot().pause_remaining_s
        assert 1.6 <= second_pause <= 2.4, f"pause after the failed probe {second_pause} s is not 2 s ±20%"

        await pass_pause(limiter, clock)
        caller = Caller(limiter, clock)
        await settle()
        await caller.finish(Outcome.RATE_LIMITED)
        third_pause = limiter.snapshot().pause_remaining_s
        assert 0.8 <= third_pause <= 1.2, f"a success did not reset the backoff: pause {third_pause} s"

    run_virtual(scenario)


def test_past_http_date_still_probes() -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock, max_concurrency=4, min_concurrency=4)
        caller = Caller(limiter, clock)
        await settle()
        await caller.finish(Outcome.RATE_LIMITED, retry_after=_http_date(-60, "imf"))

        waiting = [Caller(limiter, clock) for _ in range(3)]
        await settle()
        assert [caller.granted_at for caller in waiting] == [START, None, None]
        assert limiter.snapshot().probing

        await waiting[0].finish()
        await settle()
        assert all(caller.granted for caller in waiting)

    run_virtual(scenario)


def test_unavailable_with_retry_after_pauses() -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock, max_concurrency=4, min_concurrency=4)
        caller = Caller(limiter, clock)
        await settle()
        await caller.finish(Outcome.UNAVAILABLE, retry_after="7")
        state = limiter.snapshot()
        assert state.paused
        assert state.pause_until == START + 7.0
        assert state.rate_limited_total == 0

    run_virtual(scenario)


def test_unavailable_without_retry_after_does_not_pause() -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock, max_concurrency=4, min_concurrency=4)
        caller = Caller(limiter, clock)
        await settle()
        await caller.finish(Outcome.UNAVAILABLE)
        assert not limiter.snapshot().paused

    run_virtual(scenario)


# AIMD on the in-flight cap.


def test_cap_halves_on_429_down_to_floor() -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock, max_concurrency=8, min_concurrency=2)
        await grow_to_cap(limiter, clock)
        assert limiter.snapshot().cap == 8

        callers = [Caller(limiter, clock) for _ in range(8)]
        await settle()
        for caller in callers:
            await caller.finish(Outcome.RATE_LIMITED, retry_after="1")
        assert limiter.snapshot().target_cap == 4, "eight 429s from one round trip must halve the cap once"

        await pass_pause(limiter, clock)
        await grow_to_cap(limiter, clock)
        caps = []
        for _ in range(3):
            await rate_limit_one_call(limiter, clock)
            caps.append(limiter.snapshot().target_cap)
        assert caps == [2, 2, 2], "the cap must stop at min_concurrency"

    run_virtual(scenario)


def test_cap_grows_by_one_per_cap_successes() -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock, max_concurrency=10, min_concurrency=1)
        await grow_to_cap(limiter, clock)
        await rate_limit_one_call(limiter, clock)
        assert limiter.snapshot().cap == 5

        # Keep the cap's worth of calls in flight, so each new call starts with the cap fully in use,
        # and note after how many credited successes the cap grows.
        callers = [Caller(limiter, clock) for _ in range(5)]
        await settle()
        credited = 0
        grown_at = {}
        while 7 not in grown_at:
            oldest = callers.pop(0)
            assert oldest.permit is not None
            credited += oldest.permit.saturated
            await oldest.finish()
            cap = limiter.snapshot().cap
            grown_at.setdefault(cap, credited)
            callers.append(Caller(limiter, clock))
            await settle()
        assert sorted(grown_at) == [5, 6, 7], f"the cap must grow by one at a time: {grown_at}"
        assert grown_at[6] <= 5, "the cap did not grow within five credited successes at cap 5"
        assert grown_at[7] - grown_at[6] == 6, "growing from 6 to 7 must take six credited successes"
        for caller in callers:
            await caller.finish()

    run_virtual(scenario)


def test_latency_spike_decreases_once_per_round_trip() -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock, max_concurrency=8, min_concurrency=1)
        await grow_to_cap(limiter, clock)  # every call reports 0.1 s: the baseline

        callers = [Caller(limiter, clock) for _ in range(8)]
        await settle()
        await callers[0].finish(latency=0.15)
        assert limiter.snapshot().target_cap == 8, "1.5 times the baseline is not a spike"
        for caller in callers[1:]:
            await caller.finish(latency=0.5)
        assert limiter.snapshot().target_cap == 4, "a round of slow answers must halve the cap once"

        callers = [Caller(limiter, clock) for _ in range(4)]
        await settle()
        for caller in callers:
            await caller.finish(latency=0.5)
        assert limiter.snapshot().target_cap == 2, "calls started after the decrease may decrease again"

    run_virtual(scenario)


def test_latency_noise_below_floor_ignored() -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock, max_concurrency=4, min_concurrency=4)
        for latency in (0.001, 0.004, 0.02):
            caller = Caller(limiter, clock)
            await settle()
            await caller.finish(latency=latency)
        assert limiter.snapshot().target_cap == 4, "20 times a 1 ms baseline is still below the 50 ms floor"

    run_virtual(scenario)


def test_server_error_run_halves_cap() -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock, max_concurrency=8, min_concurrency=1)
        await grow_to_cap(limiter, clock)
        callers = [Caller(limiter, clock) for _ in range(4)]
        await settle()
        await callers[0].finish(Outcome.UNAVAILABLE)
        await callers[1].finish(Outcome.TIMEOUT)
        assert limiter.snapshot().target_cap == 8, "two failures are below the run length"
        await callers[2].finish(Outcome.UNAVAILABLE)
        assert limiter.snapshot().target_cap == 4
        await callers[3].finish(Outcome.UNAVAILABLE)
        state = limiter.snapshot()
        assert state.target_cap == 4
        assert not state.paused, "5xx without Retry-After must not pause other callers"
        assert state.server_errors_total == 3
        assert state.timeouts_total == 1

    run_virtual(scenario)


def test_fixed_cap_when_not_adaptive() -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock, max_concurrency=4, min_concurrency=1, adaptive=False)
        assert limiter.snapshot().cap == 4, "a fixed cap starts at max_concurrency"
        callers = [Caller(limiter, clock) for _ in range(4)]
        await settle()
        for caller in callers:
            await caller.finish(Outcome.RATE_LIMITED, retry_after="1", latency=5.0)
        state = limiter.snapshot()
        assert state.target_cap == 4
        assert state.rate_per_s is None, "a fixed limiter learns no rate"

        await pass_pause(limiter, clock)
        assert limiter.snapshot().cap == 1, "even a fixed cap ramps up after a pause"
        await grow_to_cap(limiter, clock)
        assert limiter.snapshot().cap == 4

    run_virtual(scenario)


# Probe and ramp-up after a pause.


def test_probe_alone_then_gradual_ramp() -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock, max_concurrency=8, min_concurrency=1)
        await grow_to_cap(limiter, clock)
        caller = Caller(limiter, clock)
        await settle()
        await caller.finish(Outcome.RATE_LIMITED, retry_after="5")
        assert limiter.snapshot().target_cap == 4

        waiting = [Caller(limiter, clock) for _ in range(12)]
        await asyncio.sleep(8.0)
        granted = [caller for caller in waiting if caller.granted]
        assert len(granted) == 1, "only the probe may run until it succeeds"
        assert limiter.snapshot().probing

        caps = []
        while not all(caller.granted for caller in waiting):
            running = [caller for caller in waiting if caller.granted and not caller.task.done()]
            state = limiter.snapshot()
            assert len(running) <= max(state.cap, 1), f"{len(running)} calls run under cap {state.cap}"
            await running[0].finish()
            await settle()
            caps.append(limiter.snapshot().cap)
        assert caps[0] == 1, "the ramp must start from min_concurrency"
        assert caps == sorted(caps), f"the ramp must only grow: {caps}"
        assert all(later - earlier <= 1 for earlier, later in zip(caps, caps[1:])), f"the ramp jumped: {caps}"
        assert 4 in caps, f"the ramp did not reach the halved cap: {caps}"
        for caller in waiting:
            if not caller.task.done():
                await caller.finish()

    run_virtual(scenario)


def test_probe_rejected_lets_next_caller_probe() -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock, max_concurrency=4, min_concurrency=4)
        caller = Caller(limiter, clock)
        await settle()
        await caller.finish(Outcome.RATE_LIMITED, retry_after="1")
        waiting = [Caller(limiter, clock) for _ in range(3)]
        await asyncio.sleep(1.0)
        await settle()
        assert [caller.granted for caller in waiting] == [True, False, False]

        await waiting[0].finish(Outcome.REJECTED)
        await settle()
        assert [caller.granted for caller in waiting] == [True, True, False], "the next caller must probe"
        assert limiter.snapshot().probing

    run_virtual(scenario)


# Token bucket.


def test_token_bucket_rate_and_burst() -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock, max_concurrency=50, min_concurrency=50, rate_per_s=10.0, burst=5)
        callers = [Caller(limiter, clock) for _ in range(15)]
        await asyncio.sleep(2.0)
        times = [caller.granted_at for caller in callers]
        assert times[:5] == [START] * 5, "the burst of five must leave at once"
        expected = [START + 0.1 * step for step in range(1, 11)]
        assert times[5:] == pytest.approx(expected), "calls after the burst must leave at 10 per second"
        for caller in callers:
            await caller.finish()

    run_virtual(scenario)


def test_no_burst_after_pause() -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock, max_concurrency=50, min_concurrency=50, rate_per_s=10.0, burst=5)
        caller = Caller(limiter, clock)
        await settle()
        await caller.finish(Outcome.RATE_LIMITED, retry_after="30")

        waiting = [Caller(limiter, clock) for _ in range(6)]
        await asyncio.sleep(30.0)
        await settle()
        assert limiter.snapshot().tokens == pytest.approx(0.0), "the probe must take the only token left"
        await waiting[0].finish()
        await asyncio.sleep(1.0)
        times = [caller.granted_at for caller in waiting]
        assert times[0] == START + 30.0
        expected = [START + 30.0 + 0.1 * step for step in range(1, 6)]
        assert times[1:] == pytest.approx(expected), "a burst left right after the pause"

    run_virtual(scenario)


def test_learned_rate_from_429() -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock, max_concurrency=1, min_concurrency=1)
        assert limiter.snapshot().rate_per_s is None
        for _ in range(50):
            caller = Caller(limiter, clock)
            await asyncio.sleep(0.1)
            await caller.finish()
        caller = Caller(limiter, clock)
        await settle()
        await caller.finish(Outcome.RATE_LIMITED, retry_after="1")
        assert limiter.snapshot().rate_per_s == pytest.approx(9.0), "10 calls/s measured, times 0.9"

    run_virtual(scenario)


# Deadlines.


def test_deadline_before_pause_end_raises_at_once() -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock, max_concurrency=4, min_concurrency=4)
        caller = Caller(limiter, clock)
        await settle()
        await caller.finish(Outcome.RATE_LIMITED, retry_after="10")

        with pytest.raises(DeadlineExceeded):
            async with limiter.permit(deadline=START + 5.0):
                pass
        assert clock.now == START, "DeadlineExceeded must come at once"

        on_time = Caller(limiter, clock, deadline=START + 10.0)
        await asyncio.sleep(10.0)
        await settle()
        assert on_time.granted_at == START + 10.0
        await on_time.finish()

    run_virtual(scenario)


def test_deadline_before_token_raises_at_once() -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock, max_concurrency=4, min_concurrency=4, rate_per_s=1.0, burst=1)
        first = Caller(limiter, clock)
        await settle()
        with pytest.raises(DeadlineExceeded):
            async with limiter.permit(deadline=START + 0.5):
                pass
        assert clock.now == START
        await first.finish()

    run_virtual(scenario)


def test_deadline_passing_while_waiting() -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock, max_concurrency=1, min_concurrency=1)
        holder = Caller(limiter, clock)
        waiter = Caller(limiter, clock, deadline=START + 3.0)
        await asyncio.sleep(5.0)
        assert isinstance(waiter.error, DeadlineExceeded)
        assert waiter.task.done()
        assert limiter.snapshot().queued == 0

        await holder.finish()
        after = Caller(limiter, clock)
        await settle()
        assert after.granted
        await after.finish()

    run_virtual(scenario)


def test_cancelled_waiter_leaves_queue() -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock, max_concurrency=1, min_concurrency=1)
        holder = Caller(limiter, clock)
        waiter = Caller(limiter, clock)
        await settle()
        waiter.task.cancel()
        await settle()
        assert limiter.snapshot().queued == 0
        await holder.finish()
        assert limiter.snapshot().in_flight == 0

    run_virtual(scenario)


# Recording, snapshot and logs.


def test_permit_without_record_counts_timeout() -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock)
        async with limiter.permit():
            pass
        state = limiter.snapshot()
        assert state.timeouts_total == 1
        assert state.in_flight == 0

    run_virtual(scenario)


def test_record_twice_raises() -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock)
        async with limiter.permit() as permit:
            permit.record(Outcome.SUCCESS)
            with pytest.raises(RuntimeError, match="already recorded"):
                permit.record(Outcome.SUCCESS)

    run_virtual(scenario)


def test_snapshot_fields() -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock, max_concurrency=4, min_concurrency=4, rate_per_s=2.0, burst=4)
        assert limiter.snapshot() == LimiterState(
            cap=4, target_cap=4, in_flight=0, queued=0, tokens=4.0, rate_per_s=2.0, paused=False,
            pause_until=None, pause_remaining_s=0.0, probing=False, rate_limited_total=0,
            server_errors_total=0, timeouts_total=0, retries_total=0, pauses_total=0,
        )

        callers = [Caller(limiter, clock) for _ in range(4)]
        await settle()
        limiter.note_retry()
        await callers[0].finish(Outcome.UNAVAILABLE)
        await callers[1].finish(Outcome.TIMEOUT)
        await callers[2].finish(Outcome.RATE_LIMITED, retry_after="10")
        await asyncio.sleep(4.0)

        state = limiter.snapshot()
        assert state.paused
        assert state.pause_until == START + 10.0
        assert state.pause_remaining_s == pytest.approx(6.0)
        assert state.in_flight == 1
        assert state.queued == 0
        assert state.rate_limited_total == 1
        assert state.server_errors_total == 1
        assert state.timeouts_total == 1
        assert state.retries_total == 1
        assert state.pauses_total == 1
        await callers[3].finish()

    run_virtual(scenario)


def test_pause_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(clock: VirtualClock) -> None:
        limiter = make_limiter(clock, max_concurrency=8, min_concurrency=8)
        callers = [Caller(limiter, clock) for _ in range(8)]
        await settle()
        for caller in callers:
            await caller.finish(Outcome.RATE_LIMITED, retry_after="10")
        await pass_pause(limiter, clock)

    with caplog.at_level(logging.INFO, logger="worker.limit"):
        run_virtual(scenario)
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    infos = [record for record in caplog.records if record.levelno == logging.INFO]
    assert len(warnings) == 1, [record.getMessage() for record in warnings]
    assert "10.0 s" in warnings[0].getMessage()
    assert "Retry-After" in warnings[0].getMessage()
    assert len(infos) == 1, [record.getMessage() for record in infos]
    assert "resumed" in infos[0].getMessage()


def test_config_from_settings() -> None:
    settings = Settings(
        api_max_concurrency=12,
        api_min_concurrency=2,
        api_adaptive_concurrency=False,
        api_rate_limit_per_s=7.5,
        api_rate_burst=3,
        api_backoff_initial_s=0.5,
        api_backoff_max_s=20.0,
        api_retry_after_max_s=60.0,
    )
    assert LimiterConfig.from_settings(settings) == LimiterConfig(
        max_concurrency=12, min_concurrency=2, adaptive=False, rate_per_s=7.5, burst=3,
        backoff_initial_s=0.5, backoff_max_s=20.0, retry_after_max_s=60.0,
    )
    assert Limiter.from_settings(settings).config.max_concurrency == 12


def test_config_rejects_floor_above_ceiling() -> None:
    with pytest.raises(ValueError, match="below min_concurrency"):
        LimiterConfig(max_concurrency=2, min_concurrency=3)


# Simulation: a server with a token-bucket rate limit and a fixed latency.


class FakeServer:
    """Accepts `rate_per_s` calls per second with a burst and returns 429 beyond it, after `latency_s`."""

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
    throughput = successes / (duration_s - warm_up_s)
    rejected_share = rejected / (successes + rejected)
    # With seeds 1 to 5 these scenarios reach 92% to 96% of the server's rate
    # with 0.15% to 0.4% of calls rejected, so the bounds leave some margin.
    assert rejected_share < 0.01, f"429 share {rejected_share:.2%} should stay below 1%; limiter: {state}"
    assert throughput >= 0.85 * rate_per_s, (
        f"throughput {throughput:.1f}/s should reach 85% of the server's {rate_per_s}/s; limiter: {state}"
    )
