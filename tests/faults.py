"""Fault-test harness on top of tests/harness.py: a private broker to stop and restart, log waits, reply accounting.

The shared broker on 9092 serves everyone's tests, so a test that stops a
broker starts its own with `PrivateBroker` on another port. It reuses the
jars in .cache/kafka; `scripts/kafka` keeps data, logs and pid files per port.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka.errors import KafkaError

from simulator.data import generated_card_number
from tests.harness import KAFKA_SCRIPT, ROOT, ReplyCollector, Topics, WorkerProcess, port_open

BROKER_START_TIMEOUT_S = 120
BROKER_STOP_TIMEOUT_S = 60
TOPIC_CREATE_TIMEOUT_S = 60


class PrivateBroker:
    """A single-node KRaft broker of this test alone, on `port` (its controller on `port + 1`)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.bootstrap = f"127.0.0.1:{port}"
        self._env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_HOME": str(ROOT / ".cache" / "kafka")}

    def start(self, *, fresh: bool = False) -> None:
        """Start the broker and wait until its port accepts connections; `fresh` wipes its data first."""
        if port_open(self.port) and fresh:
            raise RuntimeError(f"port {self.port} is already in use; stop whatever listens there or pick another port")
        env = {**self._env, "KAFKA_FRESH": "1" if fresh else "0"}
        subprocess.run([str(KAFKA_SCRIPT), "start"], env=env, check=True, timeout=BROKER_START_TIMEOUT_S)

    def stop(self) -> None:
        """Stop the broker with SIGTERM (SIGKILL after 30 s, as scripts/kafka does)."""
        subprocess.run([str(KAFKA_SCRIPT), "stop"], env=self._env, check=True, timeout=BROKER_STOP_TIMEOUT_S)

    async def create_topics(self, topics: Topics, *, partitions: int) -> None:
        """Create the topics, retrying while the new broker's metadata quorum is still starting."""
        give_up_at = time.monotonic() + TOPIC_CREATE_TIMEOUT_S
        while True:
            try:
                await topics.create(partitions=partitions, bootstrap=self.bootstrap)
                return
            except KafkaError:
                if time.monotonic() > give_up_at:
                    raise
                await asyncio.sleep(1.0)


def card_pool(count: int) -> list[str]:
    """Card numbers of the first `count` cards that `SimulatorProcess(generate_cards=...)` creates."""
    return [generated_card_number(index) for index in range(count)]


def make_requests(prefix: str, count: int, cards: list[str], *, seed: int, cards_per_request: int = 3) -> list[tuple[str, list[str]]]:
    """Build `count` requests with distinct ids, each naming random cards of `cards`."""
    chooser = random.Random(seed)
    return [(f"{prefix}-{index}", chooser.sample(cards, cards_per_request)) for index in range(count)]


async def wait_for_log(worker: WorkerProcess, text: str, *, count: int = 1, timeout_s: float) -> bool:
    """Wait until the worker's log contains `text` at least `count` times."""
    give_up_at = time.monotonic() + timeout_s
    while time.monotonic() < give_up_at:
        if log_count(worker, text) >= count:
            return True
        await asyncio.sleep(0.1)
    return False


def log_count(worker: WorkerProcess, text: str) -> int:
    if not worker.log_path.exists():
        return 0
    return worker.log_path.read_text(errors="replace").count(text)


async def wait_for_replies(collector: ReplyCollector, count: int, *, timeout_s: float) -> int:
    """Poll until at least `count` distinct request ids have replies; return how many have."""
    give_up_at = time.monotonic() + timeout_s
    while len(collector.by_request_id) < count and time.monotonic() < give_up_at:
        await collector.poll(0.2)
    return len(collector.by_request_id)


async def poll_until_quiet(collector: ReplyCollector, *, quiet_s: float, timeout_s: float) -> None:
    """Poll until no record arrives for `quiet_s`, or `timeout_s` passes."""
    give_up_at = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    while time.monotonic() < give_up_at and time.monotonic() - quiet_since < quiet_s:
        if await collector.poll(0.2):
            quiet_since = time.monotonic()


@dataclass
class DeliveryReport:
    """Replies counted by request id: which are missing, which came more than once."""

    expected: int
    missing: set[str]
    duplicates: Counter[str]

    @classmethod
    def of(cls, collector: ReplyCollector, request_ids: Iterable[str]) -> DeliveryReport:
        expected_ids = set(request_ids)
        duplicates = Counter({request_id: extra for request_id, extra in collector.duplicates().items() if request_id in expected_ids})
        return cls(expected=len(expected_ids), missing=expected_ids - collector.by_request_id.keys(), duplicates=duplicates)

    def describe(self, label: str) -> str:
        extra_replies = sum(self.duplicates.values())
        examples = ", ".join(f"{request_id} x{extra + 1}" for request_id, extra in sorted(self.duplicates.items())[:20])
        return (
            f"{label}: {self.expected} requests, {len(self.missing)} without a reply, "
            f"{len(self.duplicates)} answered more than once ({extra_replies} extra replies)"
            + (f"; first duplicates: {examples}" if examples else "")
        )


def reply_json(collector: ReplyCollector, request_id: str) -> dict[str, object]:
    return json.loads(collector.by_request_id[request_id][0].value)
