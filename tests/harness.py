"""Test harness shared by integration, fault and benchmark code.

- `KafkaEndpoint`: the local broker started by `scripts/kafka`, plus topic creation.
- `Topics`: a unique request/reply/DLQ topic set per test, so tests never see each other's records.
- `RequestSender` and `ReplyCollector`: produce requests, and count replies by request id.
- `WorkerProcess`: the worker as a real subprocess (`python -m worker`) that a test
  can stop with SIGTERM, kill with SIGKILL, and start again.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

ROOT = Path(__file__).resolve().parent.parent
KAFKA_SCRIPT = ROOT / "scripts" / "kafka"


def kafka_port() -> int:
    return int(os.environ.get("KAFKA_PORT", "9092"))


def bootstrap_servers() -> str:
    return f"127.0.0.1:{kafka_port()}"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def ensure_kafka() -> bool:
    """Start the local broker unless one answers already; return True if this call started it."""
    if port_open(kafka_port()):
        return False
    subprocess.run([str(KAFKA_SCRIPT), "start"], check=True, timeout=300)
    return True


def stop_kafka() -> None:
    subprocess.run([str(KAFKA_SCRIPT), "stop"], check=True, timeout=120)


async def create_topics(names: Iterable[str], *, partitions: int = 3, bootstrap: str | None = None) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap or bootstrap_servers())
    await admin.start()
    try:
        for name in names:
            try:
                await admin.create_topics([NewTopic(name, partitions, 1)])
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


@dataclass(frozen=True)
class Topics:
    requests: str
    replies: str
    dlq: str
    group: str

    @classmethod
    def unique(cls, label: str = "t") -> Topics:
        suffix = f"{label}-{uuid.uuid4().hex[:10]}"
        return cls(
            requests=f"requests.{suffix}",
            replies=f"replies.{suffix}",
            dlq=f"dlq.{suffix}",
            group=f"group.{suffix}",
        )

    async def create(self, *, partitions: int = 3, bootstrap: str | None = None) -> None:
        await create_topics([self.requests, self.replies, self.dlq], partitions=partitions, bootstrap=bootstrap)

    def worker_env(self, bootstrap: str | None = None) -> dict[str, str]:
        return {
            "CARD_LOOKUP_KAFKA_BOOTSTRAP_SERVERS": bootstrap or bootstrap_servers(),
            "CARD_LOOKUP_REQUEST_TOPIC": self.requests,
            "CARD_LOOKUP_REPLY_TOPIC": self.replies,
            "CARD_LOOKUP_DLQ_TOPIC": self.dlq,
            "CARD_LOOKUP_CONSUMER_GROUP": self.group,
        }

    def settings_overrides(self) -> dict[str, Any]:
        return {
            "kafka_bootstrap_servers": bootstrap_servers(),
            "request_topic": self.requests,
            "reply_topic": self.replies,
            "dlq_topic": self.dlq,
            "consumer_group": self.group,
        }


def lookup_request(request_id: str, card_numbers: list[Any], **fields: Any) -> bytes:
    return json.dumps({"request_id": request_id, "card_numbers": card_numbers, **fields}).encode()


class RequestSender:
    """An idempotent producer for test requests."""

    def __init__(self, topic: str, *, bootstrap: str | None = None) -> None:
        self.topic = topic
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap or bootstrap_servers(), enable_idempotence=True, linger_ms=5)

    async def __aenter__(self) -> RequestSender:
        await self._producer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._producer.stop()

    async def send(
        self,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Mapping[str, str | bytes] | None = None,
        topic: str | None = None,
    ) -> None:
        encoded = [(name, raw if isinstance(raw, bytes) else raw.encode()) for name, raw in (headers or {}).items()]
        await self._producer.send(topic or self.topic, value, key=key, headers=encoded or None)

    async def send_requests(self, requests: Iterable[tuple[str, list[Any]]], **fields: Any) -> int:
        count = 0
        for request_id, card_numbers in requests:
            await self.send(lookup_request(request_id, card_numbers, **fields), key=request_id.encode())
            count += 1
        await self._producer.flush()
        return count

    async def flush(self) -> None:
        await self._producer.flush()


@dataclass
class Received:
    value: bytes
    key: bytes | None
    headers: dict[str, bytes]
    partition: int
    offset: int

    def json(self) -> Any:
        return json.loads(self.value)


@dataclass
class ReplyCollector:
    """Reads a topic from the beginning and indexes replies by request id."""

    topic: str
    by_request_id: dict[str, list[Received]] = field(default_factory=dict)
    records: list[Received] = field(default_factory=list)
    bootstrap: str | None = None

    async def __aenter__(self) -> ReplyCollector:
        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap or bootstrap_servers(),
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await self._consumer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def poll(self, timeout_s: float = 0.5) -> int:
        batches = await self._consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=5000)
        count = 0
        for records in batches.values():
            for record in records:
                received = Received(
                    value=record.value or b"",
                    key=record.key,
                    headers={name: raw for name, raw in record.headers},
                    partition=record.partition,
                    offset=record.offset,
                )
                self.records.append(received)
                try:
                    request_id = json.loads(received.value).get("request_id")
                except (ValueError, AttributeError, RecursionError):
                    request_id = None
                # Poison records may carry any JSON as request_id; only strings are ids.
                if isinstance(request_id, str):
                    self.by_request_id.setdefault(request_id, []).append(received)
                count += 1
        return count

    async def wait_for(self, request_ids: Iterable[str], *, timeout_s: float) -> set[str]:
        """Poll until every id has a reply or the timeout passes; return the ids still missing."""
        wanted = set(request_ids)
        give_up_at = time.monotonic() + timeout_s
        while time.monotonic() < give_up_at:
            missing = wanted - self.by_request_id.keys()
            if not missing:
                return set()
            await self.poll(0.5)
        return wanted - self.by_request_id.keys()

    async def wait_for_records(self, count: int, *, timeout_s: float) -> list[Received]:
        give_up_at = time.monotonic() + timeout_s
        while len(self.records) < count and time.monotonic() < give_up_at:
            await self.poll(0.5)
        return self.records

    def duplicates(self) -> Counter[str]:
        return Counter({request_id: len(replies) - 1 for request_id, replies in self.by_request_id.items() if len(replies) > 1})

    def reply(self, request_id: str) -> dict[str, Any]:
        return self.by_request_id[request_id][0].json()


async def committed_offsets(group: str, topic: str, partitions: int, *, bootstrap: str | None = None) -> dict[int, int]:
    """The group's committed offset per partition (-1 when none)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap or bootstrap_servers(), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        result = {}
        for partition in range(partitions):
            committed = await consumer.committed(TopicPartition(topic, partition))
            result[partition] = -1 if committed is None else committed
        return result
    finally:
        await consumer.stop()


async def end_offsets(topic: str, partitions: int, *, bootstrap: str | None = None) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap or bootstrap_servers(), group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, partition) for partition in range(partitions)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


class WorkerProcess:
    """`python -m worker` as a subprocess with the given environment."""

    READY_LINE = "worker running"

    def __init__(self, env: Mapping[str, str], *, log_path: Path) -> None:
        self.env = {**os.environ, "CARD_LOOKUP_LOG_FORMAT": "text", "CARD_LOOKUP_HTTP_PORT": "0", **env}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, *, wait_ready_s: float = 60.0) -> None:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker"], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.starts += 1
        give_up_at = time.monotonic() + wait_ready_s
        while time.monotonic() < give_up_at:
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited with {self.process.returncode} during start; log:\n{self.log_tail()}")
            if self.log_path.read_text(errors="replace").count(self.READY_LINE) >= self.starts:
                return
            time.sleep(0.1)
        raise RuntimeError(f"the worker did not report ready within {wait_ready_s}s; log:\n{self.log_tail()}")

    def terminate(self, *, timeout_s: float = 60.0) -> int:
        """Send SIGTERM and wait for the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        if self.running():
            self.kill()


async def wait_until(predicate: Any, *, timeout_s: float, interval_s: float = 0.1) -> bool:
    give_up_at = time.monotonic() + timeout_s
    while time.monotonic() < give_up_at:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return True
        await asyncio.sleep(interval_s)
    return False
