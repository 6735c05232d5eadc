"""Fixtures: the local Kafka broker, the CareCloud simulator, unique topics and an in-process worker."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from simulator.testing import SimulatorProcess
from tests.harness import Topics, ensure_kafka, stop_kafka
from worker.runtime import Worker
from worker.settings import load_settings


@pytest.fixture(scope="session")
def kafka() -> Iterator[None]:
    """The local broker on 127.0.0.1; started here (and stopped after) unless already running."""
    started = ensure_kafka()
    yield
    if started:
        stop_kafka()


@pytest.fixture
def simulator() -> Iterator[SimulatorProcess]:
    with SimulatorProcess() as sim:
        yield sim


@pytest.fixture
async def topics(kafka: None) -> Topics:
    created = Topics.unique()
    await created.create()
    return created


class WorkerFactory:
    """Starts in-process workers against the given topics and simulator; stops them at teardown."""

    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()

    async def start(self, topics: Topics, simulator: SimulatorProcess, **overrides: Any) -> Worker:
        settings = load_settings(
            **topics.settings_overrides(),
            api_base_url=simulator.base_url,
            http_port=0,
            **overrides,
        )
        worker = Worker(settings)
        app = worker.create_app()
        await app.start()
        self._stack.push_async_callback(app.stop)
        return worker

    async def close(self) -> None:
        await self._stack.aclose()


@pytest.fixture
async def start_worker() -> AsyncIterator[WorkerFactory]:
    factory = WorkerFactory()
    yield factory
    await factory.close()
