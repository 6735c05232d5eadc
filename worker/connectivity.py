"""Kafka connectivity: connecting at start with backoff, and a probe that feeds readiness.

aiokafka reconnects on its own after a broker outage, so the worker never
exits for one. These helpers only decide when to report the worker unready
and make the start survive a broker that is not up yet.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from aiokafka.errors import KafkaError

logger = logging.getLogger(__name__)

CONNECT_RETRY_INITIAL_S = 0.5
CONNECT_RETRY_MAX_S = 15.0
PROBE_INTERVAL_S = 2.0
# A metadata request to a reachable broker takes milliseconds; past this the
# broker counts as unreachable.
PROBE_TIMEOUT_S = 5.0


async def connect_with_backoff(connect: Callable[[], Awaitable[None]], *, client_name: str) -> None:
    """Call `connect` until it succeeds, waiting longer after each KafkaError (capped at CONNECT_RETRY_MAX_S).

    Cancel the caller to give up, for example on SIGTERM.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            await connect()
        except (KafkaError, OSError) as exc:
            delay = min(CONNECT_RETRY_MAX_S, CONNECT_RETRY_INITIAL_S * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)
            logger.warning("connecting %s to Kafka failed (attempt %d), retrying in %.1fs: %s", client_name, attempt, delay, exc)
            await asyncio.sleep(delay)
            continue
        if attempt > 1:
            logger.info("connected %s to Kafka after %d attempts", client_name, attempt)
        return


class KafkaProbe:
    """Periodic metadata requests that show whether the brokers respond."""

    def __init__(self, request_metadata: Callable[[], Awaitable[object]], *, interval_s: float = PROBE_INTERVAL_S) -> None:
        self._request_metadata = request_metadata
        self._interval_s = interval_s
        self.connected = False
        self.failures_total = 0

    async def check(self) -> bool:
        """Send one metadata request and record whether it succeeded."""
        try:
            await asyncio.wait_for(self._request_metadata(), timeout=PROBE_TIMEOUT_S)
        except (KafkaError, OSError, TimeoutError) as exc:
            self.failures_total += 1
            if self.connected:
                logger.warning("lost the connection to Kafka; reporting unready until it responds again: %r", exc)
            self.connected = False
            return False
        if not self.connected:
            logger.info("Kafka responds; reporting ready")
        self.connected = True
        return True

    async def run(self) -> None:
        """Check every `interval_s` until cancelled."""
        while True:
            await self.check()
            await asyncio.sleep(self._interval_s)
