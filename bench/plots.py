"""PNG plots of the latest figures, for docs/benchmarks.md (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

from bench.report import Result  # noqa: E402

DPI = 110
FIGURE_SIZE = (7.0, 4.2)


def render_plots(results: list[Result], img_dir: Path) -> dict[str, list[str]]:
    """Draw the plots of every result that has plot data; return the written paths by benchmark name."""
    img_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[str]] = {}
    for result in results:
        if result.name == "latency" and result.plots.get("offered_load"):
            written["latency"] = [
                _throughput_vs_offered(result.plots, img_dir / "throughput_vs_offered_load.png"),
                _latency_percentiles(result.plots, img_dir / "latency_percentiles.png"),
            ]
        if result.name == "scaleout" and result.plots.get("runs"):
            written["scaleout"] = [_scaleout(result.plots["runs"], img_dir / "scaleout.png")]
    return written


def _throughput_vs_offered(plots: dict[str, Any], path: Path) -> str:
    points = plots["offered_load"]
    offered = [point["offered"] for point in points]
    answered = [point["answered"] for point in points]
    figure, axes = plt.subplots(figsize=FIGURE_SIZE)
    top = max(offered + answered) * 1.1
    axes.plot([0, top], [0, top], linestyle=":", color="grey", label="answered = offered")
    axes.axhline(plots["capacity"], linestyle="--", color="tab:red", label=f"capacity on a backlog ({plots['capacity']:,.0f}/s)")
    axes.plot(offered, answered, marker="o", color="tab:blue", label="worker")
    axes.set_xlim(0, top)
    axes.set_ylim(0, top)
    axes.set_xlabel("offered load (requests/s)")
    axes.set_ylabel("answered (requests/s)")
    axes.set_title("Throughput against offered load (API latency 20 ms)")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left")
    return _save(figure, path)


def _latency_percentiles(plots: dict[str, Any], path: Path) -> str:
    points = plots["offered_load"]
    offered = [point["offered"] for point in points]
    figure, axes = plt.subplots(figsize=FIGURE_SIZE)
    for key, color in (("p50", "tab:blue"), ("p95", "tab:orange"), ("p99", "tab:red")):
        axes.plot(offered, [point[key] for point in points], marker="o", color=color, label=key)
    if plots.get("expected_ms"):
        axes.axhline(plots["expected_ms"], linestyle=":", color="grey", label=f"expected at low load ({plots['expected_ms']:.0f} ms)")
    axes.axvline(plots["capacity"], linestyle="--", color="grey", alpha=0.6, label="capacity on a backlog")
    axes.set_ylim(bottom=0)
    axes.set_xlabel("offered load (requests/s)")
    axes.set_ylabel("request-to-reply latency (ms)")
    axes.set_title("Latency percentiles against offered load")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left")
    return _save(figure, path)


def _scaleout(runs: list[dict[str, Any]], path: Path) -> str:
    figure, (budget_axes, limited_axes) = plt.subplots(1, 2, figsize=(FIGURE_SIZE[0] * 1.4, FIGURE_SIZE[1]))
    modes = list(dict.fromkeys(run["mode"] for run in runs))
    replica_counts = sorted({run["replicas"] for run in runs})
    width = 0.8 / len(modes)
    for index, mode in enumerate(modes):
        by_replicas = {run["replicas"]: run for run in runs if run["mode"] == mode}
        positions = [position + (index - (len(modes) - 1) / 2) * width for position in range(len(replica_counts))]
        budget_axes.bar(positions, [by_replicas[count]["budget_share"] for count in replica_counts], width, label=mode)
        limited_axes.bar(positions, [by_replicas[count]["rate_limited_share"] for count in replica_counts], width, label=mode)
    for axes, label in ((budget_axes, "cards answered / budget"), (limited_axes, "share of calls answered 429")):
        axes.set_xticks(range(len(replica_counts)), [str(count) for count in replica_counts])
        axes.set_xlabel("worker replicas")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3, axis="y")
        axes.legend()
    budget_axes.axhline(1.0, linestyle=":", color="grey")
    budget_axes.set_title("Cards answered as a share of the budget")
    limited_axes.set_title("Calls answered 429")
    return _save(figure, path)


def _save(figure: Any, path: Path) -> str:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return str(path)
