"""Steps several benchmarks share: reply to a backlog or a paced load, and read API counters."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bench.load import ReplyLog, RequestProducer, Throughput, Workload, latencies_ms, percentile, steady_throughput
from simulator.testing import SimulatorProcess

CARDS_ENDPOINT = "GET /cards"


@dataclass(frozen=True)
class ApiCounts:
    """GET /cards calls the simulator saw since its last reset."""

    calls: int
    rate_limited: int
    card_numbers: int

    @classmethod
    def read(cls, simulator: SimulatorProcess) -> ApiCounts:
        stats = simulator.stats()
        by_status = stats["requests_by_endpoint"].get(CARDS_ENDPOINT, {})
        return cls(calls=stats["cards_calls"], rate_limited=int(by_status.get("429", 0)), card_numbers=stats["card_numbers_requested"])

    @property
    def rate_limited_share(self) -> float:
        return self.rate_limited / self.calls if self.calls else 0.0


@dataclass
class Phase:
    """Figures of one load phase: replies, throughput, latencies and API calls."""

    workload: Workload
    answered: int
    elapsed_s: float
    throughput: Throughput
    api: ApiCounts
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    offered_per_s: float = 0.0

    @property
    def complete(self) -> bool:
        return self.answered == len(self.workload.requests)

    @property
    def calls_per_card(self) -> float:
        return self.api.calls / self.workload.lookups if self.workload.lookups else 0.0

    def latency(self, fraction: float) -> float:
        return percentile(self.latencies_ms, fraction)

    @property
    def partial_replies(self) -> int:
        return sum(count for status, count in self.statuses.items() if status != "complete")


async def paced_phase(
    replies: ReplyLog,
    topic: str,
    simulator: SimulatorProcess,
    workload: Workload,
    *,
    rate_per_s: float,
    reply_timeout_s: float,
) -> Phase:
    """Send `workload` at `rate_per_s` requests per second and wait for its replies."""
    simulator.reset()
    expected = len(replies.replies) + len(workload.requests)
    began = time.monotonic()
    async with RequestProducer(topic) as producer:
        offered = await producer.send_paced(workload.requests, rate_per_s)
    await replies.wait_for(expected, timeout_s=reply_timeout_s)
    return _phase(replies, simulator, workload, time.monotonic() - began, producer.sent_at_ms, offered)


def backlog_phase(replies: ReplyLog, simulator: SimulatorProcess, workload: Workload, elapsed_s: float) -> Phase:
    """Summarise a backlog the caller produced before starting the worker and waited for."""
    return _phase(replies, simulator, workload, elapsed_s, {}, 0.0)


def _phase(
    replies: ReplyLog,
    simulator: SimulatorProcess,
    workload: Workload,
    elapsed_s: float,
    sent_at_ms: dict[str, float],
    offered_per_s: float,
) -> Phase:
    ids = [request.request_id for request in workload.requests]
    mine = {request_id: replies.replies[request_id] for request_id in ids if request_id in replies.replies}
    return Phase(
        workload=workload,
        answered=len(mine),
        elapsed_s=elapsed_s,
        throughput=steady_throughput(mine, workload.cards_by_id()),
        api=ApiCounts.read(simulator),
        latencies_ms=latencies_ms(mine, sent_at_ms),
        statuses=replies.statuses(ids),
        offered_per_s=offered_per_s,
    )
