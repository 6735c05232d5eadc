"""Offset tracking and commits: at-least-once delivery, one place for the commit path.

A record's offset becomes committable only after its reply (or dead-letter
copy) is acknowledged by the broker. Requests finish out of order, so each
partition commits up to the lowest offset still in flight, never past it.
Auto-commit is off: FastStream's `ack()` would commit every consumed position
of the consumer, including records still in flight.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable, Iterable

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

logger = logging.getLogger(__name__)


class PartitionOffsets:
    """In-flight offsets of one partition and the position that is safe to commit."""

    def __init__(self) -> None:
        self._in_flight: list[int] = []  # min-heap; finished offsets are removed lazily
        self._finished: set[int] = set()
        self._next_offset: int | None = None  # one past the highest offset seen

    def track(self, offset: int) -> None:
        heapq.heappush(self._in_flight, offset)
        if self._next_offset is None or offset >= self._next_offset:
            self._next_offset = offset + 1

    def finish(self, offset: int) -> None:
        self._finished.add(offset)
        while self._in_flight and self._in_flight[0] in self._finished:
            self._finished.discard(heapq.heappop(self._in_flight))

    @property
    def in_flight(self) -> int:
        return len(self._in_flight) - len(self._finished)

    def committable(self) -> int | None:
        """The offset to commit: the lowest in flight, or one past the last seen when none is."""
        if self._in_flight:
            return self._in_flight[0]
        return self._next_offset


class Committer:
    """Tracks offsets per partition and commits them through the consumer."""

    def __init__(self, consumer: Callable[[], object | None], *, interval_s: float) -> None:
        self._consumer = consumer
        self._interval_s = interval_s
        self._partitions: dict[TopicPartition, PartitionOffsets] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self.commits_total = 0

    def track(self, partition: TopicPartition, offset: int) -> None:
        self._partitions.setdefault(partition, PartitionOffsets()).track(offset)

    def finish(self, partition: TopicPartition, offset: int) -> None:
        offsets = self._partitions.get(partition)
        if offsets is None:
            # The partition was revoked while this request ran; its new owner
            # redoes the record, so this result must not be committed here.
            return
        offsets.finish(offset)
        self._changed.set()

    def in_flight(self, partitions: Iterable[TopicPartition] | None = None) -> int:
        chosen = self._partitions if partitions is None else {p: self._partitions[p] for p in partitions if p in self._partitions}
        return sum(offsets.in_flight for offsets in chosen.values())

    def committed(self) -> dict[TopicPartition, int]:
        return dict(self._committed)

    async def commit(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Commit the safe position of `partitions` (all tracked ones by default)."""
        consumer = self._consumer()
        if consumer is None:
            return
        async with self._lock:
            wanted = list(self._partitions) if partitions is None else list(partitions)
            offsets = {}
            for partition in wanted:
                tracked = self._partitions.get(partition)
                position = tracked.committable() if tracked else None
                if position is not None and position > self._committed.get(partition, -1):
                    offsets[partition] = position
            if not offsets:
                return
            try:
                await consumer.commit(offsets)  # type: ignore[attr-defined]
            except (CommitFailedError, IllegalStateError) as exc:
                # A rebalance took the partitions away; their new owner redoes the work.
                logger.warning("commit of %d partition(s) failed during a rebalance: %s", len(offsets), exc)
                return
            except KafkaError as exc:
                logger.warning("commit failed, retrying at the next interval: %s", exc)
                return
            self._committed.update(offsets)
            self.commits_total += 1

    async def run(self) -> None:
        """Commit every interval while offsets move; runs until cancelled."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            await self.commit()
            await asyncio.sleep(self._interval_s)

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        for partition in partitions:
            self._partitions.setdefault(partition, PartitionOffsets())

    async def revoke(self, partitions: Iterable[TopicPartition], *, timeout_s: float) -> None:
        """Wait (bounded) for the partitions' requests, commit what finished, and forget them."""
        revoked = [partition for partition in partitions if partition in self._partitions]
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + timeout_s
        while self.in_flight(revoked) and loop.time() < give_up_at:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=max(0.0, give_up_at - loop.time()))
            except TimeoutError:
                break
        left = self.in_flight(revoked)
        if left:
            logger.warning("%d request(s) of revoked partitions did not finish within %.1fs; their new owner redoes them", left, timeout_s)
        await self.commit(revoked)
        for partition in revoked:
            self._partitions.pop(partition, None)
            self._committed.pop(partition, None)
