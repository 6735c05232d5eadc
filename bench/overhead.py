"""Worker overhead: requests per second end to end against a raw aiokafka loop on the same records.

The simulator responds at once and without a rate limit, so the API is not the
bottleneck. The worker replies to a backlog; then `bench.raw_loop` consumes the
same request topic under another consumer group and produces a fixed small
reply per record, which is the ceiling of Kafka plus aiokafka on this machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench import raw_loop
from bench.load import ReplyLog, RequestProducer, Workload, generate_workload
from bench.phases import Phase, backlog_phase
from bench.report import Result, Table, ratio
from bench.stack import Stack
from simulator.testing import SimulatorProcess
from tests.harness import Topics, bootstrap_servers

PARTITIONS = 8
SEED = 3


@dataclass(frozen=True)
class Size:
    requests: int
    pool: int
    reply_timeout_s: float
    time_limit_s: float


SIZES = {
    "tiny": Size(requests=1_000, pool=2_000, reply_timeout_s=60, time_limit_s=120),
    "default": Size(requests=30_000, pool=20_000, reply_timeout_s=120, time_limit_s=240),
}


async def run(size_name: str) -> Result:
    size = SIZES[size_name]
    started = time.monotonic()
    workload = generate_workload(size.requests, pool_size=size.pool, seed=SEED, prefix="ovh")
    async with Stack("overhead") as stack:
        simulator = await stack.simulator(generate_cards=size.pool)
        topics = await stack.topics(partitions=PARTITIONS)
        raw_topics = await stack.topics(partitions=PARTITIONS)
        async with RequestProducer(topics.requests) as producer:
            await producer.send_all(workload.requests)
        worker = await _run_worker(stack, topics, simulator, workload, size)
        raw = await _run_raw_loop(stack, topics.requests, raw_topics, simulator, workload, size)
    return Result("overhead", [_table(workload, worker, raw)], elapsed_s=time.monotonic() - started)


async def _run_worker(stack: Stack, topics: Topics, simulator: SimulatorProcess, workload: Workload, size: Size) -> Phase:
    simulator.reset()
    async with ReplyLog(topics.replies) as replies:
        began = time.monotonic()
        (worker,) = await stack.start_workers(1, topics, simulator)
        await replies.wait_for(len(workload.requests), timeout_s=size.reply_timeout_s)
        phase = backlog_phase(replies, simulator, workload, time.monotonic() - began)
    await worker.stop()
    return phase


async def _run_raw_loop(stack: Stack, request_topic: str, topics: Topics, simulator: SimulatorProcess, workload: Workload, size: Size) -> Phase:
    simulator.reset()
    arguments = ["--bootstrap-servers", bootstrap_servers(), "--request-topic", request_topic, "--reply-topic", topics.replies, "--group", topics.group]
    async with ReplyLog(topics.replies) as replies:
        began = time.monotonic()
        loop = stack.child("raw-loop", "bench.raw_loop", arguments, {}, raw_loop.READY_LINE)
        await loop.start()
        await replies.wait_for(len(workload.requests), timeout_s=size.reply_timeout_s)
        phase = backlog_phase(replies, simulator, workload, time.monotonic() - began)
    await loop.stop()
    return phase


def _table(workload: Workload, worker: Phase, raw: Phase) -> Table:
    table = Table(
        f"Backlog of {len(workload.requests):,} requests ({workload.lookups:,} card lookups), instant unlimited API",
        ["consumer", "requests answered", "requests/s", "cards/s", "share of raw loop", "GET /cards calls"],
    )
    for name, phase in (("worker", worker), ("raw aiokafka loop (no parsing, no API)", raw)):
        table.add(
            name,
            f"{phase.answered:,} / {len(workload.requests):,}",
            phase.throughput.requests_per_s,
            phase.throughput.cards_per_s,
            ratio(phase.throughput.requests_per_s, raw.throughput.requests_per_s),
            phase.api.calls,
        )
    table.notes.append(
        "Requests/s is the steady rate between the 10th and 90th percentile reply. Both consumers run as one process "
        "on the same topic (8 partitions); the broker, the simulator and the benchmark share the same CPUs."
    )
    return table
