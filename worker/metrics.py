"""Prometheus metrics of the worker, on a registry of its own per worker instance.

Counters and histograms are updated where things happen (pipeline, batcher,
CareCloud client). State that already lives elsewhere (the limiter, admission,
requests in flight, consumer lag) is read when Prometheus scrapes, by
`RuntimeCollector`, so no loop polls it and the numbers are never stale.
docs/metrics.md lists every metric.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from schemas.replies import LookupReply
from worker.limit import LimiterState

logger = logging.getLogger(__name__)

PREFIX = "card_lookup"
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)

# `AIOKafkaConsumer.position()` waits only when a partition has no position yet
# (just assigned, or offsets being reset). A scrape skips such a partition
# after this many seconds.
POSITION_TIMEOUT_S = 0.2


class Metrics:
    """The worker's counters and histograms, plus the collector of its runtime state."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests_consumed = Counter(
            f"{PREFIX}_requests_consumed", "Request records taken from Kafka.", registry=r
        )
        self.replies_published = Counter(
            f"{PREFIX}_replies_published", "Replies published, by request status.", ["status"], registry=r
        )
        self.card_results = Counter(
            f"{PREFIX}_card_results", "Card results in replies, by status.", ["status"], registry=r
        )
        self.dead_letters = Counter(
            f"{PREFIX}_dead_letters", "Records sent to the dead-letter topic.", registry=r
        )
        self.request_latency = Histogram(
            f"{PREFIX}_request_latency_seconds",
            "Time from taking a record to its reply being assembled, in seconds.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.api_calls = Counter(
            f"{PREFIX}_api_calls",
            "CareCloud API calls, by endpoint and HTTP status (or timeout, connection_error).",
            ["endpoint", "status"],
            registry=r,
        )
        self.api_latency = Histogram(
            f"{PREFIX}_api_latency_seconds",
            "CareCloud API call latency by endpoint, in seconds, failed calls included.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_batch_card_numbers",
            "Card numbers per GET /cards call.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.runtime = RuntimeCollector()
        r.register(self.runtime)

    def observe_reply(self, reply: LookupReply, *, latency_s: float) -> None:
        self.request_latency.observe(latency_s)
        for result in reply.results:
            self.card_results.labels(status=result.status.value).inc()

    def observe_api_call(self, endpoint: str, status: str, latency_s: float) -> None:
        """Count one API call; `status` is the HTTP status code or `timeout` / `connection_error`."""
        self.api_calls.labels(endpoint=endpoint, status=status).inc()
        self.api_latency.labels(endpoint=endpoint).observe(latency_s)

    async def refresh(self) -> None:
        """Read what needs awaiting (consumer positions) before a scrape."""
        await self.runtime.refresh_lag()


@dataclass
class RuntimeSources:
    """Callables that return the worker's live state; the worker provides them once it is built."""

    limiter_state: Callable[[], LimiterState]
    requests_in_flight: Callable[[], int]
    admission_paused: Callable[[], bool]
    admission_pauses_total: Callable[[], int]
    consumer: Callable[[], Any]
    publish_retries_total: Callable[[], int]
    loop_lag_s: Callable[[], float]
    cache_hits_total: Callable[[], int]
    cache_entries: Callable[[], int]


class RuntimeCollector(Collector):
    """Metrics read from the worker's state at scrape time."""

    def __init__(self) -> None:
        self._sources: RuntimeSources | None = None
        self._lag: dict[TopicPartition, int] = {}

    def watch(self, sources: RuntimeSources) -> None:
        self._sources = sources

    async def refresh_lag(self) -> None:
        """Compute highwater - position for each assigned partition whose highwater is known."""
        consumer = self._sources.consumer() if self._sources else None
        if consumer is None:
            self._lag = {}
            return
        lag: dict[TopicPartition, int] = {}
        for partition in consumer.assignment():
            highwater = consumer.highwater(partition)
            if highwater is None:
                continue  # nothing fetched yet for this partition
            try:
                position = await asyncio.wait_for(consumer.position(partition), POSITION_TIMEOUT_S)
            except (TimeoutError, IllegalStateError, KafkaError):
                continue  # unassigned meanwhile or no position yet: leave it out of this scrape
            lag[partition] = max(0, highwater - position)
        self._lag = lag

    def describe(self) -> list[Metric]:
        # Without `describe`, registering would call `collect` before the worker is wired.
        return []

    def collect(self) -> Iterator[Metric]:
        sources = self._sources
        if sources is None:
            return
        yield from _limiter_metrics(sources.limiter_state())
        yield _gauge("requests_in_flight", "Requests taken from Kafka whose reply is not yet durable.", sources.requests_in_flight())
        yield _gauge("admission_paused", "1 while admission pauses every assigned partition (too many requests in flight).", int(sources.admission_paused()))
        yield _counter("admission_pauses", "Times admission paused the assigned partitions.", sources.admission_pauses_total())
        yield _counter("publish_retries", "Retried publishes of replies and dead letters.", sources.publish_retries_total())
        yield _counter("cache_hits", "Card numbers answered from results the API marked reusable.", sources.cache_hits_total())
        yield _gauge("cache_entries", "Card numbers held in the result cache.", sources.cache_entries())
        yield _gauge("event_loop_lag_seconds", "How late the event loop ran the last periodic check, in seconds.", sources.loop_lag_s())
        yield from self._consumer_metrics(sources.consumer())

    def _consumer_metrics(self, consumer: Any) -> Iterator[Metric]:
        paused = len(consumer.paused()) if consumer is not None else 0
        assigned = len(consumer.assignment()) if consumer is not None else 0
        yield _gauge("assigned_partitions", "Partitions of the request topic assigned to this worker.", assigned)
        yield _gauge("paused_partitions", "Assigned partitions the consumer has paused (admission or shutdown).", paused)
        lag = GaugeMetricFamily(
            f"{PREFIX}_consumer_lag",
            "Records on the partition not yet taken by the worker: highwater minus position, at scrape time.",
            labels=["topic", "partition"],
        )
        for partition, records in sorted(self._lag.items()):
            lag.add_metric([partition.topic, str(partition.partition)], records)
        yield lag


def _limiter_metrics(state: LimiterState) -> Iterator[Metric]:
    yield _gauge("api_concurrency_cap", "API calls the limiter lets run at once now (1 while probing).", state.cap)
    yield _gauge("api_concurrency_target_cap", "In-flight cap the adaptive limiter grows back to.", state.target_cap)
    yield _gauge("api_calls_in_flight", "API calls holding a limiter permit.", state.in_flight)
    yield _gauge("api_calls_queued", "API calls waiting for a limiter permit.", state.queued)
    if state.tokens is not None:
        yield _gauge("api_rate_tokens", "Tokens in the limiter's bucket (only while a rate applies).", state.tokens)
    if state.rate_per_s is not None:
        yield _gauge("api_rate_per_second", "Call rate the limiter enforces: configured, else learned from 429s.", state.rate_per_s)
    yield _gauge("api_paused", "1 while every API call is paused after a 429 or 503.", int(state.paused))
    yield _gauge("api_pause_remaining_seconds", "Seconds left in the current API pause, 0 when not paused.", state.pause_remaining_s)
    yield _gauge("api_probing", "1 while a single probe call tests the API after a pause.", int(state.probing))
    yield _counter("api_rate_limited", "API answers of 429 Too Many Requests.", state.rate_limited_total)
    yield _counter("api_server_errors", "API answers of 500, 502, 503 or 504.", state.server_errors_total)
    yield _counter("api_timeouts", "API calls that timed out or failed to connect.", state.timeouts_total)
    yield _counter("api_retries", "API calls retried after a 429, 5xx or timeout.", state.retries_total)
    yield _counter("api_pauses", "Pauses of every API call after a 429 or 503.", state.pauses_total)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


class LoopLagMonitor:
    """Measures how late the event loop wakes a task that sleeps `interval_s`."""

    def __init__(self, interval_s: float = 0.5, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.lag_s = 0.0
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None

    async def _run(self) -> None:
        while True:
            started = self._clock()
            await asyncio.sleep(self.interval_s)
            self.lag_s = max(0.0, self._clock() - started - self.interval_s)


def faststream_middleware(registry: CollectorRegistry) -> Any:
    """FastStream's Prometheus middleware on the worker's registry.

    Its consume metrics say little here, because the subscriber's handler only
    hands the batch to the pipeline and returns. Its publish metrics are why it
    is installed: every reply and dead letter goes through `broker.publish`, so
    `faststream_published_messages_*` gives publish latency and failures per
    destination topic, which the worker's own metrics do not.
    """
    from faststream.kafka.prometheus import KafkaPrometheusMiddleware

    return KafkaPrometheusMiddleware(registry=registry, app_name="card-lookup-worker")
