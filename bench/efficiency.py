"""API efficiency: GET /cards calls per 1,000 card lookups, batched worker against a naive one.

A backlog of requests (1-5 cards each, Zipf-like popularity over a pool of
generated cards) is looked up by the worker and then, from the same request
topic under another consumer group, by `bench.naive_worker`, which calls the
API once per card number. The naive worker answers only the first
`naive_requests` of them (it is about 50 times slower); its calls per 1,000
lookups do not depend on the count, because it calls once per card number. The ideal is one call per `batch_max_cards`
distinct cards. The simulator answers at once and without a rate limit, so
the figures count calls, not waiting.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from bench import naive_worker
from bench.load import ReplyLog, RequestProducer, Workload, generate_workload, steady_throughput
from bench.report import Result, Table, ratio
from bench.stack import Stack
from simulator.testing import SimulatorProcess
from tests.harness import Topics, bootstrap_servers

PARTITIONS = 8
BATCH_MAX_CARDS = 100
SEED = 1


@dataclass(frozen=True)
class Size:
    requests: int
    naive_requests: int
    pool: int
    reply_timeout_s: float
    time_limit_s: float


SIZES = {
    "tiny": Size(requests=300, naive_requests=100, pool=1_000, reply_timeout_s=60, time_limit_s=120),
    "default": Size(requests=10_000, naive_requests=1_500, pool=20_000, reply_timeout_s=120, time_limit_s=300),
}


@dataclass(frozen=True)
class Run:
    calls: int
    card_numbers_sent: int
    elapsed_s: float
    requests_per_s: float
    answered: int


async def run(size_name: str) -> Result:
    size = SIZES[size_name]
    started = time.monotonic()
    workload = generate_workload(size.requests, pool_size=size.pool, seed=SEED, prefix="eff")
    async with Stack("efficiency") as stack:
        simulator = await stack.simulator(generate_cards=size.pool)
        topics = await stack.topics(partitions=PARTITIONS)
        naive_topics = await stack.topics(partitions=PARTITIONS)
        naive_workload = Workload(workload.requests[: size.naive_requests])
        async with RequestProducer(topics.requests) as producer:
            await producer.send_all(workload.requests)
        async with RequestProducer(naive_topics.requests) as producer:
            await producer.send_all(naive_workload.requests)

        batched = await _run_batched(stack, topics, simulator, workload, size)
        naive = await _run_naive(stack, naive_topics, simulator, naive_workload, size)

    table = _table(workload, naive_workload, batched, naive)
    return Result("efficiency", [table], elapsed_s=time.monotonic() - started)


async def _run_batched(stack: Stack, topics: Topics, simulator: SimulatorProcess, workload: Workload, size: Size) -> Run:
    simulator.reset()
    env = {"CARD_LOOKUP_BATCH_MAX_CARDS": str(BATCH_MAX_CARDS)}
    async with ReplyLog(topics.replies) as replies:
        began = time.monotonic()
        (worker,) = await stack.start_workers(1, topics, simulator, env)
        await replies.wait_for(len(workload.requests), timeout_s=size.reply_timeout_s)
        elapsed = time.monotonic() - began
    await worker.stop()
    return _summarise(simulator, replies, workload, elapsed)


async def _run_naive(stack: Stack, topics: Topics, simulator: SimulatorProcess, workload: Workload, size: Size) -> Run:
    simulator.reset()
    arguments = [
        "--bootstrap-servers", bootstrap_servers(),
        "--request-topic", topics.requests,
        "--reply-topic", topics.replies,
        "--group", topics.group,
        "--api-base-url", simulator.base_url,
    ]  # fmt: skip
    async with ReplyLog(topics.replies) as replies:
        began = time.monotonic()
        naive = stack.child("naive-worker", "bench.naive_worker", arguments, {}, naive_worker.READY_LINE)
        await naive.start()
        await replies.wait_for(len(workload.requests), timeout_s=size.reply_timeout_s)
        elapsed = time.monotonic() - began
    await naive.stop()
    return _summarise(simulator, replies, workload, elapsed)


def _summarise(simulator: SimulatorProcess, replies: ReplyLog, workload: Workload, elapsed_s: float) -> Run:
    stats = simulator.stats()
    throughput = steady_throughput(replies.replies, workload.cards_by_id())
    return Run(
        calls=stats["cards_calls"],
        card_numbers_sent=stats["card_numbers_requested"],
        elapsed_s=elapsed_s,
        requests_per_s=throughput.requests_per_s,
        answered=len(replies.replies),
    )


def _table(workload: Workload, naive_workload: Workload, batched: Run, naive: Run) -> Table:
    distinct = workload.distinct_cards
    ideal_calls = math.ceil(distinct / BATCH_MAX_CARDS)
    ideal_per_thousand = 1000 * ideal_calls / workload.lookups
    batched_per_thousand = 1000 * batched.calls / workload.lookups
    naive_per_thousand = 1000 * naive.calls / naive_workload.lookups

    table = Table(
        f"GET /cards calls per 1,000 card lookups ({len(workload.requests):,} requests, "
        f"{workload.lookups:,} lookups, {distinct:,} distinct cards)",
        ["worker", "requests answered", "GET /cards calls", "calls per 1,000 lookups", "x ideal", "naive / this", "requests/s", "this / naive requests/s"],
    )
    table.add("ideal: distinct / batch size", "-", ideal_calls, ideal_per_thousand, 1.0, ratio(naive_per_thousand, ideal_per_thousand), "-", "-")
    table.add(
        "batched worker",
        f"{batched.answered:,} / {len(workload.requests):,}",
        batched.calls,
        batched_per_thousand,
        ratio(batched_per_thousand, ideal_per_thousand),
        ratio(naive_per_thousand, batched_per_thousand),
        batched.requests_per_s,
        ratio(batched.requests_per_s, naive.requests_per_s),
    )
    table.add(
        "naive worker (first requests only)",
        f"{naive.answered:,} / {len(naive_workload.requests):,}",
        naive.calls,
        naive_per_thousand,
        ratio(naive_per_thousand, ideal_per_thousand),
        1.0,
        naive.requests_per_s,
        1.0,
    )
    table.notes.append(
        f"Batch size (CARD_LOOKUP_BATCH_MAX_CARDS) {BATCH_MAX_CARDS}; the batched worker sent "
        f"{batched.card_numbers_sent:,} card numbers, {ratio(batched.card_numbers_sent, distinct):.2f} per distinct card "
        "(it merges numbers only while they are in flight, so a card asked again later is fetched again)."
    )
    table.notes.append("Requests/s is the steady rate between the 10th and 90th percentile reply of a backlog; the simulator has no latency.")
    return table
