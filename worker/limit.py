"""Upstream limiter: every call to the CareCloud API passes through one `Limiter`.

PLACEHOLDER: a fixed cap on calls in flight only. The full limiter (token
bucket, shared 429 cooldown, AIMD, ramp-up) replaces the internals behind the
same interface.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass


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


class Permit:
    """One call's slot; the caller reports how the call ended."""

    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter
        self.outcome: Outcome | None = None

    def record(self, outcome: Outcome, *, latency_s: float = 0.0, retry_after: str | None = None) -> None:
        self.outcome = outcome


class Limiter:
    def __init__(self, config: LimiterConfig, *, clock=time.monotonic, sleep=asyncio.sleep, rng: random.Random | None = None) -> None:
        self.config = config
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._slots = asyncio.Semaphore(config.max_concurrency)

    @asynccontextmanager
    async def permit(self, *, deadline: float | None = None) -> AsyncIterator[Permit]:
        """Wait for a slot (and the end of any pause), then hold it for one call.

        `deadline` is on the limiter's clock; `DeadlineExceeded` is raised
        when the wait would pass it.
        """
        await self._slots.acquire()
        try:
            yield Permit(self)
        finally:
            self._slots.release()

    def backoff_s(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1-based) after a 5xx or timeout."""
        base = min(self.config.backoff_max_s, self.config.backoff_initial_s * 2 ** (attempt - 1))
        return base * self._rng.uniform(0.8, 1.2)

    def snapshot(self) -> dict[str, float | int | None]:
        return {"cap": self.config.max_concurrency}
