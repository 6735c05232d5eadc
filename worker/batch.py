"""Micro-batching: merge the card numbers of many requests into few API calls.

Requests hand their card numbers to the `Batcher` and get one future per
number. Numbers are deduplicated across every request in flight: a number
already waiting in an open batch, or already on its way in a running call,
shares that future instead of being asked for again.

A batch is per query shape (`search_secondary_card_number` on or off, since
the two never share a call). It is closed when it reaches `max_cards` or the
URL length limit, and becomes due after `linger_s`. Closed and due batches are
started only while the limiter could start a call now (`capacity`), so when
the API or its rate budget is the bottleneck a due batch keeps filling
instead of queueing as a small call.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from schemas.carecloud import ApiCard
from schemas.replies import ErrorKind
from worker.cache import MISSING, CardCache, index_cards
from worker.errors import LookupFailed
from worker.masking import mask_card_numbers

logger = logging.getLogger(__name__)

# While batches wait for the limiter, check again this often: tokens refill
# and pauses end without an event the batcher could wait on.
MIN_RECHECK_S = 0.005


class CardSource(Protocol):
    async def get_cards(self, card_numbers: Sequence[str], *, secondary: bool, deadline: float | None) -> list[ApiCard]: ...


@dataclass(frozen=True)
class CardOutcome:
    """Outcome of one card number: its card, `card` None when not found, or an error."""

    card: ApiCard | None = None
    error: LookupFailed | None = None


@dataclass(eq=False)
class _Batch:
    secondary: bool
    opened_at: float
    url_bytes: int
    deadline: float = 0.0
    futures: dict[str, asyncio.Future[CardOutcome]] = field(default_factory=dict)
    due: bool = False
    closed: bool = False


class Batcher:
    def __init__(
        self,
        source: CardSource,
        *,
        max_cards: int,
        max_url_bytes: int,
        linger_s: float,
        base_url_bytes: int,
        card_number_bytes: Callable[[str], int],
        capacity: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
        on_batch: Callable[[int], None] | None = None,
        cache: CardCache | None = None,
    ) -> None:
        self._source = source
        self._cache = cache
        self._max_cards = max_cards
        self._max_url_bytes = max_url_bytes
        self._linger_s = linger_s
        self._base_url_bytes = base_url_bytes
        self._card_number_bytes = card_number_bytes
        self._capacity = capacity
        self._clock = clock
        self._on_batch = on_batch

        self._open: dict[bool, _Batch] = {}
        self._closed: deque[_Batch] = deque()
        self._pending: dict[tuple[bool, str], asyncio.Future[CardOutcome]] = {}
        self._running: set[asyncio.Task[None]] = set()
        # Tasks created but not yet queued at the limiter, so not yet counted by `capacity`.
        self._starting = 0
        self._recheck: asyncio.TimerHandle | None = None
        self._recheck_s = max(linger_s, MIN_RECHECK_S)

    @property
    def running_calls(self) -> int:
        return len(self._running)

    @property
    def pending_card_numbers(self) -> int:
        return len(self._pending)

    def lookup(
        self, card_numbers: Iterable[str], *, secondary: bool, deadline: float
    ) -> dict[str, asyncio.Future[CardOutcome]]:
        """Queue `card_numbers` for lookup and return a future per number."""
        loop = asyncio.get_running_loop()
        futures: dict[str, asyncio.Future[CardOutcome]] = {}
        for number in card_numbers:
            if self._cache is not None:
                cached = self._cache.get(secondary, number)
                if cached is not MISSING:
                    future = loop.create_future()
                    future.set_result(CardOutcome(card=cached))  # type: ignore[arg-type]
                    futures[number] = future
                    continue
            key = (secondary, number)
            future = self._pending.get(key)
            if future is None:
                future = loop.create_future()
                self._add(number, future, secondary, deadline)
                self._pending[key] = future
            else:
                self._extend_deadline(secondary, number, deadline)
            futures[number] = future
        self._dispatch()
        return futures

    async def close(self, timeout_s: float = 1.0) -> None:
        """Fail every queued batch, cancel the running calls, and wait at most `timeout_s` for them.

        Called after the requests were drained, when no request waits for
        these results any more, so no new call is spent on them.
        """
        stopping = LookupFailed(ErrorKind.UNAVAILABLE, "the worker stopped before this card was looked up", 0)
        for batch in [*self._open.values(), *self._closed]:
            self._resolve(batch, lambda _number: CardOutcome(error=stopping))
        self._open.clear()
        self._closed.clear()
        if self._recheck is not None:
            self._recheck.cancel()
            self._recheck = None
        running = set(self._running)
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=timeout_s)

    # --- Building batches --------------------------------------------------

    def _add(self, number: str, future: asyncio.Future[CardOutcome], secondary: bool, deadline: float) -> None:
        number_bytes = self._card_number_bytes(number)
        batch = self._open.get(secondary)
        if batch is not None and batch.url_bytes + number_bytes > self._max_url_bytes:
            self._close(batch)
            batch = None
        if batch is None:
            batch = self._open_batch(secondary)

        batch.futures[number] = future
        batch.url_bytes += number_bytes
        batch.deadline = max(batch.deadline, deadline)
        if len(batch.futures) >= self._max_cards:
            self._close(batch)

    def _open_batch(self, secondary: bool) -> _Batch:
        batch = _Batch(secondary=secondary, opened_at=self._clock(), url_bytes=self._base_url_bytes)
        self._open[secondary] = batch
        asyncio.get_running_loop().call_later(self._linger_s, self._linger_expired, batch)
        return batch

    def _close(self, batch: _Batch) -> None:
        if batch.closed:
            return
        batch.closed = True
        if self._open.get(batch.secondary) is batch:
            del self._open[batch.secondary]
        self._closed.append(batch)

    def _linger_expired(self, batch: _Batch) -> None:
        batch.due = True
        self._dispatch()

    def _extend_deadline(self, secondary: bool, number: str, deadline: float) -> None:
        batch = self._open.get(secondary)
        if batch is not None and number in batch.futures:
            batch.deadline = max(batch.deadline, deadline)

    # --- Running calls -----------------------------------------------------

    def _dispatch(self, *, ignore_capacity: bool = False) -> None:
        allowed = math.inf if ignore_capacity else self._capacity() - self._starting
        if not self._running:
            # One call always goes, so a batch waits inside the limiter (for a
            # pause to end or a token) rather than nowhere.
            allowed = max(allowed, 1)
        while allowed > 0:
            batch = self._next_batch()
            if batch is None:
                return
            self._start(batch)
            allowed -= 1
        if self._closed or any(batch.due for batch in self._open.values()):
            self._schedule_recheck()

    def _start(self, batch: _Batch) -> None:
        self._starting += 1
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._call_done)

    def _schedule_recheck(self) -> None:
        if self._recheck is None:
            self._recheck = asyncio.get_running_loop().call_later(self._recheck_s, self._run_recheck)

    def _run_recheck(self) -> None:
        self._recheck = None
        self._dispatch()

    def _next_batch(self) -> _Batch | None:
        if self._closed:
            return self._closed.popleft()
        due = [batch for batch in self._open.values() if batch.due]
        if not due:
            return None
        batch = min(due, key=lambda item: item.opened_at)
        self._close(batch)
        return self._closed.popleft()

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._dispatch()

    async def _run(self, batch: _Batch) -> None:
        self._starting -= 1
        numbers = list(batch.futures)
        try:
            if self._clock() >= batch.deadline:
                raise LookupFailed(
                    ErrorKind.DEADLINE_EXCEEDED, "every request waiting for these cards passed its deadline", 0
                )
            if self._on_batch is not None:
                self._on_batch(len(numbers))
            cards = await self._source.get_cards(numbers, secondary=batch.secondary, deadline=batch.deadline)
        except LookupFailed as exc:
            lookup_failure = exc
            self._resolve(batch, lambda _number: CardOutcome(error=lookup_failure))
        except Exception as exc:  # noqa: BLE001 - a bug must not leave requests unanswered
            logger.exception("card lookup of %d numbers (%s) failed unexpectedly", len(numbers), mask_card_numbers(numbers))
            failure = LookupFailed(ErrorKind.UNAVAILABLE, f"internal error in the worker: {type(exc).__name__}", 1)
            self._resolve(batch, lambda _number: CardOutcome(error=failure))
        else:
            found = index_cards(cards, secondary=batch.secondary)
            self._resolve(batch, lambda number: CardOutcome(card=found.get(number)))

    def _resolve(self, batch: _Batch, outcome_for: Callable[[str], CardOutcome]) -> None:
        for number, future in batch.futures.items():
            if not future.done():
                future.set_result(outcome_for(number))
            key = (batch.secondary, number)
            if self._pending.get(key) is future:
                del self._pending[key]
