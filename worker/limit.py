"""Upstream limiter: every call to the CareCloud API passes through one shared `Limiter`.

`Limiter.permit()` queues callers in FIFO order and lets the head of the queue
start its call when all of these hold:

1. No shared pause is active. A 429 pauses every caller, not only the one that
   got it, for the `Retry-After` the API sent or else for an exponential
   backoff. A 503 with a usable `Retry-After` pauses every caller the same way.
   Calls already in flight go on, and their 429s can extend the pause but never
   shorten it. A `Retry-After` date in the past means a pause of zero.
2. After a pause, one probe call goes alone and must succeed before others
   follow. A probe that gets 429 starts the next, longer pause.
3. The calls in flight are below the current cap. After a probe succeeds, the
   cap restarts at `min_concurrency` and grows by one per successful call (it
   doubles per round trip) until it is back at the cap it ramps to.
4. A token is available, when a rate applies: `rate_per_s` if configured, else
   (with `adaptive`) a rate learned from 429s.

With `adaptive`, the cap follows AIMD: it halves (never below
`min_concurrency`) on a 429, on a run of `SERVER_ERROR_RUN` 5xx responses or
timeouts, and on a successful call at least twice the baseline latency and
`LATENCY_SPIKE_MIN_S` above it. The baseline is the minimum latency over the
last one to two `BASELINE_WINDOW_S`. At most one decrease happens per round
trip, because only calls started after the last decrease can cause the next one. It grows by one after a cap's worth of
successful calls that started while at least half the cap was in use, so an
idle worker does not grow a cap it never tests.

The learned rate covers APIs whose latency is short enough that a cap of one
call already exceeds the budget. On a 429 it becomes `RATE_SAFETY_FACTOR`
times the rate of successful calls over the last `RATE_WINDOW_S` (or half the
previous rate when less than `RATE_MIN_MEASURE_S` of traffic was measured).
It then grows linearly, but only while the rate is what limits the calls, and
its step doubles every `RATE_STEP_DOUBLING_S` without a 429. A learned rate
paces calls evenly (a bucket of one token), since the server's burst is
unknown. The client sleeps `backoff_s(attempt)` before its own retry after a
5xx response or timeout. Such failures pause no other caller unless a 503
carries a `Retry-After`.

Seams for later features:

- Traffic classes sharing one budget: `_dispatch` is the only place that picks
  the next caller, so per-class queues with weights would replace `_queue` there.
- A budget shared across replicas: pauses start in `_pause_for` and tokens are
  taken in `_take_token`. A shared store (for example Redis) would publish
  pauses and hand out tokens behind those two methods.
"""

from __future__ import annotations

import asyncio
import email.utils
import enum
import logging
import math
import random
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.settings import Settings

logger = logging.getLogger(__name__)

# Backoff delays are spread uniformly over ±20% of the nominal delay, so
# replicas that failed together do not retry together.
BACKOFF_JITTER = 0.2
# AIMD multiplicative decrease of the in-flight cap.
DECREASE_FACTOR = 0.5
# Consecutive 5xx responses or timeouts that halve the cap once.
SERVER_ERROR_RUN = 3
# A successful call is slow when its latency is at least this many times the
# baseline and at least LATENCY_SPIKE_MIN_S above it, so jitter on
# millisecond latencies does not count.
LATENCY_SPIKE_FACTOR = 2.0
LATENCY_SPIKE_MIN_S = 0.05
# The baseline latency is the minimum over the current and the previous window.
BASELINE_WINDOW_S = 30.0
# Learned rate: share of the measured rate kept after a 429, the span measured,
# and the shortest span trusted.
RATE_SAFETY_FACTOR = 0.9
RATE_WINDOW_S = 10.0
RATE_MIN_MEASURE_S = 2.0
# Growth per second after a decrease, as a share of the rate then set. It is
# lower for slow rates so that at least RATE_MIN_CALLS_PER_CYCLE calls pass
# before the rate is back where it got a 429, and it doubles every
# RATE_STEP_DOUBLING_S without a 429 so that a rate set too low recovers.
RATE_INCREASE_PER_S = 0.01
RATE_MIN_CALLS_PER_CYCLE = 200
RATE_STEP_DOUBLING_S = 20.0
_MAX_RATE_STEP_DOUBLINGS = 10
# Lowest learned rate, in calls per second.
RATE_FLOOR_PER_S = 0.1
# Slack for float rounding when a token is due at exactly the wake-up time.
_TOKEN_EPSILON = 1e-9
# Backoff exponents above this reach backoff_max_s anyway, and the limit avoids a float overflow.
_MAX_BACKOFF_EXPONENT = 64

# RFC 9110 delta-seconds is 1*DIGIT. Decimal fractions are accepted as well,
# as a lenient reading of a malformed header.
_DELTA_SECONDS = re.compile(r"\d+(?:\.\d+)?")


class Outcome(enum.Enum):
    SUCCESS = "success"
    RATE_LIMITED = "rate_limited"  # 429
    UNAVAILABLE = "unavailable"  # 500, 502, 503, 504
    TIMEOUT = "timeout"  # connect or read timeout, connection error
    REJECTED = "rejected"  # 400, 401, 403, 404: says nothing about load


class DeadlineExceeded(Exception):
    """Raised by `Limiter.permit` when no call can start before the caller's deadline."""


@dataclass(frozen=True)
class LimiterConfig:
    max_concurrency: int = 8
    min_concurrency: int = 1
    adaptive: bool = True
    rate_per_s: float | None = None
    burst: int = 5
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 120.0

    def __post_init__(self) -> None:
        if self.min_concurrency < 1:
            raise ValueError(f"min_concurrency must be at least 1, got {self.min_concurrency}")
        if self.max_concurrency < self.min_concurrency:
            raise ValueError(
                f"max_concurrency ({self.max_concurrency}) is below min_concurrency "
                f"({self.min_concurrency}). Raise the ceiling or lower the floor"
            )
        if self.rate_per_s is not None and not self.rate_per_s > 0:
            raise ValueError(f"rate_per_s must be positive or None, got {self.rate_per_s}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, got {self.burst}")
        for name in ("backoff_initial_s", "backoff_max_s", "retry_after_max_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @classmethod
    def from_settings(cls, settings: Settings) -> LimiterConfig:
        """Build the config from the worker's `api_*` limiter settings."""
        return cls(
            max_concurrency=settings.api_max_concurrency,
            min_concurrency=settings.api_min_concurrency,
            adaptive=settings.api_adaptive_concurrency,
            rate_per_s=settings.api_rate_limit_per_s,
            burst=settings.api_rate_burst,
            backoff_initial_s=settings.api_backoff_initial_s,
            backoff_max_s=settings.api_backoff_max_s,
            retry_after_max_s=settings.api_retry_after_max_s,
        )


@dataclass(frozen=True)
class LimiterState:
    """Point-in-time view of a `Limiter` for metrics and health checks."""

    cap: int  # calls that may be in flight now: 1 while probing, lower while ramping
    target_cap: int  # the AIMD cap that ramping grows back to
    in_flight: int
    queued: int  # callers waiting for a permit
    tokens: float | None  # None when no rate applies
    rate_per_s: float | None  # configured rate, else the learned rate, else None
    paused: bool
    pause_until: float | None  # on the limiter's clock
    pause_remaining_s: float
    probing: bool
    rate_limited_total: int
    server_errors_total: int
    timeouts_total: int
    retries_total: int
    pauses_total: int


def parse_retry_after(value: str | None, now_epoch: float, *, max_s: float | None = None) -> float | None:
    """Parse a `Retry-After` header into seconds to wait, or None when it is missing or invalid.

    Accepts delta-seconds and HTTP-dates (IMF-fixdate, and the obsolete RFC 850
    and asctime forms, RFC 9110 section 10.2.3). A date in the past yields 0.
    A date without a zone is read as UTC. `max_s` caps the result.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None

    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(text)
    else:
        seconds = _seconds_until_http_date(text, now_epoch)
        if seconds is None:
            return None

    if max_s is not None:
        seconds = min(seconds, max_s)
    return seconds


def _seconds_until_http_date(text: str, now_epoch: float) -> float | None:
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, moment.timestamp() - now_epoch)


class Permit:
    """One call's slot. The caller reports how the call ended with `record`, once."""

    def __init__(self, limiter: Limiter, *, granted_at: float, generation: int, epoch: int,
                 probe: bool, saturated: bool, rate_bound: bool) -> None:
        self._limiter = limiter
        self.outcome: Outcome | None = None
        self.granted_at = granted_at
        # Pause generation and decrease epoch at the grant: they tell whether
        # this call started after the last pause or the last cap decrease.
        self.generation = generation
        self.epoch = epoch
        self.probe = probe
        # A success grows the cap only if the call started with at least half
        # the cap in use, and grows a learned rate only if the call's token
        # left the bucket empty. So an idle worker grows neither.
        self.saturated = saturated
        self.rate_bound = rate_bound

    def record(self, outcome: Outcome, *, latency_s: float = 0.0, retry_after: str | None = None) -> None:
        """Report how the call ended.

        `latency_s` of a successful call feeds the latency baseline, and
        `retry_after` is the raw `Retry-After` header of a 429 or 503.
        """
        if self.outcome is not None:
            raise RuntimeError(
                f"the permit's outcome is already recorded as {self.outcome.name}. Record each call once"
            )
        self.outcome = outcome
        self._limiter._on_record(self, outcome, latency_s, retry_after)


class Limiter:
    """Shared gate for every API call: pause, probe, in-flight cap and token bucket."""

    def __init__(
        self,
        config: LimiterConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: random.Random | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._wall_clock = wall_clock
        now = clock()

        # Admission.
        self._queue: deque[asyncio.Future[Permit]] = deque()
        self._in_flight = 0
        self._cap = config.max_concurrency
        # An adaptive limiter starts from the floor, like after a pause.
        self._ramp_cap: int | None = None
        if config.adaptive and config.min_concurrency < config.max_concurrency:
            self._ramp_cap = config.min_concurrency
        self._increase_credits = 0
        self._decrease_epoch = 0
        self._wakeup_task: asyncio.Task[None] | None = None
        self._wakeup_at = math.inf

        # Token bucket.
        self._learned_rate: float | None = None
        self._rate_step_per_s = 0.0
        self._rate_lowered_at = now
        self._tokens = float(config.burst)
        self._tokens_at = now

        # Shared pause and probe.
        self._pause_until: float | None = None
        self._pause_started_at = now
        self._pause_generation = 0
        self._pause_step = 0  # pauses since the last successful call, for the backoff
        self._probing = False
        self._probe_in_flight = False

        # Load signals.
        self._server_error_run = 0
        self._latency_min_current = math.inf
        self._latency_min_previous = math.inf
        self._latency_window_start = now
        self._success_times: deque[float] = deque()
        self._measure_since: float | None = None

        # Counters.
        self._rate_limited_total = 0
        self._server_errors_total = 0
        self._timeouts_total = 0
        self._retries_total = 0
        self._pauses_total = 0

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: object) -> Limiter:
        """Build a limiter from the worker's settings, passing `kwargs` to the constructor."""
        return cls(LimiterConfig.from_settings(settings), **kwargs)  # type: ignore[arg-type]

    # Public interface.

    @asynccontextmanager
    async def permit(self, *, deadline: float | None = None) -> AsyncIterator[Permit]:
        """Wait for the end of any pause, the probe, a slot and a token, then hold the slot for one call.

        `deadline` is on the limiter's clock. `DeadlineExceeded` is raised at
        once when the pause or the token wait ends after it, and otherwise
        when it passes while the caller waits. A permit left without `record`
        is recorded as TIMEOUT, since the call's fate is unknown (this includes
        a block left by cancellation).
        """
        permit = await self._acquire(deadline)
        try:
            yield permit
        finally:
            self._release(permit)

    def backoff_s(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1-based) after a 5xx or timeout.

        The nominal delay is `backoff_initial_s * 2**(attempt - 1)`, capped at
        `backoff_max_s`. The result is drawn uniformly from ±20% of it and never
        exceeds `backoff_max_s`.
        """
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        exponent = min(attempt - 1, _MAX_BACKOFF_EXPONENT)
        nominal = min(self.config.backoff_max_s, self.config.backoff_initial_s * 2.0**exponent)
        low = nominal * (1 - BACKOFF_JITTER)
        high = min(nominal * (1 + BACKOFF_JITTER), self.config.backoff_max_s)
        return self._rng.uniform(low, high)

    def note_retry(self) -> None:
        """Count one retry by the client, for `snapshot().retries_total`."""
        self._retries_total += 1

    def snapshot(self) -> LimiterState:
        """Return the current cap, pause and bucket state and the counters, without changing them."""
        now = self._clock()
        paused = self._pause_until is not None and now < self._pause_until
        pause_over = self._pause_until is not None and not paused
        probing = self._probing or pause_over
        rate = self._bucket_rate()
        tokens = None if rate is None else self._tokens_at_time(now, rate)
        return LimiterState(
            cap=1 if probing else self._window_cap(),
            target_cap=self._cap,
            in_flight=self._in_flight,
            queued=sum(1 for future in self._queue if not future.done()),
            tokens=tokens,
            rate_per_s=rate,
            paused=paused,
            pause_until=self._pause_until if paused else None,
            pause_remaining_s=self._pause_until - now if paused else 0.0,
            probing=probing,
            rate_limited_total=self._rate_limited_total,
            server_errors_total=self._server_errors_total,
            timeouts_total=self._timeouts_total,
            retries_total=self._retries_total,
            pauses_total=self._pauses_total,
        )

    # Waiting for a permit.

    async def _acquire(self, deadline: float | None) -> Permit:
        now = self._clock()
        if deadline is not None:
            earliest = self._earliest_start(now)
            if earliest > deadline:
                raise DeadlineExceeded(
                    f"no API call can start before the deadline: the pause or rate limit lets the next "
                    f"call start in {earliest - now:.3f} s, the deadline is in {deadline - now:.3f} s"
                )

        future: asyncio.Future[Permit] = asyncio.get_running_loop().create_future()
        self._queue.append(future)
        self._dispatch()
        if not future.done():
            await self._wait_for_grant(future, deadline)
        return future.result()

    async def _wait_for_grant(self, future: asyncio.Future[Permit], deadline: float | None) -> None:
        waited: set[asyncio.Future[object]] = {future}
        timer = None
        if deadline is not None:
            timer = asyncio.ensure_future(self._sleep(max(0.0, deadline - self._clock())))
            waited.add(timer)
        try:
            await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            self._abandon(future)
            raise
        finally:
            if timer is not None:
                timer.cancel()

        if not future.done():
            self._abandon(future)
            raise DeadlineExceeded("the deadline passed while waiting for the pause, probe, a slot or a token")

    def _abandon(self, future: asyncio.Future[Permit]) -> None:
        """Withdraw a waiter that stops waiting, and return its permit if one was granted meanwhile."""
        if future.done() and not future.cancelled():
            permit = future.result()
            self._in_flight -= 1
            if permit.probe and self._probing:
                self._probe_in_flight = False
        else:
            future.cancel()
            try:
                self._queue.remove(future)
            except ValueError:
                pass
        self._dispatch()

    def _earliest_start(self, now: float) -> float:
        """Earliest time a new caller could start, from the pause and the token bucket only."""
        start = now
        if self._pause_until is not None and self._pause_until > start:
            start = self._pause_until
        rate = self._bucket_rate()
        if rate is None:
            return start
        needed = len(self._queue) + 1 - self._tokens_at_time(start, rate)
        if needed > _TOKEN_EPSILON:
            start += needed / rate
        return start

    def _dispatch(self) -> None:
        """Grant permits to the head of the queue while the pause, probe, cap and bucket allow."""
        now = self._clock()
        self._end_pause_if_over(now)
        while self._queue:
            future = self._queue[0]
            if future.done():
                self._queue.popleft()
                continue
            if self._pause_until is not None:
                self._wake_at(self._pause_until)
                return
            if self._probing:
                if self._probe_in_flight:
                    return
            elif self._in_flight >= self._window_cap():
                return
            token_at = self._token_ready_at(now)
            if token_at > now:
                self._wake_at(token_at)
                return
            self._queue.popleft()
            future.set_result(self._grant(now))

    def _grant(self, now: float) -> Permit:
        rate_bound = self._take_token(now)
        self._in_flight += 1
        probe = self._probing
        if probe:
            self._probe_in_flight = True
        if self._measure_since is None:
            self._measure_since = now
        return Permit(
            self,
            granted_at=now,
            generation=self._pause_generation,
            epoch=self._decrease_epoch,
            probe=probe,
            saturated=2 * self._in_flight >= self._window_cap(),
            rate_bound=rate_bound,
        )

    def _wake_at(self, at: float) -> None:
        """Run `_dispatch` again at `at`, unless a wake-up at or before it is already set."""
        if self._wakeup_task is not None and self._wakeup_at <= at:
            return
        if self._wakeup_task is not None:
            self._wakeup_task.cancel()
        self._wakeup_at = at
        self._wakeup_task = asyncio.get_running_loop().create_task(self._wake_later(at))

    async def _wake_later(self, at: float) -> None:
        await self._sleep(max(0.0, at - self._clock()))
        self._wakeup_task = None
        self._wakeup_at = math.inf
        self._dispatch()

    def _release(self, permit: Permit) -> None:
        if permit.outcome is None:
            logger.debug("An API permit was released without an outcome, so the call counts as a timeout")
            permit.record(Outcome.TIMEOUT)
        self._in_flight -= 1
        self._dispatch()

    def _window_cap(self) -> int:
        """Return the cap outside probing: the ramp's value while ramping, else the AIMD cap."""
        if self._ramp_cap is not None:
            return min(self._ramp_cap, self._cap)
        return self._cap

    # Token bucket.

    def _bucket_rate(self) -> float | None:
        if self.config.rate_per_s is not None:
            return self.config.rate_per_s
        return self._learned_rate

    def _bucket_capacity(self) -> float:
        """Return the bucket's capacity: the configured burst for a configured rate.

        A learned rate paces calls evenly with a capacity of one token, since
        the server's burst is unknown.
        """
        if self.config.rate_per_s is not None:
            return float(self.config.burst)
        return 1.0

    def _tokens_at_time(self, at: float, rate: float) -> float:
        tokens = min(self._bucket_capacity(), self._tokens + max(0.0, at - self._tokens_at) * rate)
        if self._pause_until is not None and at >= self._pause_until:
            tokens = min(tokens, 1.0)
        return tokens

    def _refill(self, now: float) -> None:
        rate = self._bucket_rate()
        if rate is not None:
            self._tokens = min(self._bucket_capacity(), self._tokens + max(0.0, now - self._tokens_at) * rate)
        self._tokens_at = now

    def _token_ready_at(self, now: float) -> float:
        rate = self._bucket_rate()
        if rate is None:
            return now
        self._refill(now)
        if self._tokens >= 1.0 - _TOKEN_EPSILON:
            return now
        return now + (1.0 - self._tokens) / rate

    def _take_token(self, now: float) -> bool:
        """Take one token if a rate applies, and return whether the bucket is now empty."""
        if self._bucket_rate() is None:
            return False
        self._refill(now)
        self._tokens = max(0.0, self._tokens - 1.0)
        return self._tokens < 1.0

    # Outcomes.

    def _on_record(self, permit: Permit, outcome: Outcome, latency_s: float, retry_after: str | None) -> None:
        now = self._clock()
        if outcome is Outcome.SUCCESS:
            self._on_success(permit, latency_s, now)
        elif outcome is Outcome.RATE_LIMITED:
            self._rate_limited_total += 1
            self._on_rate_limited(permit, retry_after, now)
        elif outcome is Outcome.UNAVAILABLE:
            self._server_errors_total += 1
            self._on_server_error(permit, retry_after, now)
        elif outcome is Outcome.TIMEOUT:
            self._timeouts_total += 1
            self._on_server_error(permit, None, now)
        elif permit.probe and self._probing:
            # A rejected call gives no load signal, so the next caller probes.
            self._probe_in_flight = False
        self._dispatch()

    def _on_success(self, permit: Permit, latency_s: float, now: float) -> None:
        self._success_times.append(now)
        while self._success_times and self._success_times[0] < now - RATE_WINDOW_S:
            self._success_times.popleft()
        self._server_error_run = 0
        if permit.generation == self._pause_generation:
            self._pause_step = 0

        if permit.probe and self._probing:
            self._resume(now)
            return

        slow = self._is_latency_spike(latency_s, now)
        if not self.config.adaptive:
            if permit.saturated:
                self._grow_ramp_only()
            return
        if slow:
            if permit.epoch == self._decrease_epoch:
                self._decrease_cap()
            return
        if permit.saturated:
            self._grow_cap()
        if permit.rate_bound:
            self._grow_rate(now)

    def _on_rate_limited(self, permit: Permit, retry_after: str | None, now: float) -> None:
        delay = parse_retry_after(retry_after, self._wall_clock(), max_s=self.config.retry_after_max_s)
        if permit.generation != self._pause_generation:
            # The call started before the current pause, so its 429 may extend
            # that pause but is ignored once the pause is over.
            if self._pause_until is not None:
                seconds = delay if delay is not None else self.backoff_s(max(1, self._pause_step))
                self._pause_for(now, seconds, "429 on a call started before the pause")
            return

        if self.config.adaptive and permit.epoch == self._decrease_epoch:
            self._decrease_cap()
        if self.config.adaptive and self.config.rate_per_s is None:
            self._lower_rate(now)

        self._pause_step += 1
        if delay is not None:
            cause = f"429 with Retry-After {(retry_after or '').strip()!r}"
            seconds = delay
        else:
            cause = f"429 without a usable Retry-After (backoff step {self._pause_step})"
            seconds = self.backoff_s(self._pause_step)
        if permit.probe:
            cause = f"the probe call got {cause}"
        self._pause_for(now, seconds, cause)

    def _on_server_error(self, permit: Permit, retry_after: str | None, now: float) -> None:
        if permit.probe and self._probing:
            self._probe_in_flight = False
        delay = parse_retry_after(retry_after, self._wall_clock(), max_s=self.config.retry_after_max_s)
        if delay is not None:
            self._pause_for(now, delay, f"a 5xx response with Retry-After {retry_after.strip()!r}")

        self._server_error_run += 1
        if self.config.adaptive and self._server_error_run >= SERVER_ERROR_RUN and permit.epoch == self._decrease_epoch:
            self._decrease_cap()
            self._server_error_run = 0

    # Pause, probe and resume.

    def _pause_for(self, now: float, seconds: float, cause: str) -> None:
        """Hold every caller for `seconds` from now. An active pause is only extended, never shortened."""
        until = now + seconds
        if self._pause_until is not None and now < self._pause_until:
            if until > self._pause_until:
                logger.debug("API pause extended by %.1f s after %s", until - self._pause_until, cause)
                self._pause_until = until
            return

        self._pause_generation += 1
        self._pauses_total += 1
        self._pause_started_at = now
        self._pause_until = until
        self._probing = False
        self._probe_in_flight = False
        self._ramp_cap = None
        logger.warning("Pausing all API calls for %.1f s after %s", seconds, cause)

    def _end_pause_if_over(self, now: float) -> None:
        if self._pause_until is None or now < self._pause_until:
            return
        # The bucket resumes with at most one token, so no burst follows the pause.
        self._refill(now)
        self._tokens = min(self._tokens, 1.0)
        self._pause_until = None
        self._probing = True
        self._probe_in_flight = False
        logger.debug("API pause over after %.1f s. One probe call goes first", now - self._pause_started_at)

    def _resume(self, now: float) -> None:
        # NOTE: the ramp restarts from the floor after every pause, which costs
        # several round trips when latency is long. In the virtual-clock
        # simulation a server with 20 calls/s and 1 s latency got about 72% of
        # its rate, against 92% to 96% for latencies of 0.5 s and below.
        self._probing = False
        self._probe_in_flight = False
        self._ramp_cap = self.config.min_concurrency if self.config.min_concurrency < self._cap else None
        self._measure_since = now
        logger.info(
            "API calls resumed %.1f s after the pause began because the probe call succeeded. The cap ramps from %d to %d",
            now - self._pause_started_at,
            self._window_cap(),
            self._cap,
        )

    # AIMD on the cap and the learned rate.

    def _is_latency_spike(self, latency_s: float, now: float) -> bool:
        if latency_s <= 0.0:
            return False
        if now - self._latency_window_start >= BASELINE_WINDOW_S:
            self._latency_min_previous = self._latency_min_current
            self._latency_min_current = math.inf
            self._latency_window_start = now
        baseline = min(self._latency_min_current, self._latency_min_previous)
        self._latency_min_current = min(self._latency_min_current, latency_s)
        if math.isinf(baseline):
            return False
        return latency_s >= LATENCY_SPIKE_FACTOR * baseline and latency_s - baseline >= LATENCY_SPIKE_MIN_S

    def _decrease_cap(self) -> None:
        self._cap = max(self.config.min_concurrency, math.floor(self._window_cap() * DECREASE_FACTOR))
        self._ramp_cap = None
        self._increase_credits = 0
        self._decrease_epoch += 1

    def _grow_ramp_only(self) -> None:
        if self._ramp_cap is None:
            return
        self._ramp_cap += 1
        if self._ramp_cap >= self._cap:
            self._ramp_cap = None

    def _grow_cap(self) -> None:
        if self._ramp_cap is not None:
            self._grow_ramp_only()
            return
        self._increase_credits += 1
        if self._increase_credits >= self._cap:
            self._increase_credits = 0
            self._cap = min(self.config.max_concurrency, self._cap + 1)

    def _lower_rate(self, now: float) -> None:
        """Set the learned rate after a 429 from the rate of recent successful calls."""
        since = max(self._measure_since if self._measure_since is not None else now, now - RATE_WINDOW_S)
        measured_for = now - since
        successes = sum(1 for moment in self._success_times if moment >= since)
        if measured_for >= RATE_MIN_MEASURE_S:
            measured = successes / measured_for
            basis = measured if self._learned_rate is None else min(self._learned_rate, measured)
            rate = RATE_SAFETY_FACTOR * basis
        elif self._learned_rate is not None:
            rate = self._learned_rate * DECREASE_FACTOR
        elif successes > 0 and measured_for > 0.0:
            # NOTE: a short first measurement includes the server's burst, so it
            # overestimates the budget. Later 429s halve the rate from here.
            rate = RATE_SAFETY_FACTOR * successes / measured_for
        else:
            return

        rate = max(RATE_FLOOR_PER_S, rate)
        self._learned_rate = rate
        share_per_s = min(RATE_INCREASE_PER_S, (1 - RATE_SAFETY_FACTOR) * rate / RATE_MIN_CALLS_PER_CYCLE)
        self._rate_step_per_s = share_per_s * rate
        self._rate_lowered_at = now
        self._refill(now)
        self._tokens = min(self._tokens, 1.0)

    def _grow_rate(self, now: float) -> None:
        """Add `step / rate` per rate-bound success, which is about one step per second."""
        if self.config.rate_per_s is not None or self._learned_rate is None:
            return
        doublings = min(_MAX_RATE_STEP_DOUBLINGS, int((now - self._rate_lowered_at) // RATE_STEP_DOUBLING_S))
        self._learned_rate += self._rate_step_per_s * 2**doublings / self._learned_rate
