"""Admission: a bounded number of requests in flight, enforced by pausing partitions.

The consumer keeps polling while partitions are paused, so it keeps its group
membership (`max.poll.interval.ms`) however long the API stays slow, and the
worker's memory stays bounded however large the backlog on the topic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Admission:
    def __init__(self, max_in_flight: int, consumer: Callable[[], object | None], *, resume_ratio: float = 0.5) -> None:
        self.max_in_flight = max_in_flight
        # Resume well below the limit so partitions are not paused and
        # resumed on every single request near the limit.
        self._resume_at = max(0, int(max_in_flight * resume_ratio))
        self._consumer = consumer
        self.in_flight = 0
        self.paused = False
        self.pauses_total = 0
        self._closed = False

    def admit(self) -> None:
        self.in_flight += 1
        if not self.paused and self.in_flight >= self.max_in_flight:
            self._pause()

    def release(self) -> None:
        self.in_flight -= 1
        if self.paused and not self._closed and self.in_flight <= self._resume_at:
            self._resume()

    def close(self) -> None:
        """Pause every partition for good: the worker is stopping and takes no more records."""
        self._closed = True
        self._pause()

    def on_assigned(self) -> None:
        """Pause newly assigned partitions too while the worker is full."""
        if self.paused:
            self._pause()

    def _pause(self) -> None:
        consumer = self._consumer()
        if consumer is None:
            return
        partitions = consumer.assignment()  # type: ignore[attr-defined]
        consumer.pause(*partitions)  # type: ignore[attr-defined]
        if not self.paused:
            self.pauses_total += 1
            logger.info("paused %d partition(s): %d requests in flight", len(partitions), self.in_flight)
        self.paused = True

    def _resume(self) -> None:
        consumer = self._consumer()
        self.paused = False
        if consumer is None:
            return
        partitions = consumer.paused()  # type: ignore[attr-defined]
        consumer.resume(*partitions)  # type: ignore[attr-defined]
        logger.info("resumed %d partition(s): %d requests in flight", len(partitions), self.in_flight)
