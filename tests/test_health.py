"""The health and metrics HTTP server: routes, readiness checks, and a worker's whole life."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.harness import ReplyCollector, RequestSender, wait_until
from tests.serving import serving_worker
from worker.health import (
    API_SUCCESS_RECENT_S,
    KAFKA_FETCH_STALE_S,
    HealthServer,
    Response,
    api_reachable,
    consumer_connected,
)
from worker.runtime import State

# --- The server on its own ---------------------------------------------------


async def _ok() -> Response:
    return Response.json(200, {"status": "ok"})


@pytest.fixture
async def server() -> AsyncIterator[HealthServer]:
    started = HealthServer({"/ok": _ok}, host="127.0.0.1", port=0)
    await started.start()
    yield started
    await started.stop()


async def _raw_exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    return response


async def test_server_answers_known_route(server):
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{server.port}/ok?probe=1")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["connection"] == "close"


async def test_server_unknown_route_404(server):
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{server.port}/nope")
    assert response.status_code == 404
    assert "/ok" in response.json()["error"]


async def test_server_post_405(server):
    async with httpx.AsyncClient() as client:
        response = await client.post(f"http://127.0.0.1:{server.port}/ok", content=b"")
    assert response.status_code == 405


async def test_server_head_has_no_body(server):
    raw = await _raw_exchange(server.port, b"HEAD /ok HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert body == b""


async def test_server_garbage_request_400(server):
    raw = await _raw_exchange(server.port, b"hello\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400 Bad Request")


async def test_server_survives_client_hangup(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /ok HTTP/1.1\r\n")
    writer.close()
    await writer.wait_closed()
    raw = await _raw_exchange(server.port, b"GET /ok HTTP/1.1\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 OK")


# --- Check logic -------------------------------------------------------------


def test_api_reachable_before_any_call():
    ok, detail = api_reachable(last_success_at=None, last_failure_at=None, paused=False, now=100.0)
    assert ok
    assert detail == "no call made yet"


def test_api_reachable_success_after_failure():
    ok, _ = api_reachable(last_success_at=50.0, last_failure_at=40.0, paused=False, now=1000.0)
    assert ok


def test_api_reachable_recent_success_tolerates_failure():
    ok, _ = api_reachable(last_success_at=100.0, last_failure_at=120.0, paused=False, now=100.0 + API_SUCCESS_RECENT_S)
    assert ok


def test_api_unreachable_after_old_success():
    ok, detail = api_reachable(last_success_at=100.0, last_failure_at=120.0, paused=False, now=200.0 + API_SUCCESS_RECENT_S)
    assert not ok
    assert "failed" in detail


def test_api_reachable_while_paused():
    ok, detail = api_reachable(last_success_at=None, last_failure_at=120.0, paused=True, now=10_000.0)
    assert ok
    assert "paused" in detail


class _FakeConsumer:
    def __init__(self, assigned: set[int], paused: set[int], fetched_ms: int | None) -> None:
        self._assigned = assigned
        self._paused = paused
        self._fetched_ms = fetched_ms

    def assignment(self) -> set[int]:
        return self._assigned

    def paused(self) -> set[int]:
        return self._paused

    def last_poll_timestamp(self, partition: int) -> int | None:
        return self._fetched_ms


def test_consumer_not_joined_unready():
    ok, detail = consumer_connected(_FakeConsumer(set(), set(), None), joined_at=None, now=1000.0)
    assert not ok
    assert "joined" in detail


def test_consumer_without_partitions_ready():
    ok, _ = consumer_connected(_FakeConsumer(set(), set(), None), joined_at=10.0, now=1000.0)
    assert ok


def test_consumer_silent_fetches_unready():
    stale_ms = int((1000.0 - KAFKA_FETCH_STALE_S - 5) * 1000)
    ok, detail = consumer_connected(_FakeConsumer({0, 1}, set(), stale_ms), joined_at=10.0, now=1000.0)
    assert not ok
    assert "no fetch response" in detail


def test_consumer_all_paused_ready():
    ok, _ = consumer_connected(_FakeConsumer({0, 1}, {0, 1}, 0), joined_at=10.0, now=1000.0)
    assert ok


def test_consumer_recent_fetch_ready():
    ok, _ = consumer_connected(_FakeConsumer({0, 1}, {0}, 999_000), joined_at=10.0, now=1000.0)
    assert ok


# --- A real worker -----------------------------------------------------------


@pytest.mark.kafka
async def test_worker_live_and_ready(topics, simulator):
    async with serving_worker(topics, simulator) as (worker, base_url), httpx.AsyncClient(base_url=base_url) as client:
        live = await client.get("/health/live")
        assert live.status_code == 200
        assert live.json()["status"] == "ok"

        ready = await wait_until(lambda: _status(client, "/health/ready", 200), timeout_s=30)
        body = (await client.get("/health/ready")).json()
        assert ready, f"never ready: {body}"
        assert body["failed"] == []
        assert set(body["checks"]) == {"state", "kafka", "api"}


@pytest.mark.kafka
async def test_worker_unready_when_api_down(topics, simulator, monkeypatch):
    # With no grace window, one failed call after the last success fails the api check.
    monkeypatch.setattr("worker.health.API_SUCCESS_RECENT_S", 0.0)
    async with serving_worker(topics, simulator, api_max_attempts=1) as (worker, base_url):
        async with httpx.AsyncClient(base_url=base_url) as client, RequestSender(topics.requests) as sender:
            async with ReplyCollector(topics.replies) as replies:
                await sender.send_requests([("api-up", ["1000000000016"])])
                assert not await replies.wait_for(["api-up"], timeout_s=30)
                assert await wait_until(lambda: _status(client, "/health/ready", 200), timeout_s=30)

                simulator.set_faults(fail_next={"status": 500, "count": 1000})
                await sender.send_requests([("api-down", ["2000000000025"])])
                assert not await replies.wait_for(["api-down"], timeout_s=30)

            response = await client.get("/health/ready")
            body = response.json()
            assert response.status_code == 503, body
            assert body["failed"] == ["api"]
            assert body["checks"]["kafka"]["ok"] is True

            simulator.reset_faults()
            async with ReplyCollector(topics.replies) as replies:
                await sender.send_requests([("api-back", ["1000000000016"])])
                assert not await replies.wait_for(["api-back"], timeout_s=30)
            assert (await client.get("/health/ready")).status_code == 200


@pytest.mark.kafka
async def test_worker_unready_while_draining(topics, simulator):
    async with serving_worker(topics, simulator) as (worker, base_url), httpx.AsyncClient(base_url=base_url) as client:
        assert await wait_until(lambda: _status(client, "/health/ready", 200), timeout_s=30)
        simulator.set_faults(latency_ms=1500)
        async with RequestSender(topics.requests) as sender:
            await sender.send_requests([("slow", ["1000000000016"])])
        assert await wait_until(lambda: worker.pipeline.in_flight > 0, timeout_s=30)

        stopping = asyncio.create_task(worker.stop())
        assert await wait_until(lambda: worker.state is State.DRAINING, timeout_s=5)
        response = await client.get("/health/ready")
        await stopping
    assert response.status_code == 503
    assert response.json()["checks"]["state"] == {"ok": False, "detail": "draining"}


@pytest.mark.kafka
async def test_worker_port_zero_serves_nothing(topics, simulator, start_worker):
    worker = await start_worker.start(topics, simulator)
    assert worker.observability.http_port is None


async def _status(client: httpx.AsyncClient, path: str, expected: int) -> bool:
    response = await client.get(path)
    return response.status_code == expected
