"""The health and metrics HTTP server: `/health/live`, `/health/ready` and `/metrics`.

The server is asyncio's `start_server` with a minimal HTTP/1.1 reader: three
GET routes need no framework, and running on the worker's own event loop is
what makes `/health/live` meaningful. Each connection serves one request and is
closed (`Connection: close`), which is all Kubernetes probes and Prometheus
need.

Readiness (`/health/ready`) is 200 when all three checks pass, else 503 with a
JSON body naming each check and its result:

- `state`: the worker is running (not starting, draining or stopped).
- `kafka`: the consumer joined its group and, unless every assigned partition
  is paused, fetched from the broker within `KAFKA_FETCH_STALE_S`.
- `api`: no API call has failed yet, or the last success is newer than the
  last failure or within `API_SUCCESS_RECENT_S`, or the limiter is paused by a
  429 or 503 (a known backoff, not an outage).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

logger = logging.getLogger(__name__)

# A consumer whose unpaused partitions got no fetch response for this long has
# lost the broker. While connected, aiokafka fetches every unpaused partition
# at least every `fetch_max_wait_ms` (500 ms by default).
KAFKA_FETCH_STALE_S = 30.0
# Failed API calls do not fail readiness while a call succeeded this recently.
API_SUCCESS_RECENT_S = 60.0
# `/health/live` fails when the event loop ran its periodic check this late.
LOOP_LAG_LIMIT_S = 5.0

REQUEST_READ_TIMEOUT_S = 5.0
MAX_REQUEST_LINE_BYTES = 8192
MAX_HEADER_LINES = 100

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"

    @classmethod
    def json(cls, status: int, document: dict[str, Any]) -> Response:
        return cls(status, json.dumps(document).encode() + b"\n")


Route = Callable[[], Awaitable[Response]]


class HealthServer:
    """Serves the GET routes on one host and port; port 0 picks a free port."""

    def __init__(self, routes: dict[str, Route], *, host: str, port: int) -> None:
        self._routes = routes
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int | None:
        """The port actually bound, once started."""
        if self._server is None or not self._server.sockets:
            return None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        logger.info("health and metrics server listening on %s:%d", self._host, self.port)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        logger.info("health and metrics server stopped")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            response, head_only = await self._respond(reader)
            writer.write(_encode(response, head_only=head_only))
            await writer.drain()
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, _HeadersTooLong):
            pass  # the client closed the connection or sent an incomplete or oversized request
        except Exception:
            logger.exception("the health and metrics server failed to respond to a request")
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[Response, bool]:
        request_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), REQUEST_READ_TIMEOUT_S)
        parts = request_line.decode("latin-1").split()
        if len(request_line) > MAX_REQUEST_LINE_BYTES or len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return _error(400, "invalid HTTP/1.x request line"), False
        method, target, _version = parts
        await self._skip_headers(reader)

        path = target.split("?", 1)[0]
        route = self._routes.get(path)
        if route is None:
            return _error(404, f"no route {path}; use {', '.join(sorted(self._routes))}"), False
        if method not in ("GET", "HEAD"):
            return _error(405, f"{method} is not allowed; use GET"), False
        return await route(), method == "HEAD"

    async def _skip_headers(self, reader: asyncio.StreamReader) -> None:
        for _ in range(MAX_HEADER_LINES):
            line = await asyncio.wait_for(reader.readuntil(b"\r\n"), REQUEST_READ_TIMEOUT_S)
            if line == b"\r\n":
                return
        raise _HeadersTooLong(f"more than {MAX_HEADER_LINES} header lines")


class _HeadersTooLong(Exception):
    """Raised when a request has more header lines than the server reads."""


def _error(status: int, message: str) -> Response:
    return Response.json(status, {"error": message})


def _encode(response: Response, *, head_only: bool) -> bytes:
    head = (
        f"HTTP/1.1 {response.status} {_REASONS.get(response.status, '')}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1")
    return head if head_only else head + response.body


# --- Checks ------------------------------------------------------------------


def consumer_connected(consumer: Any, *, joined_at: float | None, now: float | None = None) -> tuple[bool, str]:
    """Check that `consumer` joined its group and, if it fetches, fetched recently.

    `joined_at` is the `time.time()` of the last partition assignment, None
    before the first one. Returns (passed, detail).
    """
    if consumer is None:
        return False, "the consumer is not started"
    if joined_at is None:
        return False, "the consumer has not joined its group yet"
    now = time.time() if now is None else now
    assigned = consumer.assignment()
    active = set(assigned) - set(consumer.paused())
    if not active:
        return True, f"joined; {len(assigned)} partition(s) assigned, none fetching"
    if now - joined_at < KAFKA_FETCH_STALE_S:
        return True, f"joined; {len(active)} partition(s) fetching"
    last_fetch_ms = max((consumer.last_poll_timestamp(partition) or 0 for partition in active), default=0)
    silent_s = now - last_fetch_ms / 1000
    if silent_s > KAFKA_FETCH_STALE_S:
        return False, f"no fetch response from the broker for {silent_s:.0f}s"
    return True, f"joined; {len(active)} partition(s) fetching"


def api_reachable(
    *, last_success_at: float | None, last_failure_at: float | None, paused: bool, now: float
) -> tuple[bool, str]:
    """Check that an API call succeeded lately or the limiter is in a known backoff; times are on the client's clock."""
    if last_failure_at is None:
        return True, "no failed call" if last_success_at is not None else "no call made yet"
    if last_success_at is not None and last_success_at >= last_failure_at:
        return True, f"last call succeeded {now - last_success_at:.0f}s ago"
    if last_success_at is not None and now - last_success_at <= API_SUCCESS_RECENT_S:
        return True, f"a call succeeded {now - last_success_at:.0f}s ago"
    if paused:
        return True, "paused after a 429 or 503; calls resume when the pause ends"
    return False, f"the last call failed {now - last_failure_at:.0f}s ago and none succeeded since"


class HealthRoutes:
    """The three routes, bound to a worker."""

    def __init__(self, worker: Any, loop_lag: Any, kafka_check: Callable[[], tuple[bool, str]]) -> None:
        self._worker = worker
        self._loop_lag = loop_lag
        self._kafka_check = kafka_check

    def routes(self) -> dict[str, Route]:
        return {"/health/live": self.live, "/health/ready": self.ready, "/metrics": self.metrics}

    async def live(self) -> Response:
        # This handler running proves the event loop runs, and the lag shows whether it keeps up.
        lag_s = self._loop_lag.lag_s
        if lag_s > LOOP_LAG_LIMIT_S:
            return Response.json(503, {"status": "failed", "loop_lag_s": round(lag_s, 3)})
        return Response.json(200, {"status": "ok", "loop_lag_s": round(lag_s, 3)})

    async def ready(self) -> Response:
        worker = self._worker
        state = worker.state.value
        checks: dict[str, dict[str, Any]] = {
            "state": {"ok": state == "running", "detail": state},
        }

        kafka_ok, kafka_detail = self._kafka_check()
        checks["kafka"] = {"ok": kafka_ok, "detail": kafka_detail}

        client = worker.client
        api_ok, api_detail = api_reachable(
            last_success_at=client.last_success_at,
            last_failure_at=client.last_failure_at,
            paused=worker.limiter.snapshot().paused,
            now=time.monotonic(),
        )
        checks["api"] = {"ok": api_ok, "detail": api_detail}

        failed = [name for name, check in checks.items() if not check["ok"]]
        status = 503 if failed else 200
        return Response.json(status, {"status": "failed" if failed else "ok", "failed": failed, "checks": checks})

    async def metrics(self) -> Response:
        metrics = self._worker.metrics
        await metrics.refresh()
        return Response(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
