"""Offset tracking: a partition commits only up to its lowest offset still in flight."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

from worker.commit import Committer, PartitionOffsets

PARTITION = TopicPartition("requests", 0)


def test_nothing_tracked_has_no_position():
    assert PartitionOffsets().committable() is None


def test_out_of_order_finish_waits_for_lowest():
    offsets = PartitionOffsets()
    for offset in (10, 11, 12):
        offsets.track(offset)

    offsets.finish(12)
    assert offsets.committable() == 10
    offsets.finish(11)
    assert offsets.committable() == 10
    offsets.finish(10)
    assert offsets.committable() == 13
    assert offsets.in_flight == 0


def test_gap_in_offsets_commits_past_highest():
    # Compacted topics and transaction markers leave gaps between offsets.
    offsets = PartitionOffsets()
    offsets.track(5)
    offsets.track(9)
    offsets.finish(5)
    assert offsets.committable() == 9
    offsets.finish(9)
    assert offsets.committable() == 10


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


async def test_committer_commits_only_finished_prefix():
    consumer = FakeConsumer()
    committer = Committer(lambda: consumer, interval_s=0.01)
    committer.assign([PARTITION])
    tracked = [committer.track(PARTITION, offset) for offset in range(5)]
    for offset in (0, 1, 3):
        committer.finish(tracked[offset])

    await committer.commit()
    assert consumer.commits == [{PARTITION: 2}]

    await committer.commit()
    assert len(consumer.commits) == 1, "an unchanged position was committed again"


async def test_revoked_partition_results_are_not_committed():
    consumer = FakeConsumer()
    committer = Committer(lambda: consumer, interval_s=0.01)
    committer.assign([PARTITION])
    first = committer.track(PARTITION, 0)
    second = committer.track(PARTITION, 1)
    committer.finish(first)

    await committer.revoke({PARTITION}, timeout_s=0.05)
    assert consumer.commits == [{PARTITION: 1}]

    committer.assign([PARTITION])
    committer.finish(second)
    await committer.commit()
    assert consumer.commits == [{PARTITION: 1}], "a result of a revoked partition was committed"


def test_unassigned_partition_is_not_tracked():
    committer = Committer(lambda: None, interval_s=0.01)
    assert committer.track(PARTITION, 0) is None


@pytest.mark.parametrize("finish_order", [[0, 1, 2], [2, 1, 0], [1, 2, 0]])
async def test_revoke_waits_for_in_flight_work(finish_order):
    consumer = FakeConsumer()
    committer = Committer(lambda: consumer, interval_s=0.01)
    committer.assign([PARTITION])
    tracked = [committer.track(PARTITION, offset) for offset in range(3)]

    async def finish_later() -> None:
        for offset in finish_order:
            await asyncio.sleep(0.01)
            committer.finish(tracked[offset])

    task = asyncio.create_task(finish_later())
    await committer.revoke({PARTITION}, timeout_s=5)
    await task
    assert consumer.commits == [{PARTITION: 3}]
