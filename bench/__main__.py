"""Command line: `python -m bench COMMAND [--size tiny|default]`.

Each command runs one benchmark and prints its tables; `all` runs every one.
At the default size the figures and plots are written into docs/benchmarks.md
and docs/img/; tiny runs only print, unless --docs-dir is given.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
from pathlib import Path
from types import ModuleType

from bench import budget, efficiency, latency, memory, overhead, scaleout
from bench.plots import render_plots
from bench.report import Result, render_text, write_docs
from tests.harness import ROOT, ensure_kafka, stop_kafka

BENCHMARKS: dict[str, ModuleType] = {
    "efficiency": efficiency,
    "budget": budget,
    "overhead": overhead,
    "latency": latency,
    "memory": memory,
    "scaleout": scaleout,
}
DOCS_PAGE = "benchmarks.md"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Benchmarks of the card lookup worker against baselines in the same run.")
    parser.add_argument("command", choices=[*BENCHMARKS, "all"], help="benchmark to run, or all of them in order")
    parser.add_argument("--size", choices=["tiny", "default"], default="default", help="tiny takes seconds per benchmark and only proves it runs (default: %(default)s)")
    parser.add_argument("--docs-dir", type=Path, help="directory for benchmarks.md and img/ (default: docs/ at the default size, none at tiny)")
    parser.add_argument("--no-docs", action="store_true", help="print only; write neither docs nor plots")
    return parser


async def run_benchmarks(names: list[str], size: str) -> list[Result]:
    results = []
    for name in names:
        module = BENCHMARKS[name]
        limit_s = module.SIZES[size].time_limit_s
        print(f"bench: running {name} at size {size} (time limit {limit_s:g} s)", flush=True)
        started = time.monotonic()
        try:
            async with asyncio.timeout(limit_s):
                result = await module.run(size)
        except TimeoutError:
            raise SystemExit(f"bench: {name} did not finish within its time limit of {limit_s:g} s; rerun it alone to see where it stops") from None
        result.elapsed_s = time.monotonic() - started
        print(render_text(result), flush=True)
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = list(BENCHMARKS) if args.command == "all" else [args.command]
    docs_dir = args.docs_dir or (ROOT / "docs" if args.size == "default" else None)
    if args.no_docs:
        docs_dir = None

    started = time.monotonic()
    started_kafka = ensure_kafka()
    try:
        results = asyncio.run(run_benchmarks(names, args.size))
    finally:
        if started_kafka:
            stop_kafka()
    total_s = time.monotonic() - started
    print(f"bench: {', '.join(names)} took {total_s:.0f} s in total", flush=True)

    if docs_dir is not None:
        images = render_plots(results, docs_dir / "img")
        command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
        write_docs(docs_dir / DOCS_PAGE, results, images, command, total_s)
        print(f"bench: wrote {docs_dir / DOCS_PAGE} and {len(sum(images.values(), []))} plot(s) in {docs_dir / 'img'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
