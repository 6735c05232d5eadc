"""The worker: FastStream broker, subscriber and every stage of the data path, wired together.

    consume -> decode -> admit -> batch -> limit -> call -> assemble -> publish -> commit

Lifecycle: `start()` creates topics when asked, then starts the broker and
the commit loop; `stop()` stops fetching, drains in-flight requests within
`shutdown_timeout_s`, commits what finished, and closes every client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
from typing import Any

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError
from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.middlewares import AckPolicy
from faststream.specification import AsyncAPI

from schemas.replies import LookupReply
from schemas.requests import LookupRequest
from worker.admit import Admission
from worker.batch import Batcher
from worker.cache import CardCache
from worker.carecloud import CareCloudClient, card_number_url_bytes, cards_url_length
from worker.commit import Committer
from worker.connectivity import KafkaProbe, connect_with_backoff
from worker.kafka import admin_options, broker_security
from worker.limit import Limiter
from worker.metrics import Metrics
from worker.observability import Observability
from worker.pipeline import Pipeline
from worker.publish import Publisher
from worker.settings import Settings
from worker.tracing import Tracing

logger = logging.getLogger(__name__)

# Bound on waiting for revoked partitions' requests during a rebalance; the
# group waits for every member, so this must stay well under the group's
# rebalance timeout (`max.poll.interval.ms`).
REBALANCE_DRAIN_S = 10.0
# Producer batching. aiokafka keeps one open batch per partition, and every
# send to a partition whose batch is full waits until that batch is on the
# wire; with thousands of replies in flight, its default 16 KiB batches make
# those waits (and the wake-ups of every waiting task) the worker's main cost.
# 512 KiB stays under the broker's default `message.max.bytes` (1 MiB).
PRODUCER_MAX_BATCH_BYTES = 512 * 1024
PRODUCER_LINGER_MS = 5
# FastStream 0.7.8's batch subscriber sleeps for its poll timeout after every
# empty poll, without polling, so a record arriving then waits that long.
# 10 ms keeps that added latency small at the cost of ~50 idle wake-ups a second.
POLL_TIMEOUT_MS = 10
# Bound on the commit at shutdown: aiokafka retries a commit until the group
# coordinator responds, which never happens while the broker is down.
FINAL_COMMIT_TIMEOUT_S = 5.0


class State(enum.Enum):
    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"


class Worker:
    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
        ephemeral_http_port: bool = False,
    ) -> None:
        """`tracing` defaults to what the OTEL_* variables ask for; `ephemeral_http_port`
        (for tests) serves health and metrics on a free port even when http_port is 0."""
        self.settings = settings
        self.state = State.CREATED
        self.metrics = metrics or Metrics()
        self.tracing = tracing or Tracing.from_environment()

        self.broker = KafkaBroker(
            settings.kafka_bootstrap_servers,
            security=broker_security(settings),
            acks="all",
            enable_idempotence=True,
            max_batch_size=PRODUCER_MAX_BATCH_BYTES,
            linger_ms=PRODUCER_LINGER_MS,
            apply_types=False,
            client_id="card-lookup-worker",
            logger=logging.getLogger("faststream"),
            log_level=logging.DEBUG,
        )
        self.limiter = Limiter.from_settings(settings)
        self.cache = CardCache()
        self.client = CareCloudClient(settings, self.limiter, cache=self.cache)
        self.batcher = Batcher(
            self.client,
            max_cards=settings.batch_max_cards,
            max_url_bytes=settings.batch_max_url_bytes,
            linger_s=settings.batch_linger_ms / 1000,
            base_url_bytes=cards_url_length(settings.api_base_url, [], secondary=True),
            card_number_bytes=card_number_url_bytes,
            capacity=self._free_call_slots,
            on_batch=self.metrics.batch_size.observe,
            cache=self.cache,
        )
        self.committer = Committer(self._consumer, interval_s=settings.commit_interval_ms / 1000)
        self.admission = Admission(settings.max_in_flight_requests, self._consumer)
        self._stopping = asyncio.Event()
        self.publisher = Publisher(
            self._send,
            default_reply_topic=settings.reply_topic,
            dlq_topic=settings.dlq_topic,
            list_topics=self._list_topics,
            max_attempts=settings.publish_max_attempts,
            stopping=self._stopping,
        )
        self.pipeline = Pipeline(
            settings,
            batcher=self.batcher,
            publisher=self.publisher,
            committer=self.committer,
            admission=self.admission,
            metrics=self.metrics,
            tracing=self.tracing,
        )
        self._admin: AIOKafkaAdminClient | None = None
        self.probe = KafkaProbe(self._request_metadata)
        self._commit_task: asyncio.Task[None] | None = None
        self._probe_task: asyncio.Task[None] | None = None
        self.subscriber = self._subscribe()
        self._declare_publishers()
        self.observability = Observability(self, ephemeral_http_port=ephemeral_http_port)

    # --- Wiring --------------------------------------------------------------

    def _subscribe(self) -> Any:
        settings = self.settings
        subscriber = self.broker.subscriber(
            settings.request_topic,
            group_id=settings.consumer_group,
            batch=True,
            max_records=settings.max_poll_records,
            batch_timeout_ms=POLL_TIMEOUT_MS,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            max_poll_interval_ms=settings.max_poll_interval_ms,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=min(3000, settings.session_timeout_ms // 3),
            listener=_RebalanceListener(self),
            parser=_parse_without_headers,
            decoder=_raw_records,
            # The worker publishes its own replies. FastStream's automatic
            # response would send the handler's None to the first record's
            # `reply_to`, and block the consumer on a topic that does not exist.
            no_reply=True,
            title="card-lookup.requests",
            description="Card lookup requests. Each record is one request; replies go to its `reply_to` header's topic or the reply topic.",
        )

        pipeline = self.pipeline

        async def on_card_lookup_requests(body: list[LookupRequest]) -> None:
            # `body` is the batch of raw records: the decoder skips FastStream's
            # parsing so one bad record cannot fail its neighbours; the
            # annotation documents the payload in the AsyncAPI schema.
            if self._stopping.is_set():
                return  # not tracked, so not committed: the next owner takes them
            pipeline.accept(body)  # type: ignore[arg-type]

        subscriber(on_card_lookup_requests)
        return subscriber

    def _declare_publishers(self) -> None:
        """Declare the reply and dead-letter topics, so the AsyncAPI document shows them."""
        reply_publisher = self.broker.publisher(
            self.settings.reply_topic,
            title="card-lookup.replies",
            description="One reply per request, keyed like the request, with its correlation id.",
            schema=LookupReply,
        )
        dlq_publisher = self.broker.publisher(
            self.settings.dlq_topic,
            title="card-lookup.dlq",
            description="Records that could not be answered: original value, key and headers, plus x-dlq-* headers with the reason.",
            schema=bytes,
        )
        self._documented_publishers = (reply_publisher, dlq_publisher)

    def _free_call_slots(self) -> int:
        """Calls the limiter could start now: free slots under its cap, and tokens when a rate applies."""
        state = self.limiter.snapshot()
        if state.paused:
            return 0
        free = state.cap - state.in_flight - state.queued
        if state.tokens is not None:
            free = min(free, int(state.tokens))
        return max(0, free)

    def _consumer(self) -> Any:
        return getattr(self.subscriber, "consumer", None)

    async def _send(self, body: bytes, *, topic: str, key: bytes | None, headers: dict[str, str], correlation_id: str | None) -> None:
        await self.broker.publish(body, topic, key=key, headers=headers, correlation_id=correlation_id)

    async def _request_metadata(self) -> object:
        if self._admin is None:
            raise KafkaConnectionError("the admin client is not connected yet")
        return await self._admin.list_topics()

    async def _list_topics(self) -> set[str]:
        if self._admin is None:
            return set()
        return set(await self._admin.list_topics())

    # --- Lifecycle -----------------------------------------------------------

    def kafka_connected(self) -> bool:
        """Return whether the last metadata request to Kafka succeeded (checked every few seconds); feeds readiness."""
        return self.probe.connected

    async def start(self) -> None:
        """Connect to Kafka, retrying with backoff while it is unreachable, then start the commit loop."""
        self.state = State.STARTING
        await self.observability.start()
        await connect_with_backoff(self._start_admin, client_name="the admin client")
        await self.probe.check()
        if self.settings.create_topics:
            await self._create_topics()
        loop = asyncio.get_running_loop()
        self._commit_task = loop.create_task(self.committer.run())
        self._probe_task = loop.create_task(self.probe.run())

    async def _start_admin(self) -> None:
        admin = AIOKafkaAdminClient(**admin_options(self.settings))
        try:
            await admin.start()
        except BaseException:
            await admin.close()
            raise
        self._admin = admin

    async def after_start(self) -> None:
        self.state = State.RUNNING
        logger.info(
            "worker running: consuming %r as group %r, replying to %r",
            self.settings.request_topic,
            self.settings.consumer_group,
            self.settings.reply_topic,
        )

    async def stop(self) -> None:
        """Stop fetching, drain in-flight requests, commit, and close (the broker stops after this)."""
        if self.state in (State.DRAINING, State.STOPPED):
            return
        self.state = State.DRAINING
        self._stopping.set()
        self.admission.close()
        in_flight = self.pipeline.in_flight
        logger.info("stopping: draining %d request(s) in flight, for at most %.1fs", in_flight, self.settings.shutdown_timeout_s)
        abandoned = await self.pipeline.drain(self.settings.shutdown_timeout_s)
        if abandoned:
            logger.warning("%d request(s) did not finish before the shutdown timeout; they stay uncommitted", abandoned)
        await self.committer.commit_within(FINAL_COMMIT_TIMEOUT_S)
        for task in (self._commit_task, self._probe_task):
            if task is not None:
                task.cancel()
        await self.batcher.close()
        await self.client.aclose()
        if self._admin is not None:
            await self._admin.close()
        self.state = State.STOPPED
        await self.observability.stop()
        logger.info("worker stopped")

    async def _create_topics(self) -> None:
        assert self._admin is not None
        settings = self.settings
        for topic in (settings.request_topic, settings.reply_topic, settings.dlq_topic):
            try:
                await self._admin.create_topics(
                    [NewTopic(topic, settings.topic_partitions, settings.topic_replication_factor)]
                )
                logger.info("created topic %r with %d partition(s)", topic, settings.topic_partitions)
            except TopicAlreadyExistsError:
                continue
            except KafkaError as exc:
                logger.warning("could not create topic %r: %s", topic, exc)

    def create_app(self) -> FastStream:
        app = FastStream(
            self.broker,
            specification=AsyncAPI(
                title="Card lookup worker",
                version="0.1.0",
                description="Looks up CareCloud cards for requests on Kafka and replies per request.",
            ),
            logger=logging.getLogger("faststream.app"),
        )
        app.on_startup(self.start)
        app.after_startup(self.after_start)
        app.on_shutdown(self.stop)
        return app


class _RebalanceListener(ConsumerRebalanceListener):
    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            logger.info("partitions revoked: %s", _format_partitions(revoked))
            await self._worker.committer.revoke(revoked, timeout_s=REBALANCE_DRAIN_S)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        logger.info("partitions assigned: %s", _format_partitions(assigned))
        self._worker.committer.assign(assigned)
        self._worker.admission.on_assigned()
        self._worker.observability.on_assigned()


def _format_partitions(partitions: set[TopicPartition]) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in sorted(partitions)) or "none"


async def _parse_without_headers(records: tuple[ConsumerRecord, ...], original_parser: Any) -> Any:
    """Parse a batch with FastStream's parser, hiding the headers from it.

    FastStream 0.7.8 decodes every header as UTF-8, so one record with a
    binary header would fail its whole batch. `decode_record` checks the
    headers per record instead, from the untouched records in `raw_message`.
    """
    message = await original_parser(tuple(dataclasses.replace(record, headers=()) for record in records))
    message.raw_message = records
    return message


async def _raw_records(message: Any) -> Any:
    return message.raw_message


