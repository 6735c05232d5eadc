"""Budget use: how much of a rate-limited API's budget the worker turns into cards in replies.

The simulator allows `RATE_PER_S` calls per second (burst `SIMULATOR_BURST`,
429 with Retry-After above it) and responds after `LATENCY_MS`. The best any
client can do is RATE_PER_S x BATCH_MAX_CARDS cards per second. Two worker
modes are measured, each on a fresh worker: the rate configured
(CARD_LOOKUP_API_RATE_LIMIT_PER_S = RATE_PER_S) and adaptive (no rate set, the
limiter learns it from 429s). Each mode answers a backlog (budget use, 429
share, calls per card) and then a paced load at half the budget (latency).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.load import ReplyLog, RequestProducer, generate_workload
from bench.phases import Phase, backlog_phase, paced_phase
from bench.report import Result, Table, ratio
from bench.stack import Stack
from simulator.testing import SimulatorProcess

PARTITIONS = 8
RATE_PER_S = 20
SIMULATOR_BURST = 5
LATENCY_MS = 50
BATCH_MAX_CARDS = 100
MEAN_CARDS_PER_REQUEST = 3
PACED_SHARE_OF_BUDGET = 0.5
SEED = 2

MODES = {
    "configured rate": {"CARD_LOOKUP_API_RATE_LIMIT_PER_S": str(RATE_PER_S)},
    "adaptive": {},
}


@dataclass(frozen=True)
class Size:
    backlog_requests: int
    paced_s: float
    pool: int
    reply_timeout_s: float
    time_limit_s: float


SIZES = {
    "tiny": Size(backlog_requests=600, paced_s=1.5, pool=5_000, reply_timeout_s=60, time_limit_s=150),
    "default": Size(backlog_requests=10_000, paced_s=10, pool=100_000, reply_timeout_s=90, time_limit_s=300),
}


async def run(size_name: str) -> Result:
    size = SIZES[size_name]
    started = time.monotonic()
    measured: dict[str, tuple[Phase, Phase]] = {}
    async with Stack("budget") as stack:
        simulator = await stack.simulator(
            generate_cards=size.pool, latency_ms=LATENCY_MS, rate_limit_per_s=RATE_PER_S, rate_limit_burst=SIMULATOR_BURST
        )
        for index, (mode, env) in enumerate(MODES.items()):
            measured[mode] = await _measure_mode(stack, simulator, index, env, size)
    return Result("budget", _tables(measured), elapsed_s=time.monotonic() - started)


async def _measure_mode(stack: Stack, simulator: SimulatorProcess, index: int, env: dict[str, str], size: Size) -> tuple[Phase, Phase]:
    topics = await stack.topics(partitions=PARTITIONS)
    backlog = generate_workload(size.backlog_requests, pool_size=size.pool, seed=SEED + index, prefix=f"backlog{index}", zipf=False)
    paced_rate = PACED_SHARE_OF_BUDGET * RATE_PER_S * BATCH_MAX_CARDS / MEAN_CARDS_PER_REQUEST
    paced = generate_workload(round(paced_rate * size.paced_s), pool_size=size.pool, seed=SEED + 10 + index, prefix=f"paced{index}", zipf=False)

    async with RequestProducer(topics.requests) as producer:
        await producer.send_all(backlog.requests)
    simulator.reset()
    env = {"CARD_LOOKUP_BATCH_MAX_CARDS": str(BATCH_MAX_CARDS), **env}
    async with ReplyLog(topics.replies) as replies:
        began = time.monotonic()
        (worker,) = await stack.start_workers(1, topics, simulator, env)
        await replies.wait_for(len(backlog.requests), timeout_s=size.reply_timeout_s)
        backlog_result = backlog_phase(replies, simulator, backlog, time.monotonic() - began)
        paced_result = await paced_phase(replies, topics.requests, simulator, paced, rate_per_s=paced_rate, reply_timeout_s=size.reply_timeout_s)
    await worker.stop()
    return backlog_result, paced_result


def _tables(measured: dict[str, tuple[Phase, Phase]]) -> list[Table]:
    budget_cards_per_s = RATE_PER_S * BATCH_MAX_CARDS
    backlog_table = Table(
        f"Backlog against {RATE_PER_S} calls/s (burst {SIMULATOR_BURST}) and {LATENCY_MS} ms latency: "
        f"the budget is {budget_cards_per_s:,} cards/s",
        ["mode", "requests answered", "cards/s", "share of budget", "GET /cards calls", "429 share", "calls per card", "ideal calls per card", "partial replies"],
    )
    paced_table = Table(
        f"Paced at {PACED_SHARE_OF_BUDGET:.0%} of the budget: request-to-reply latency",
        ["mode", "offered requests/s", "requests answered", "p50 ms", "p99 ms", "p99 / p50", "GET /cards calls", "429 share", "calls per card"],
    )
    for mode, (backlog, paced) in measured.items():
        backlog_table.add(
            mode,
            f"{backlog.answered:,} / {len(backlog.workload.requests):,}",
            backlog.throughput.cards_per_s,
            ratio(backlog.throughput.cards_per_s, budget_cards_per_s),
            backlog.api.calls,
            backlog.api.rate_limited_share,
            backlog.calls_per_card,
            1 / BATCH_MAX_CARDS,
            backlog.partial_replies,
        )
        paced_table.add(
            mode,
            paced.offered_per_s,
            f"{paced.answered:,} / {len(paced.workload.requests):,}",
            paced.latency(0.5),
            paced.latency(0.99),
            ratio(paced.latency(0.99), paced.latency(0.5)),
            paced.api.calls,
            paced.api.rate_limited_share,
            paced.calls_per_card,
        )
    backlog_table.notes.append(
        "Cards/s is the steady rate between the 10th and 90th percentile reply; calls include those answered 429. "
        f"Configured rate: CARD_LOOKUP_API_RATE_LIMIT_PER_S={RATE_PER_S} with the default burst; adaptive: no rate set."
    )
    paced_table.notes.append("Latency runs from handing the request to the producer to the reply record's timestamp.")
    return [backlog_table, paced_table]
