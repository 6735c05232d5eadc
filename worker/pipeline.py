"""The life of one record: decode, admit, look up, assemble, publish, finish.

`Pipeline.accept` is called by the consumer for every record and returns at
once; the rest runs in a task per record. The record's offset is marked
finished (and so becomes committable) only after its reply or dead letter is
durable on the broker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from schemas.replies import LookupReply
from worker.admit import Admission
from worker.assemble import assemble_reply, rejected_reply
from worker.batch import Batcher, CardOutcome
from worker.commit import Committer, Tracked
from worker.decode import DeadLetter, DecodeLimits, Rejection, Request, decode_record
from worker.errors import PublishFailed
from worker.metrics import Metrics
from worker.publish import Publisher
from worker.settings import Settings
from worker.tracing import Tracing

logger = logging.getLogger(__name__)


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        *,
        batcher: Batcher,
        publisher: Publisher,
        committer: Committer,
        admission: Admission,
        metrics: Metrics,
        tracing: Tracing | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._batcher = batcher
        self._publisher = publisher
        self._committer = committer
        self._admission = admission
        self._metrics = metrics
        self._tracing = tracing or Tracing.disabled()
        self._clock = clock
        self._limits = DecodeLimits(
            max_request_bytes=settings.max_request_bytes,
            card_number_max_length=settings.card_number_max_length,
            default_reply_topic=settings.reply_topic,
        )
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def accept(self, records: tuple[ConsumerRecord, ...] | list[ConsumerRecord]) -> None:
        """Take records from the consumer; each is served in its own task."""
        loop = asyncio.get_running_loop()
        for record in records:
            tracked = self._committer.track(TopicPartition(record.topic, record.partition), record.offset)
            if tracked is None:
                logger.debug(
                    "skipped a record of a partition no longer assigned; its new owner serves it",
                    extra={"topic": record.topic, "partition": record.partition, "offset": record.offset},
                )
                continue
            self._admission.admit()
            self._metrics.requests_consumed.inc()
            task = loop.create_task(self._serve_traced(record, tracked, self._clock()))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout_s: float) -> int:
        """Wait up to `timeout_s` for in-flight records; cancel the rest and return how many."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
        left = list(self._tasks)
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=1.0)
        return len(left)

    async def _serve_traced(self, record: ConsumerRecord, tracked: Tracked, received_at: float) -> None:
        # The reply is published inside this span, so it carries the request's trace.
        with self._tracing.record_span(record.topic, record.partition, record.offset, record.headers):
            await self._serve(record, tracked, received_at)

    async def _serve(self, record: ConsumerRecord, tracked: Tracked, received_at: float) -> None:
        context = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
        try:
            decoded = decode_record(record.value, record.headers, self._limits)
            if isinstance(decoded, DeadLetter):
                await self._dead_letter(record, decoded.reason, context)
            elif isinstance(decoded, Rejection):
                context["request_id"] = decoded.request_id
                logger.info("rejected request %r: %s", decoded.request_id, decoded.reason, extra=context)
                await self._reply(record, rejected_reply(decoded), decoded.reply_topic, decoded.correlation_id, context)
            else:
                context["request_id"] = decoded.request_id
                reply = await self._look_up(decoded, record, received_at)
                await self._reply(record, reply, decoded.reply_topic, decoded.correlation_id, context)
        except PublishFailed as exc:
            # Not durable: leave the offset uncommitted so the record is consumed again.
            logger.error("record left uncommitted: %s", exc, extra=context)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A bug must not stall the partition: the record goes to the
            # dead-letter topic with the error, and the partition moves on.
            logger.exception("unexpected error serving the record; sending it to the dead-letter topic", extra=context)
            try:
                await self._dead_letter(record, f"the worker failed to serve the record: {type(exc).__name__}: {exc}", context)
            except PublishFailed as publish_exc:
                logger.error("record left uncommitted: %s", publish_exc, extra=context)
                return
        finally:
            self._admission.release()
        self._committer.finish(tracked)

    async def _look_up(self, request: Request, record: ConsumerRecord, received_at: float) -> LookupReply:
        deadline = self._deadline(request, record, received_at)
        numbers = request.valid_card_numbers
        outcomes: dict[str, CardOutcome] = {}
        if numbers and self._clock() < deadline:
            futures = self._batcher.lookup(numbers, secondary=request.search_secondary, deadline=deadline)
            # The futures are shared with other requests: wait, never cancel them.
            await asyncio.wait(set(futures.values()), timeout=max(0.0, deadline - self._clock()))
            outcomes = {number: future.result() for number, future in futures.items() if future.done()}
        reply = assemble_reply(request, outcomes, timezone=self._settings.timezone)
        self._metrics.observe_reply(reply, latency_s=self._clock() - received_at)
        return reply

    def _deadline(self, request: Request, record: ConsumerRecord, received_at: float) -> float:
        """The request's deadline on the monotonic clock.

        An explicit `deadline_ms` counts from the message's timestamp, as the
        requester sees it; the default counts from when this worker took the
        record, so a backlog after an outage is not answered all expired.
        """
        if request.deadline_ms is None:
            return received_at + self._settings.request_default_deadline_ms / 1000
        expires_epoch = record.timestamp / 1000 + request.deadline_ms / 1000
        return self._clock() + (expires_epoch - time.time())

    async def _reply(self, record: ConsumerRecord, reply: LookupReply, topic: str, correlation_id: str | None, context: dict[str, Any]) -> None:
        try:
            await self._publisher.reply(reply, topic=topic, key=record.key, correlation_id=correlation_id)
        except PublishFailed as exc:
            if not exc.permanent:
                raise
            await self._dead_letter(record, f"the reply could not be published: {exc}", context)
            return
        self._metrics.replies_published.labels(status=reply.status.value).inc()
        logger.debug("replied %s to %r", reply.status.value, topic, extra=context)

    async def _dead_letter(self, record: ConsumerRecord, reason: str, context: dict[str, Any]) -> None:
        logger.warning("sending the record to the dead-letter topic: %s", reason, extra=context)
        await self._publisher.dead_letter(
            record.value,
            key=record.key,
            headers=record.headers,
            reason=reason,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
        )
        self._metrics.dead_letters.inc()
