"""Start the simulator as a subprocess from tests and benchmarks.

Example::

    with SimulatorProcess(generate_cards=1000, rate_limit_per_s=50) as sim:
        httpx.get(sim.base_url + "/cards", ...)
        sim.set_faults(fail_next={"status": 503, "count": 2})
        assert sim.stats()["cards_calls"] == 1
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import httpx

from .__main__ import LISTENING_MESSAGE
from .api import BASE_PATH
from .control import CONTROL_PREFIX
from .faults import DEFAULT_FAULTS

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
CONTROL_TIMEOUT_S = 10.0


class SimulatorStartError(RuntimeError):
    """Raised when the simulator process exits or does not report its address in time."""


def fault_arguments(faults: dict[str, Any]) -> list[str]:
    """Convert fault settings in the control API's form to command-line options."""
    arguments: list[str] = []
    for name, value in faults.items():
        option = "--" + name.replace("_", "-")
        if name == "fail_next":
            arguments += _fail_next_arguments(value)
        elif name == "stall":
            if value:
                arguments.append(option)
        elif value is not None:
            arguments += [option, str(value)]
    return arguments


def _fail_next_arguments(fail_next: dict[str, Any] | None) -> list[str]:
    if not fail_next:
        return []
    arguments = ["--fail-next-status", str(fail_next["status"]), "--fail-next-count", str(fail_next.get("count", 1))]
    if fail_next.get("retry_after") is not None:
        arguments += ["--fail-next-retry-after", str(fail_next["retry_after"])]
    if fail_next.get("include_login"):
        arguments.append("--fail-next-include-login")
    return arguments


class SimulatorProcess:
    """A simulator subprocess on 127.0.0.1 and a free port. Use it as a context manager.

    ``faults`` are fault settings in the control API's form (``latency_ms=20``,
    ``fail_next={"status": 503, "count": 1}``), passed as command-line options.
    """

    def __init__(
        self,
        *,
        data: Path | None = None,
        generate_cards: int = 0,
        extra_args: Sequence[str] = (),
        **faults: Any,
    ) -> None:
        self.url = ""
        self.base_url = ""
        self._command = [sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", "0"]
        if data is not None:
            self._command += ["--data", str(data)]
        if generate_cards:
            self._command += ["--generate-cards", str(generate_cards)]
        self._command += fault_arguments(faults)
        self._command += list(extra_args)
        self._process: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None
        self._client: httpx.Client | None = None
        self.start()

    def start(self) -> None:
        """Start the process and wait until it prints its address. Raises SimulatorStartError on failure."""
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        # The package directory's parent goes on PYTHONPATH so `-m simulator` works from any working directory.
        package_root = str(Path(__file__).resolve().parent.parent)
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, environment.get("PYTHONPATH")]))
        self._process = subprocess.Popen(
            self._command,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=environment,
        )
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_forward_lines, args=(self._process.stdout, lines), daemon=True).start()

        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                stderr = self._read_stderr()
                self.stop()
                raise SimulatorStartError(f"the simulator did not report its address within {START_TIMEOUT_S} s\n{stderr}")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                code = self._process.wait(timeout=STOP_TIMEOUT_S)
                stderr = self._read_stderr()
                self.stop()
                raise SimulatorStartError(f"the simulator exited with code {code} before starting\n{stderr}")
            if line.startswith(LISTENING_MESSAGE):
                self.url = line[len(LISTENING_MESSAGE) :].strip()
                break

        self.base_url = self.url + BASE_PATH
        self._client = httpx.Client(base_url=self.url + CONTROL_PREFIX, timeout=CONTROL_TIMEOUT_S)

    def _read_stderr(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()

    def _control(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._client is None:
            raise RuntimeError("the simulator is not running; create a new SimulatorProcess")
        response = self._client.request(method, path, **kwargs)
        if response.status_code != 200:
            raise RuntimeError(f"{method} {CONTROL_PREFIX}{path} failed with {response.status_code}: {response.text}")
        return response.json()

    def stats(self) -> dict[str, Any]:
        return self._control("GET", "/stats")

    def calls(self, since: float | None = None) -> list[dict[str, Any]]:
        """Return the logged API calls that arrived at or after ``since`` (epoch seconds)."""
        params = {} if since is None else {"since": repr(since)}
        return self._control("GET", "/calls", params=params)["calls"]

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Change fault settings (partial update) and return all current settings."""
        return self._control("POST", "/faults", json=faults)

    def faults(self) -> dict[str, Any]:
        return self._control("GET", "/faults")

    def reset_faults(self) -> dict[str, Any]:
        """Set every fault setting back to its default."""
        return self.set_faults(**DEFAULT_FAULTS)

    def reset(self) -> None:
        """Clear counters and the call log."""
        self._control("POST", "/reset")

    def stderr(self) -> str:
        """Return what the process has written to stderr so far."""
        return self._read_stderr()

    def stop(self) -> None:
        """Terminate the process, wait up to STOP_TIMEOUT_S, then kill it if needed."""
        if self._client is not None:
            self._client.close()
            self._client = None
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        if process is not None and process.stdout is not None:
            process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _forward_lines(stream: IO[str] | None, lines: queue.Queue[str | None]) -> None:
    """Put each stdout line on ``lines``, then None at end of file. Keeps the pipe drained."""
    if stream is None:
        lines.put(None)
        return
    try:
        for line in stream:
            lines.put(line)
    except ValueError:
        pass  # the stream was closed by stop()
    lines.put(None)
