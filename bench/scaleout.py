"""Scale-out: one, two and four worker replicas in one consumer group sharing one API budget.

The simulator allows `RATE_PER_S` calls per second (burst `SIMULATOR_BURST`)
with `LATENCY_MS` latency, so more replicas cannot look up more cards than
RATE_PER_S x BATCH_MAX_CARDS per second; what can change is how many calls
are wasted on 429s. Each replica count runs in two modes: adaptive (no rate
set, each replica learns its own rate from 429s) and the budget split evenly
(CARD_LOOKUP_API_RATE_LIMIT_PER_S = RATE_PER_S / replicas). Every run reads
the same backlog, produced on its own topic once every replica has its
partitions.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bench.load import ReplyLog, RequestProducer, Workload, generate_workload
from bench.report import Result, Table, ratio
from bench.stack import ChildProcess, Stack
from simulator.testing import SimulatorProcess
from tests.harness import Topics

PARTITIONS = 8
RATE_PER_S = 20
SIMULATOR_BURST = 5
LATENCY_MS = 50
BATCH_MAX_CARDS = 100
MEAN_CARDS_PER_REQUEST = 3
CARDS_ENDPOINT = "GET /cards"
SEED = 6
# A rebalance waits for revoked requests for up to 10 s in the worker, and
# replicas join one after the other.
ASSIGNMENT_TIMEOUT_S = 60.0
MODES = ("adaptive", "rate split")


@dataclass(frozen=True)
class Size:
    replicas: tuple[int, ...]
    warmup_s: float
    window_s: float
    pool: int
    time_limit_s: float


SIZES = {
    "tiny": Size(replicas=(1, 2), warmup_s=1.0, window_s=2.0, pool=20_000, time_limit_s=150),
    "default": Size(replicas=(1, 2, 4), warmup_s=5.0, window_s=12.0, pool=100_000, time_limit_s=360),
}


@dataclass(frozen=True)
class Run:
    mode: str
    replicas: int
    rate_per_replica: float | None
    cards_per_s: float
    calls: int
    rate_limited: int

    @property
    def rate_limited_share(self) -> float:
        return self.rate_limited / self.calls if self.calls else 0.0


async def run(size_name: str) -> Result:
    size = SIZES[size_name]
    started = time.monotonic()
    budget_cards = RATE_PER_S * BATCH_MAX_CARDS
    # Enough backlog for the whole window at full budget, with a margin.
    request_count = round(1.5 * budget_cards * (size.warmup_s + size.window_s) / MEAN_CARDS_PER_REQUEST)
    workload = generate_workload(request_count, pool_size=size.pool, seed=SEED, prefix="scale", zipf=False)
    runs: list[Run] = []
    async with Stack("scaleout") as stack:
        simulator = await stack.simulator(
            generate_cards=size.pool, latency_ms=LATENCY_MS, rate_limit_per_s=RATE_PER_S, rate_limit_burst=SIMULATOR_BURST
        )
        for mode in MODES:
            for replicas in size.replicas:
                topics = await stack.topics(partitions=PARTITIONS)
                runs.append(await _measure(stack, simulator, topics, workload, mode, replicas, size))

    result = Result("scaleout", [_table(runs, size)], elapsed_s=time.monotonic() - started)
    result.plots["runs"] = [
        {"mode": run.mode, "replicas": run.replicas, "budget_share": run.cards_per_s / budget_cards, "rate_limited_share": run.rate_limited_share}
        for run in runs
    ]
    return result


async def _measure(stack: Stack, simulator: SimulatorProcess, topics: Topics, workload: Workload, mode: str, replicas: int, size: Size) -> Run:
    rate = RATE_PER_S / replicas if mode == "rate split" else None
    env = {"CARD_LOOKUP_BATCH_MAX_CARDS": str(BATCH_MAX_CARDS)}
    if rate is not None:
        env["CARD_LOOKUP_API_RATE_LIMIT_PER_S"] = f"{rate:g}"
    async with ReplyLog(topics.replies) as replies:
        workers = await stack.start_workers(replicas, topics, simulator, env)
        # The backlog goes in only once the group is stable, so the first
        # replica cannot take all of it while the others join.
        await _wait_for_assignment(workers, topics.requests)
        async with RequestProducer(topics.requests) as producer:
            await producer.send_all(workload.requests)
        await asyncio.sleep(size.warmup_s)
        window_start = time.time()
        await asyncio.sleep(size.window_s)
        window_end = time.time()
        # Replies published inside the window may still be on their way.
        await asyncio.sleep(1.0)
        calls = [call for call in simulator.calls(since=window_start) if call["endpoint"] == CARDS_ENDPOINT and call["t"] < window_end]
        cards_by_id = workload.cards_by_id()
        cards = sum(
            cards_by_id.get(request_id, 0)
            for request_id, reply in replies.replies.items()
            if window_start * 1000 <= reply.timestamp_ms < window_end * 1000
        )
    await asyncio.gather(*(worker.stop() for worker in workers))
    return Run(
        mode=mode,
        replicas=replicas,
        rate_per_replica=rate,
        cards_per_s=cards / (window_end - window_start),
        calls=len(calls),
        rate_limited=sum(1 for call in calls if call["status"] == 429),
    )


async def _wait_for_assignment(workers: list[ChildProcess], topic: str) -> None:
    """Wait until the workers' latest assignments cover every partition once, so the group is stable."""
    give_up_at = time.monotonic() + ASSIGNMENT_TIMEOUT_S
    while time.monotonic() < give_up_at:
        assigned = [_latest_assignment(worker, topic) for worker in workers]
        if all(assigned) and sum(assigned) == PARTITIONS:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{len(workers)} workers did not share the {PARTITIONS} partitions of {topic} within {ASSIGNMENT_TIMEOUT_S:g} s")


def _latest_assignment(worker: ChildProcess, topic: str) -> int:
    """Partitions of `topic` in the worker's last 'partitions assigned' log line (0 before the first)."""
    lines = [line for line in worker.log_text().splitlines() if "partitions assigned:" in line]
    if not lines:
        return 0
    return lines[-1].count(f"{topic}[")


def _table(runs: list[Run], size: Size) -> Table:
    budget_cards = RATE_PER_S * BATCH_MAX_CARDS
    table = Table(
        f"Replicas sharing {RATE_PER_S} calls/s (burst {SIMULATOR_BURST}, {LATENCY_MS} ms latency): budget {budget_cards:,} cards/s",
        ["mode", "replicas", "rate per replica (calls/s)", "cards/s", "share of budget", "vs 1 replica", "GET /cards calls", "429 share"],
    )
    single = {run.mode: run for run in runs if run.replicas == 1}
    for run in runs:
        table.add(
            run.mode,
            run.replicas,
            "learned" if run.rate_per_replica is None else f"{run.rate_per_replica:g}",
            run.cards_per_s,
            ratio(run.cards_per_s, budget_cards),
            ratio(run.cards_per_s, single[run.mode].cards_per_s) if run.mode in single else "-",
            run.calls,
            run.rate_limited_share,
        )
    table.notes.append(
        f"Measured over {size.window_s:g} s, starting {size.warmup_s:g} s after the replicas' assignments covered every "
        "partition; calls and 429s come from the simulator's call log for the same window."
    )
    return table
