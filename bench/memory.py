"""Memory: peak RSS of the worker with a large backlog and a throttled API, against its idle RSS.

The simulator allows `RATE_PER_S` calls per second with `LATENCY_MS` latency,
so the worker replies far slower than the backlog arrives. It keeps at most
CARD_LOOKUP_MAX_IN_FLIGHT_REQUESTS requests and pauses its partitions when
full, so its memory should depend on that bound, not on the backlog. A second
worker, in another consumer group on the same backlog, runs with a bound ten
times larger to show what the bound costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from bench.load import ReplyLog, RequestProducer, generate_workload
from bench.report import Result, Table, ratio
from bench.stack import ChildProcess, Stack
from tests.harness import Topics, end_offsets

PARTITIONS = 8
RATE_PER_S = 5
LATENCY_MS = 200
DEFAULT_MAX_IN_FLIGHT = 2_000
LARGE_MAX_IN_FLIGHT = 20_000
SAMPLE_INTERVAL_S = 0.1
IDLE_SETTLE_S = 2.0
SEED = 5
MIB = 1024 * 1024


@dataclass(frozen=True)
class Size:
    backlog_requests: int
    observe_s: float
    pool: int
    time_limit_s: float


SIZES = {
    "tiny": Size(backlog_requests=3_000, observe_s=3.0, pool=20_000, time_limit_s=120),
    "default": Size(backlog_requests=100_000, observe_s=15.0, pool=100_000, time_limit_s=300),
}


@dataclass(frozen=True)
class Observation:
    max_in_flight: int
    peak_rss: int
    answered: int
    pauses: int


class RssSampler:
    """Samples a process's RSS every SAMPLE_INTERVAL_S in the background and keeps the peak."""

    def __init__(self, process: ChildProcess) -> None:
        self._process = process
        self.peak = 0
        self.samples = 0

    async def __aenter__(self) -> RssSampler:
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    async def __aexit__(self, *_: object) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self._process.rss_bytes())
            self.samples += 1
            await asyncio.sleep(SAMPLE_INTERVAL_S)


async def run(size_name: str) -> Result:
    size = SIZES[size_name]
    started = time.monotonic()
    # Uniform popularity: few repeats, so merging cannot hide the throttle.
    workload = generate_workload(size.backlog_requests, pool_size=size.pool, seed=SEED, prefix="mem", zipf=False)
    async with Stack("memory") as stack:
        simulator = await stack.simulator(generate_cards=size.pool, latency_ms=LATENCY_MS, rate_limit_per_s=RATE_PER_S)
        topics = await stack.topics(partitions=PARTITIONS)
        env = {"CARD_LOOKUP_MAX_IN_FLIGHT_REQUESTS": str(DEFAULT_MAX_IN_FLIGHT)}
        (worker,) = await stack.start_workers(1, topics, simulator, env)
        await asyncio.sleep(IDLE_SETTLE_S)
        async with RssSampler(worker) as idle:
            await asyncio.sleep(IDLE_SETTLE_S)

        async with ReplyLog(topics.replies) as replies, RssSampler(worker) as loaded:
            async with RequestProducer(topics.requests) as producer:
                await producer.send_all(workload.requests)
            await asyncio.sleep(size.observe_s)
            answered = len(replies.replies)
        await worker.stop()
        observations = [Observation(DEFAULT_MAX_IN_FLIGHT, loaded.peak, answered, _pauses(worker))]

        large_topics = await stack.topics(partitions=PARTITIONS)
        observations.append(await _observe_large_bound(stack, topics, large_topics, simulator, size))
        backlog = sum((await end_offsets(topics.requests, PARTITIONS)).values())

    return Result("memory", [_table(idle.peak, observations, backlog, size)], elapsed_s=time.monotonic() - started)


async def _observe_large_bound(stack: Stack, topics: Topics, large_topics: Topics, simulator: object, size: Size) -> Observation:
    """Run a worker with LARGE_MAX_IN_FLIGHT on the same backlog, in its own group and reply topic."""
    shared_backlog = Topics(requests=topics.requests, replies=large_topics.replies, dlq=large_topics.dlq, group=large_topics.group)
    env = {"CARD_LOOKUP_MAX_IN_FLIGHT_REQUESTS": str(LARGE_MAX_IN_FLIGHT)}
    async with ReplyLog(shared_backlog.replies) as replies:
        (worker,) = await stack.start_workers(1, shared_backlog, simulator, env)  # type: ignore[arg-type]
        async with RssSampler(worker) as loaded:
            await asyncio.sleep(size.observe_s)
        answered = len(replies.replies)
    await worker.stop()
    return Observation(LARGE_MAX_IN_FLIGHT, loaded.peak, answered, _pauses(worker))


def _pauses(worker: ChildProcess) -> int:
    return worker.log_text().count("paused ")


def _table(idle_rss: int, observations: list[Observation], backlog: int, size: Size) -> Table:
    table = Table(
        f"Worker RSS with a backlog of {backlog:,} requests and an API throttled to {RATE_PER_S} calls/s at {LATENCY_MS} ms",
        ["CARD_LOOKUP_MAX_IN_FLIGHT_REQUESTS", "idle RSS MiB", "peak RSS MiB", "peak / idle", "peak - idle MiB", "KiB per in-flight request", "requests answered", "partition pauses"],
    )
    for observation in observations:
        growth = observation.peak_rss - idle_rss
        table.add(
            observation.max_in_flight,
            idle_rss / MIB,
            observation.peak_rss / MIB,
            ratio(observation.peak_rss, idle_rss),
            growth / MIB,
            growth / 1024 / observation.max_in_flight,
            observation.answered,
            observation.pauses,
        )
    table.notes.append(
        f"RSS sampled with psutil every {SAMPLE_INTERVAL_S:g} s for {size.observe_s:g} s after the backlog was produced; "
        "idle RSS is the peak over a few seconds of the first worker before any request arrived."
    )
    table.notes.append("Partition pauses counts the worker's 'paused N partition(s)' log lines: each is one time the in-flight bound was reached.")
    return table
