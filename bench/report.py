"""Results of a benchmark: tables printed to the terminal and written into docs/benchmarks.md.

docs/benchmarks.md keeps each benchmark's latest figures between the markers
`<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->`, so a rerun of one
benchmark replaces only its own section and the machine description.
"""

from __future__ import annotations

import math
import platform
import re
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from tests.harness import ROOT

KAFKA_LIBS = ROOT / ".cache" / "kafka" / "libs"
MACHINE_SECTION = "machine"


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([cell if isinstance(cell, str) else fmt(cell) for cell in cells])


@dataclass
class Result:
    """Outcome of one benchmark: its tables and the series its plots need."""

    name: str
    tables: list[Table]
    plots: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0


def fmt(value: object, digits: int = 3) -> str:
    """Format a figure with `digits` significant digits; integers stay whole, NaN becomes a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return "-"
        if value == 0:
            return "0"
        magnitude = math.floor(math.log10(abs(value)))
        decimals = max(0, digits - 1 - magnitude)
        return f"{value:,.{decimals}f}"
    return str(value)


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def render_text(result: Result) -> str:
    lines = [f"== {result.name} ({result.elapsed_s:.0f} s) =="]
    for table in result.tables:
        widths = [max(len(row[i]) for row in [table.columns, *table.rows]) for i in range(len(table.columns))]
        lines.append(table.title)
        lines.append("  ".join(column.ljust(width) for column, width in zip(table.columns, widths)))
        lines.append("  ".join("-" * width for width in widths))
        for row in table.rows:
            lines.append("  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in enumerate(zip(row, widths))))
        lines.extend(f"  {note}" for note in table.notes)
        lines.append("")
    return "\n".join(lines)


def render_markdown(result: Result, images: list[str], command: str) -> str:
    lines = [f"Measured by `{command}` on {date.today().isoformat()}; this benchmark took {result.elapsed_s:.0f} s.", ""]
    for table in result.tables:
        lines.append(f"**{table.title}**")
        lines.append("")
        lines.append("| " + " | ".join(table.columns) + " |")
        lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(table.columns))) + "|")
        lines.extend("| " + " | ".join(row) + " |" for row in table.rows)
        lines.append("")
        lines.extend(f"- {note}" for note in table.notes)
        if table.notes:
            lines.append("")
    lines.extend(f"![{Path(image).stem.replace('_', ' ')}](img/{Path(image).name})\n" for image in images)
    return "\n".join(lines).rstrip() + "\n"


def machine_description(command: str, total_s: float) -> str:
    memory = _run(["free", "-g"])
    return "\n".join(
        [
            f"Last run: `{command}` on {date.today().isoformat()}, {total_s:.0f} s in total.",
            "",
            f"- CPUs (`nproc`): {_run(['nproc']).strip()}",
            f"- Python: {platform.python_version()} ({sys.implementation.name})",
            f"- Kafka broker: {kafka_version()} (single node, KRaft, `scripts/kafka`)",
            f"- OS: {platform.system()} {platform.release()}",
            "",
            "`free -g`:",
            "",
            "```",
            memory.rstrip(),
            "```",
            "",
        ]
    )


def kafka_version() -> str:
    """Version of the broker jars fetched by scripts/kafka, read from kafka-server-<version>.jar."""
    for jar in sorted(KAFKA_LIBS.glob("kafka-server-[0-9]*.jar")):
        return jar.stem.removeprefix("kafka-server-")
    return "unknown (no kafka-server jar in .cache/kafka/libs)"


def _run(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"({' '.join(command)} failed: {exc})"


def replace_section(document: str, name: str, content: str) -> str:
    """Put `content` between the markers of section `name`, appending the section if it is missing."""
    start = f"<!-- bench:{name}:start -->"
    end = f"<!-- bench:{name}:end -->"
    block = f"{start}\n{content.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(document):
        return pattern.sub(lambda _: block, document, count=1)
    return document.rstrip() + f"\n\n## {name}\n\n{block}\n"


def write_docs(path: Path, results: list[Result], images: dict[str, list[str]], command: str, total_s: float) -> None:
    document = path.read_text() if path.exists() else "# Benchmarks\n"
    document = replace_section(document, MACHINE_SECTION, machine_description(command, total_s))
    for result in results:
        document = replace_section(document, result.name, render_markdown(result, images.get(result.name, []), command))
    path.write_text(document)
