"""Publishing replies and dead letters, retried until the broker acknowledges them.

The caller commits a record's offset only after `reply` or `dead_letter`
returns, so a reply that never became durable is never committed, and the
record is consumed again after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.errors import (
    InvalidTopicError,
    KafkaError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from schemas.dead_letter import DeadLetterHeaders
from schemas.replies import LookupReply
from worker.errors import PublishFailed

logger = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json"
RETRY_INITIAL_S = 0.1
RETRY_MAX_S = 5.0
TOPIC_CACHE_S = 30.0
# Maximum x-dlq-reason header length, in characters, because a reason can quote an error of any size.
MAX_REASON_CHARS = 1000

SendFunction = Callable[..., Awaitable[Any]]
ListTopics = Callable[[], Awaitable[set[str]]]


class Publisher:
    def __init__(
        self,
        send: SendFunction,
        *,
        default_reply_topic: str,
        dlq_topic: str,
        list_topics: ListTopics | None = None,
        max_attempts: int = 0,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self._send = send
        self._default_reply_topic = default_reply_topic
        self._dlq_topic = dlq_topic
        self._list_topics = list_topics
        self._max_attempts = max_attempts
        self._stopping = stopping or asyncio.Event()
        self._known_topics: set[str] = set()
        self._topics_checked_at = -TOPIC_CACHE_S
        self.retries_total = 0

    async def reply(
        self,
        reply: LookupReply,
        *,
        topic: str,
        key: bytes | None,
        correlation_id: str | None,
    ) -> None:
        """Publish `reply`; raise PublishFailed(permanent=True) if `topic` can never take it."""
        if topic != self._default_reply_topic:
            await self._check_topic_exists(topic)
        body = reply.model_dump_json(exclude_none=True).encode()
        headers = {"content-type": JSON_CONTENT_TYPE}
        await self._publish(body, topic=topic, key=key, headers=headers, correlation_id=correlation_id, what=f"reply {reply.request_id!r}")

    async def dead_letter(
        self,
        value: bytes | None,
        *,
        key: bytes | None,
        headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...],
        reason: str,
        source_topic: str,
        source_partition: int,
        source_offset: int,
    ) -> None:
        dlq_headers = {name: raw.decode("utf-8", "replace") for name, raw in headers or () if raw is not None}
        if "correlation_id" not in dlq_headers:
            dlq_headers[DeadLetterHeaders.NO_CORRELATION_ID] = "true"
        dlq_headers.update(
            {
                DeadLetterHeaders.REASON: _header_text(reason),
                DeadLetterHeaders.SOURCE_TOPIC: source_topic,
                DeadLetterHeaders.SOURCE_PARTITION: str(source_partition),
                DeadLetterHeaders.SOURCE_OFFSET: str(source_offset),
                DeadLetterHeaders.FAILED_AT: str(int(time.time() * 1000)),
            }
        )
        where = f"dead letter of {source_topic}[{source_partition}]@{source_offset}"
        try:
            await self._publish(value or b"", topic=self._dlq_topic, key=key, headers=dlq_headers, correlation_id=None, what=where)
        except PublishFailed as exc:
            if not exc.permanent:
                raise
            # Too large for the dead-letter topic: keep the reason and source
            # position, so the original can still be found on the request topic.
            logger.warning("the %s is too large; publishing it without the original value", where)
            dlq_headers[DeadLetterHeaders.REASON] = _header_text(f"{reason} (original value dropped: {exc})")
            await self._publish(b"", topic=self._dlq_topic, key=key, headers=dlq_headers, correlation_id=None, what=where)

    async def _check_topic_exists(self, topic: str) -> None:
        if self._list_topics is None or topic in self._known_topics:
            return
        now = time.monotonic()
        if now - self._topics_checked_at >= TOPIC_CACHE_S:
            try:
                self._known_topics = await self._list_topics()
                self._topics_checked_at = now
            except KafkaError as exc:
                logger.warning("could not list topics to check reply_to %r; publishing anyway: %s", topic, exc)
                return
        if topic not in self._known_topics:
            raise PublishFailed(f"the reply_to topic {topic!r} does not exist; create it or drop the header", permanent=True)

    async def _publish(self, body: bytes, *, topic: str, key: bytes | None, headers: dict[str, str], correlation_id: str | None, what: str) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._send(body, topic=topic, key=key, headers=headers, correlation_id=correlation_id)
                return
            except RecordTooLargeError as exc:
                # Retrying cannot make the message smaller.
                raise PublishFailed(f"the {what} is larger than {topic!r} accepts: {type(exc).__name__}", permanent=True) from exc
            except (UnknownTopicOrPartitionError, TopicAuthorizationFailedError, InvalidTopicError) as exc:
                # A configured topic that is missing or forbidden is an operator's
                # problem: retry until it is fixed. A requester's reply_to is not.
                if topic != self._default_reply_topic and topic != self._dlq_topic:
                    raise PublishFailed(f"cannot publish to {topic!r}: {type(exc).__name__}", permanent=True) from exc
                error: Exception = exc
            except KafkaError as exc:
                error = exc

            if self._max_attempts and attempt >= self._max_attempts:
                raise PublishFailed(f"gave up publishing the {what} after {attempt} attempts: {error}", permanent=False) from error
            if self._stopping.is_set() and attempt > 1:
                raise PublishFailed(f"stopped while publishing the {what}: {error}", permanent=False) from error
            delay = min(RETRY_MAX_S, RETRY_INITIAL_S * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)
            self.retries_total += 1
            logger.warning("publishing the %s to %r failed (attempt %d), retrying in %.2fs: %s", what, topic, attempt, delay, error)
            await asyncio.sleep(delay)


def _header_text(text: str) -> str:
    """Cut `text` to MAX_REASON_CHARS and escape lone surrogates, which UTF-8 header values cannot carry."""
    if len(text) > MAX_REASON_CHARS:
        text = text[:MAX_REASON_CHARS] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
