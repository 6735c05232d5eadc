"""Wiring of metrics, health server, loop-lag monitor and tracing into one worker.

The worker calls `start()` first thing in its start (so liveness answers while
Kafka is still being reached), `on_assigned()` after each partition
assignment, and `stop()` last thing in its stop (so readiness reports
`draining` while in-flight requests finish).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from worker.health import HealthRoutes, HealthServer, consumer_connected
from worker.metrics import LoopLagMonitor, RuntimeSources, faststream_middleware

logger = logging.getLogger(__name__)


class Observability:
    """Metrics sources, the HTTP server and the tracing provider of one `Worker`."""

    def __init__(self, worker: Any, *, ephemeral_http_port: bool = False) -> None:
        self._worker = worker
        self.loop_lag = LoopLagMonitor()
        self.joined_at: float | None = None
        settings = worker.settings
        # http_port 0 disables the server; `ephemeral_http_port` (for tests)
        # serves on a free port chosen by the OS instead.
        self._http_port: int | None = 0 if ephemeral_http_port else (settings.http_port or None)
        self.server: HealthServer | None = None

        worker.client.on_call = worker.metrics.observe_api_call
        worker.metrics.runtime.watch(
            RuntimeSources(
                limiter_state=worker.limiter.snapshot,
                requests_in_flight=lambda: worker.pipeline.in_flight,
                admission_paused=lambda: worker.admission.paused,
                admission_pauses_total=lambda: worker.admission.pauses_total,
                consumer=lambda: getattr(worker.subscriber, "consumer", None),
                publish_retries_total=lambda: worker.publisher.retries_total,
                loop_lag_s=lambda: self.loop_lag.lag_s,
                cache_hits_total=lambda: worker.cache.hits,
                cache_entries=lambda: len(worker.cache),
            )
        )
        worker.broker.add_middleware(faststream_middleware(worker.metrics.registry))
        telemetry = worker.tracing.broker_middleware()
        if telemetry is not None:
            worker.broker.add_middleware(telemetry)

    @property
    def http_port(self) -> int | None:
        """The port the health and metrics server listens on; None when it is off or not started."""
        return self.server.port if self.server is not None else None

    def on_assigned(self) -> None:
        self.joined_at = time.time()

    def kafka_check(self) -> tuple[bool, str]:
        """Kafka part of readiness: the brokers answer metadata requests and the consumer joined its group."""
        if not self._worker.kafka_connected():
            return False, "the brokers do not answer metadata requests"
        consumer = getattr(self._worker.subscriber, "consumer", None)
        return consumer_connected(consumer, joined_at=self.joined_at)

    async def start(self) -> None:
        self.loop_lag.start()
        if self._http_port is None:
            logger.info("health and metrics server disabled (http_port is 0)")
            return
        routes = HealthRoutes(self._worker, self.loop_lag, self.kafka_check).routes()
        self.server = HealthServer(routes, host=self._worker.settings.http_host, port=self._http_port)
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        await self.loop_lag.stop()
        self._worker.tracing.shutdown()
