"""The benchmarks run end to end at the tiny size and print their figures.

This checks only that nothing has rotted: tiny figures mean nothing, so no
figure is asserted. The full suite is `python -m bench all`.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.__main__ import BENCHMARKS
from tests.harness import ROOT

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

# Tiny runs take about 100 s on a 2-core machine; the limit leaves room for a busy one.
SUITE_TIMEOUT_S = 280


@pytest.fixture(scope="module")
def tiny_run(kafka: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], object]:
    docs_dir = tmp_path_factory.mktemp("bench-docs")
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "all", "--size", "tiny", "--docs-dir", str(docs_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT_S,
    )
    return completed, docs_dir


def test_bench_all_tiny_exits_cleanly(tiny_run):
    completed, _ = tiny_run
    assert completed.returncode == 0, f"stdout:\n{completed.stdout[-3000:]}\nstderr:\n{completed.stderr[-3000:]}"


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_benchmark_prints_its_table(tiny_run, name):
    completed, _ = tiny_run
    header = f"== {name} ("
    assert header in completed.stdout, f"no table for {name}; stderr:\n{completed.stderr[-3000:]}"
    section = completed.stdout.split(header, 1)[1].split("\n== ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("--")]
    assert rows, f"the {name} section has no table:\n{section}"


def test_docs_and_plots_written(tiny_run):
    _, docs_dir = tiny_run
    page = (docs_dir / "benchmarks.md").read_text()
    for name in BENCHMARKS:
        assert f"<!-- bench:{name}:start -->" in page
    for image in ("throughput_vs_offered_load.png", "latency_percentiles.png", "scaleout.png"):
        assert (docs_dir / "img" / image).stat().st_size > 0, f"{image} is empty"
