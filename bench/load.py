"""Load for the benchmarks: generated requests, a bulk or paced producer, and a reply log.

Request-to-reply latency is the reply record's timestamp (set by the worker's
producer when it publishes the reply) minus the wall-clock time at which the
benchmark handed the request to its producer. Both clocks are this machine's.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from simulator.data import generated_card_number
from tests.harness import bootstrap_servers

CARDS_PER_REQUEST = (1, 5)
# Popularity exponent of the Zipf-like card distribution: card of rank k is
# requested with weight 1 / k**ZIPF_EXPONENT.
ZIPF_EXPONENT = 1.0
PACED_TICK_S = 0.005
REPLY_POLL_MS = 200
REPLY_POLL_MAX_RECORDS = 10_000
PRODUCER_LINGER_MS = 5
PRODUCER_BATCH_BYTES = 256 * 1024


@dataclass(frozen=True)
class LookupRequest:
    request_id: str
    card_numbers: tuple[str, ...]

    def encode(self) -> bytes:
        return json.dumps({"request_id": self.request_id, "card_numbers": list(self.card_numbers)}).encode()


@dataclass(frozen=True)
class Workload:
    requests: tuple[LookupRequest, ...]

    @property
    def lookups(self) -> int:
        return sum(len(request.card_numbers) for request in self.requests)

    @property
    def distinct_cards(self) -> int:
        return len({number for request in self.requests for number in request.card_numbers})

    def cards_by_id(self) -> dict[str, int]:
        return {request.request_id: len(request.card_numbers) for request in self.requests}


def generate_workload(count: int, *, pool_size: int, seed: int, prefix: str, zipf: bool = True) -> Workload:
    """Build `count` requests of 1-5 distinct cards drawn from generated cards 0..pool_size-1.

    With `zipf`, card k has weight 1/(k+1)**ZIPF_EXPONENT, so a few popular
    cards make up many lookups. Without it every card is equally likely, so
    repeats are rare when the pool is large.
    """
    rng = random.Random(seed)
    cumulative = list(itertools.accumulate(1 / (rank + 1) ** ZIPF_EXPONENT for rank in range(pool_size))) if zipf else None
    ranks = range(pool_size)
    requests = []
    for index in range(count):
        wanted = min(pool_size, rng.randint(*CARDS_PER_REQUEST))
        chosen: list[int] = []
        # Draw until the request has `wanted` distinct cards; bounded because
        # each draw has a non-zero chance of a new card.
        for _ in range(wanted * 50):
            (rank,) = rng.choices(ranks, cum_weights=cumulative) if cumulative else (rng.randrange(pool_size),)
            if rank not in chosen:
                chosen.append(rank)
            if len(chosen) == wanted:
                break
        requests.append(LookupRequest(f"{prefix}-{index}", tuple(generated_card_number(rank) for rank in chosen)))
    return Workload(tuple(requests))


class RequestProducer:
    """Sends requests keyed by request id and records each one's send time (epoch ms)."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.sent_at_ms: dict[str, float] = {}
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers(),
            linger_ms=PRODUCER_LINGER_MS,
            max_batch_size=PRODUCER_BATCH_BYTES,
        )

    async def __aenter__(self) -> RequestProducer:
        await self._producer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._producer.stop()

    async def send(self, request: LookupRequest) -> None:
        self.sent_at_ms[request.request_id] = time.time() * 1000
        await self._producer.send(self.topic, request.encode(), key=request.request_id.encode())

    async def send_all(self, requests: Sequence[LookupRequest]) -> None:
        """Send as fast as the producer takes them, then wait until the broker has them all."""
        for request in requests:
            await self.send(request)
        await self._producer.flush()

    async def send_paced(self, requests: Sequence[LookupRequest], rate_per_s: float) -> float:
        """Send at `rate_per_s` requests per second; return the rate achieved."""
        started = time.monotonic()
        sent = 0
        # One tick per PACED_TICK_S, plus slack for a slow event loop.
        max_ticks = math.ceil(len(requests) / rate_per_s / PACED_TICK_S) * 4 + 100
        for _ in range(max_ticks):
            due = min(len(requests), int((time.monotonic() - started) * rate_per_s) + 1)
            while sent < due:
                await self.send(requests[sent])
                sent += 1
            if sent == len(requests):
                break
            await asyncio.sleep(PACED_TICK_S)
        await self._producer.flush()
        elapsed = time.monotonic() - started
        return sent / elapsed if elapsed > 0 else 0.0


@dataclass
class Reply:
    timestamp_ms: int
    status: str


@dataclass
class ReplyLog:
    """Reads a reply topic in the background and keeps each request id's first reply."""

    topic: str
    replies: dict[str, Reply] = field(default_factory=dict)
    duplicates: int = 0

    async def __aenter__(self) -> ReplyLog:
        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=bootstrap_servers(),
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await self._consumer.start()
        self._task = asyncio.get_running_loop().create_task(self._read())
        return self

    async def __aexit__(self, *_: object) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        await self._consumer.stop()

    async def _read(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=REPLY_POLL_MS, max_records=REPLY_POLL_MAX_RECORDS)
            for records in batches.values():
                for record in records:
                    request_id = (record.key or b"").decode()
                    if request_id in self.replies:
                        self.duplicates += 1
                        continue
                    self.replies[request_id] = Reply(record.timestamp, _top_level_status(record.value or b""))

    async def wait_for(self, count: int, *, timeout_s: float) -> bool:
        """Wait until `count` distinct requests have replies; False on timeout."""
        give_up_at = time.monotonic() + timeout_s
        while len(self.replies) < count:
            if time.monotonic() >= give_up_at:
                return False
            await asyncio.sleep(0.05)
        return True

    def statuses(self, request_ids: Sequence[str] | None = None) -> dict[str, int]:
        chosen = self.replies.values() if request_ids is None else (self.replies[i] for i in request_ids if i in self.replies)
        counts: dict[str, int] = {}
        for reply in chosen:
            counts[reply.status] = counts.get(reply.status, 0) + 1
        return counts


def _top_level_status(value: bytes) -> str:
    # A reply starts {"request_id":...,"status":"..."}: the first "status" key
    # is the reply's own, so the whole document need not be parsed.
    marker = b'"status":"'
    start = value.find(marker)
    if start < 0:
        return "unknown"
    start += len(marker)
    return value[start : value.find(b'"', start)].decode(errors="replace")


def latencies_ms(replies: dict[str, Reply], sent_at_ms: dict[str, float]) -> list[float]:
    """Return the sorted request-to-reply latencies of the replied requests this producer sent."""
    return sorted(replies[request_id].timestamp_ms - sent for request_id, sent in sent_at_ms.items() if request_id in replies)


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence; NaN when it is empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class Throughput:
    requests_per_s: float
    cards_per_s: float
    window_s: float


def steady_throughput(replies: dict[str, Reply], cards_by_id: dict[str, int], *, low: float = 0.1, high: float = 0.9) -> Throughput:
    """Replies and cards per second between the `low` and `high` quantiles of reply times.

    Leaving out the first and last tenth drops the start (group join, login,
    adaptive ramp-up) and the tail of a backlog, so the figure is the steady rate.
    """
    answered = sorted((reply.timestamp_ms, cards_by_id.get(request_id, 0)) for request_id, reply in replies.items() if request_id in cards_by_id)
    if len(answered) < 10:
        return Throughput(math.nan, math.nan, 0.0)
    first = int(low * (len(answered) - 1))
    last = int(high * (len(answered) - 1))
    window_s = (answered[last][0] - answered[first][0]) / 1000
    if window_s <= 0:
        return Throughput(math.nan, math.nan, 0.0)
    cards = sum(count for _, count in answered[first + 1 : last + 1])
    return Throughput((last - first) / window_s, cards / window_s, window_s)
