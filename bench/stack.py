"""Processes and topics of one benchmark run, started together and always cleaned up.

`Stack` is an async context manager. Everything started through it (simulators,
worker processes, baseline processes) is stopped on exit and every topic it
created is deleted, also when the benchmark fails or times out. The broker
itself is left running: `python -m bench` starts and stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from simulator.testing import SimulatorProcess
from tests.harness import ROOT, Topics, bootstrap_servers

READY_TIMEOUT_S = 60.0
READY_POLL_S = 0.1
STOP_TIMEOUT_S = 15.0
WORKER_READY_LINE = "worker running"
# Benchmarks stop workers while a throttled API still delays requests, and a short
# drain keeps that stop quick.
WORKER_SHUTDOWN_TIMEOUT_S = "3"


class ChildProcess:
    """A Python module run as a subprocess, ready once its log contains `ready_line`."""

    def __init__(self, name: str, module: str, arguments: Sequence[str], env: Mapping[str, str], log_path: Path, ready_line: str) -> None:
        self.name = name
        self.command = [sys.executable, "-m", module, *arguments]
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.ready_line = ready_line
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.process.pid

    async def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        give_up_at = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < give_up_at:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode} during start; log:\n{self.log_tail()}")
            if self.ready_line in self.log_path.read_text(errors="replace"):
                return
            await asyncio.sleep(READY_POLL_S)
        raise RuntimeError(f"{self.name} did not log {self.ready_line!r} within {READY_TIMEOUT_S:g} s; log:\n{self.log_tail()}")

    def rss_bytes(self) -> int:
        """Resident set size of the process now, or 0 once it has exited."""
        try:
            return psutil.Process(self.pid).memory_info().rss
        except psutil.NoSuchProcess:
            return 0

    async def stop(self) -> None:
        """Send SIGTERM, wait up to STOP_TIMEOUT_S, then SIGKILL."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, STOP_TIMEOUT_S)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


class Stack:
    """Topics, simulators and processes of one benchmark run."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.log_dir = Path(tempfile.mkdtemp(prefix=f"bench-{label}-"))
        self._topics: list[Topics] = []
        self._simulators: list[SimulatorProcess] = []
        self._children: list[ChildProcess] = []

    async def __aenter__(self) -> Stack:
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        await asyncio.gather(*(child.stop() for child in self._children), return_exceptions=True)
        for simulator in self._simulators:
            simulator.stop()
        await self._delete_topics()
        if exc_type is None:
            shutil.rmtree(self.log_dir, ignore_errors=True)
        else:
            print(f"bench: logs of the failed run are in {self.log_dir}", file=sys.stderr)

    async def topics(self, *, partitions: int) -> Topics:
        """Create a request, reply and dead-letter topic unique to this run."""
        topics = Topics.unique(f"bench-{self.label}")
        self._topics.append(topics)
        await topics.create(partitions=partitions)
        return topics

    async def simulator(self, **options: object) -> SimulatorProcess:
        """Start a simulator with `SimulatorProcess` options (generate_cards, latency_ms, rate_limit_per_s, ...)."""
        simulator = await asyncio.to_thread(SimulatorProcess, **options)  # type: ignore[arg-type]
        self._simulators.append(simulator)
        return simulator

    async def start_workers(self, count: int, topics: Topics, simulator: SimulatorProcess, env: Mapping[str, str] | None = None) -> list[ChildProcess]:
        """Start `count` worker processes in the topics' consumer group and wait until each is running."""
        worker_env = {
            **topics.worker_env(),
            "CARD_LOOKUP_API_BASE_URL": simulator.base_url,
            "CARD_LOOKUP_LOG_FORMAT": "text",
            "CARD_LOOKUP_HTTP_PORT": "0",
            "CARD_LOOKUP_SHUTDOWN_TIMEOUT_S": WORKER_SHUTDOWN_TIMEOUT_S,
            **(env or {}),
        }
        workers = [self.child(f"worker-{index}", "worker", [], worker_env, WORKER_READY_LINE) for index in range(count)]
        await asyncio.gather(*(worker.start() for worker in workers))
        return workers

    def child(self, name: str, module: str, arguments: Sequence[str], env: Mapping[str, str], ready_line: str) -> ChildProcess:
        """Register a subprocess that `Stack` stops on exit; the caller awaits its `start()`."""
        child = ChildProcess(name, module, arguments, env, self.log_dir / f"{name}-{len(self._children)}.log", ready_line)
        self._children.append(child)
        return child

    async def _delete_topics(self) -> None:
        names = [name for topics in self._topics for name in (topics.requests, topics.replies, topics.dlq)]
        if not names:
            return
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers())
        try:
            await admin.start()
            await admin.delete_topics(names)
        except KafkaError as exc:
            print(f"bench: could not delete the run's topics {names}: {exc}", file=sys.stderr)
        finally:
            with contextlib.suppress(KafkaError):
                await admin.close()
