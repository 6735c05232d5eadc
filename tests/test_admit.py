"""Admission: partitions pause when the worker is full and resume when it has room again."""

from __future__ import annotations

from aiokafka import TopicPartition

from worker.admit import Admission

PARTITIONS = {TopicPartition("requests", 0), TopicPartition("requests", 1)}


class FakeConsumer:
    def __init__(self) -> None:
        self._paused: set[TopicPartition] = set()

    def assignment(self) -> set[TopicPartition]:
        return set(PARTITIONS)

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused.difference_update(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)


def test_pauses_when_full_and_resumes_at_half():
    consumer = FakeConsumer()
    admission = Admission(4, lambda: consumer)
    for _ in range(4):
        admission.admit()
    assert consumer.paused() == PARTITIONS

    admission.release()
    assert consumer.paused() == PARTITIONS, "resumed before dropping to half the limit"
    admission.release()
    assert consumer.paused() == set()
    assert admission.pauses_total == 1


def test_closed_admission_never_resumes():
    consumer = FakeConsumer()
    admission = Admission(2, lambda: consumer)
    admission.admit()
    admission.admit()
    admission.close()
    admission.release()
    admission.release()
    assert consumer.paused() == PARTITIONS
