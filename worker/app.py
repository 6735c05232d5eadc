"""Module-level FastStream app, for `faststream run worker.app:app` and `faststream docs gen`."""

from __future__ import annotations

from worker.runtime import Worker
from worker.settings import load_settings

worker = Worker(load_settings())
app = worker.create_app()
