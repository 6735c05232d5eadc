"""Latency under load: request-to-reply percentiles at low, medium and saturating offered load.

The simulator responds after `LATENCY_MS` with no rate limit. A backlog first
measures the worker's capacity in requests per second; then a paced producer
offers a low fixed load and fractions of that capacity, one phase after the
other on the same worker. At low load a request waits for one batch linger
(CARD_LOOKUP_BATCH_LINGER_MS) and one API call, plus Kafka's own hops, which
`bench.raw_loop` measures at the same low load in the same run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench import raw_loop
from bench.load import ReplyLog, RequestProducer, generate_workload
from bench.phases import Phase, backlog_phase, paced_phase
from bench.report import Result, Table, ratio
from bench.stack import Stack
from simulator.testing import SimulatorProcess
from tests.harness import bootstrap_servers

PARTITIONS = 8
LATENCY_MS = 20
LINGER_MS = 5.0
LOW_LOAD_PER_S = 20.0
SEED = 4


@dataclass(frozen=True)
class Size:
    probe_requests: int
    phase_s: float
    capacity_shares: tuple[float, ...]
    pool: int
    reply_timeout_s: float
    time_limit_s: float


SIZES = {
    "tiny": Size(probe_requests=400, phase_s=1.0, capacity_shares=(0.5, 1.25), pool=2_000, reply_timeout_s=60, time_limit_s=120),
    "default": Size(
        probe_requests=6_000, phase_s=6.0, capacity_shares=(0.25, 0.5, 0.75, 1.0, 1.25), pool=20_000, reply_timeout_s=90, time_limit_s=300
    ),
}


async def run(size_name: str) -> Result:
    size = SIZES[size_name]
    started = time.monotonic()
    async with Stack("latency") as stack:
        simulator = await stack.simulator(generate_cards=size.pool, latency_ms=LATENCY_MS)
        topics = await stack.topics(partitions=PARTITIONS)
        probe = generate_workload(size.probe_requests, pool_size=size.pool, seed=SEED, prefix="probe")
        async with RequestProducer(topics.requests) as producer:
            await producer.send_all(probe.requests)

        phases: list[Phase] = []
        env = {"CARD_LOOKUP_BATCH_LINGER_MS": str(LINGER_MS)}
        async with ReplyLog(topics.replies) as replies:
            began = time.monotonic()
            await stack.start_workers(1, topics, simulator, env)
            await replies.wait_for(len(probe.requests), timeout_s=size.reply_timeout_s)
            capacity = backlog_phase(replies, simulator, probe, time.monotonic() - began)
            rates = [LOW_LOAD_PER_S] + [share * capacity.throughput.requests_per_s for share in size.capacity_shares]
            for index, rate in enumerate(rates):
                workload = generate_workload(round(rate * size.phase_s), pool_size=size.pool, seed=SEED + 1 + index, prefix=f"paced{index}")
                phases.append(await paced_phase(replies, topics.requests, simulator, workload, rate_per_s=rate, reply_timeout_s=size.reply_timeout_s))
        kafka_hops = await _measure_raw_loop(stack, simulator, size)

    result = Result("latency", [_table(capacity, phases, kafka_hops)], elapsed_s=time.monotonic() - started)
    result.plots["offered_load"] = [
        {
            "offered": phase.offered_per_s,
            "answered": phase.throughput.requests_per_s,
            "p50": phase.latency(0.5),
            "p95": phase.latency(0.95),
            "p99": phase.latency(0.99),
        }
        for phase in phases
    ]
    result.plots["capacity"] = capacity.throughput.requests_per_s
    result.plots["expected_ms"] = LINGER_MS + LATENCY_MS + kafka_hops.latency(0.5)
    return result


async def _measure_raw_loop(stack: Stack, simulator: SimulatorProcess, size: Size) -> Phase:
    """Latency of `bench.raw_loop` at the low load: the Kafka hops alone, with no parsing and no API call."""
    topics = await stack.topics(partitions=PARTITIONS)
    arguments = ["--bootstrap-servers", bootstrap_servers(), "--request-topic", topics.requests, "--reply-topic", topics.replies, "--group", topics.group]
    await stack.child("raw-loop", "bench.raw_loop", arguments, {}, raw_loop.READY_LINE).start()
    workload = generate_workload(round(LOW_LOAD_PER_S * size.phase_s), pool_size=size.pool, seed=SEED, prefix="raw")
    async with ReplyLog(topics.replies) as replies:
        return await paced_phase(replies, topics.requests, simulator, workload, rate_per_s=LOW_LOAD_PER_S, reply_timeout_s=size.reply_timeout_s)


def _table(capacity: Phase, phases: list[Phase], kafka_hops: Phase) -> Table:
    hops_ms = kafka_hops.latency(0.5)
    expected_ms = LINGER_MS + LATENCY_MS + hops_ms
    capacity_per_s = capacity.throughput.requests_per_s
    table = Table(
        f"Request-to-reply latency, API latency {LATENCY_MS} ms, linger {LINGER_MS:g} ms; "
        f"capacity measured on a backlog: {capacity_per_s:,.0f} requests/s",
        ["consumer", "offered requests/s", "share of capacity", "answered requests/s", "answered / offered", "p50 ms", "p95 ms", "p99 ms", "p50 / expected", "cards per call"],
    )
    table.add(
        "raw aiokafka loop",
        kafka_hops.offered_per_s,
        "-",
        kafka_hops.throughput.requests_per_s,
        ratio(kafka_hops.throughput.requests_per_s, kafka_hops.offered_per_s),
        hops_ms,
        kafka_hops.latency(0.95),
        kafka_hops.latency(0.99),
        "-",
        "-",
    )
    for phase in phases:
        table.add(
            "worker",
            phase.offered_per_s,
            ratio(phase.offered_per_s, capacity_per_s),
            phase.throughput.requests_per_s,
            ratio(phase.throughput.requests_per_s, phase.offered_per_s),
            phase.latency(0.5),
            phase.latency(0.95),
            phase.latency(0.99),
            ratio(phase.latency(0.5), expected_ms),
            ratio(phase.api.card_numbers, phase.api.calls),
        )
    table.notes.append(
        f"Expected at low load: one linger plus one API call plus the Kafka hops the raw loop measured (its p50) = "
        f"{LINGER_MS:g} + {LATENCY_MS} + {hops_ms:.1f} = {expected_ms:.1f} ms."
    )
    table.notes.append(
        "Answered requests/s is the steady rate between the 10th and 90th percentile reply of each phase; "
        "above capacity the queue grows during the phase, so the percentiles there depend on the phase length."
    )
    return table
