"""An in-process worker that serves health and metrics on a free port, for HTTP-level tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from simulator.testing import SimulatorProcess
from tests.harness import Topics
from worker.runtime import Worker
from worker.settings import load_settings


@contextlib.asynccontextmanager
async def serving_worker(topics: Topics, simulator: SimulatorProcess, **overrides: Any) -> AsyncIterator[tuple[Worker, str]]:
    """Start a worker with its HTTP server on a free port; yield it and the server's base URL."""
    settings = load_settings(
        **topics.settings_overrides(), api_base_url=simulator.base_url, http_host="127.0.0.1", http_port=0, **overrides
    )
    worker = Worker(settings, ephemeral_http_port=True)
    app = worker.create_app()
    await app.start()
    try:
        yield worker, f"http://127.0.0.1:{worker.observability.http_port}"
    finally:
        await app.stop()
