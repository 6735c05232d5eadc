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
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Tracked:
    """A record being served: its offset and the partition assignment it was consumed in."""

    partition: TopicPartition
    offset: int
    offsets: PartitionOffsets


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

    def track(self, partition: TopicPartition, offset: int) -> Tracked | None:
        """Start tracking a consumed record; return None when its partition is not assigned to this worker.

        A record fetched just before its partition was revoked arrives after
        `revoke`; the partition's new owner redoes it, so it is not served here.
        """
        offsets = self._partitions.get(partition)
        if offsets is None:
            return None
        offsets.track(offset)
        return Tracked(partition, offset, offsets)

    def finish(self, tracked: Tracked) -> None:
        """Mark the record's reply durable, so its offset may be committed."""
        if self._partitions.get(tracked.partition) is not tracked.offsets:
            # The partition was revoked while this request ran (and may be
            # assigned here again since); the owner of the new assignment
            # redoes the record, so this result must not move its position.
            return
        tracked.offsets.finish(tracked.offset)
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
                # Without this the loop would wait for the next finished
                # record, and a quiet partition would stay uncommitted.
                self._changed.set()
                logger.warning("commit of %d partition(s) failed, retrying at the next interval: %s", len(offsets), exc)
                return
            self._committed.update(offsets)
            self.commits_total += 1

    async def commit_within(self, timeout_s: float) -> bool:
        """Commit every tracked partition, giving up after `timeout_s`; return whether the commit finished.

        aiokafka retries a commit until the group coordinator answers, so an
        unbounded commit would hang a shutdown while the broker is down.
        """
        try:
            await asyncio.wait_for(self.commit(), timeout=timeout_s)
        except TimeoutError:
            logger.warning("the final commit did not finish within %.1fs; uncommitted records will be redone", timeout_s)
            return False
        return True

    async def run(self) -> None:
        """Commit every interval while offsets move; runs until cancelled."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            await self.commit()
            await asyncio.sleep(self._interval_s)

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Start a fresh assignment: the consumer resumes each partition from its committed offset."""
        for partition in partitions:
            self._partitions[partition] = PartitionOffsets()
            self._committed.pop(partition, None)

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
