"""The benchmark table: figures with their targets, medians of runs, the machine, and docs/benchmarks.md."""

from __future__ import annotations

import math
import os
import platform
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    """One row of the table: ``key`` names the value a benchmark run returns."""

    key: str
    label: str
    unit: str
    target: str = "—"
    met: Callable[[float], bool] | None = None
    """Whether a median meets the target; None when the figure is reported without a target."""

    def format(self, value: float) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        if self.unit == "×":
            return f"{value:.3f}"
        if self.unit in ("s", "ms") and abs(value) < 100:
            return f"{value:.1f}" if self.unit == "s" or abs(value) >= 10 else f"{value:.2f}"
        return f"{value:,.0f}"


@dataclass(frozen=True)
class Section:
    title: str
    figures: list[Figure]


@dataclass
class Row:
    figure: Figure
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        numbers = [v for v in self.values if isinstance(v, int | float) and not math.isnan(v)]
        return statistics.median(numbers) if numbers else float("nan")

    @property
    def met(self) -> str:
        if self.figure.met is None:
            return "—"
        if math.isnan(self.median):
            return "n/a"
        return "yes" if self.figure.met(self.median) else "NO"

    def cells(self) -> list[str]:
        f = self.figure
        runs = " / ".join(f.format(v) for v in self.values) or "n/a"
        return [f"{f.label} ({f.unit})", f.format(self.median), runs, f.target, self.met]


HEADERS = ["figure", "median", "runs", "target", "met?"]


def rows_by_section(sections: Sequence[Section], results: dict[str, list[float]]) -> list[tuple[str, list[Row]]]:
    """The sections that have any result, with one row per figure that has values."""
    out = []
    for s in sections:
        rows = [Row(f, results[f.key]) for f in s.figures if f.key in results]
        if rows:
            out.append((s.title, rows))
    return out


def console_table(grouped: list[tuple[str, list[Row]]]) -> str:
    cells = [r.cells() for _, rows in grouped for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(HEADERS)] if cells else []
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True))]
    for title, rows in grouped:
        lines.append(f"{title}:")
        for r in rows:
            c = r.cells()
            lines.append("  ".join([c[0].ljust(widths[0]), *(x.rjust(w) for x, w in zip(c[1:3], widths[1:3],
                                                                                         strict=True)),
                                    c[3].ljust(widths[3]), c[4]]))  # fmt: skip
    return "\n".join(lines)


def markdown_table(grouped: list[tuple[str, list[Row]]]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|---|---:|---:|---|---|"]
    for title, rows in grouped:
        lines.append(f"| **{title}** | | | | |")
        for r in rows:
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in r.cells()) + " |")
    return "\n".join(lines)


# -- the machine -----------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return m.group(1).strip() if m else platform.machine()


def ram_gib() -> float:
    try:
        m = re.search(r"^MemTotal:\s+(\d+) kB$", Path("/proc/meminfo").read_text(), re.M)
    except OSError:
        return float("nan")
    return int(m.group(1)) / 1024**2 if m else float("nan")


def kafka_version_of(pid: int | None) -> str | None:
    """The Apache Kafka release a local broker process runs, from the ``kafka_2.13-<version>.jar`` it loads."""
    if pid is None:
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return None
    m = re.search(r"kafka_2\.1\d-([0-9][^/:\s\x00]*?)\.jar", cmdline)
    return m.group(1) if m else None


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def machine(kafka: str, load_at_start: str) -> list[tuple[str, str]]:
    """What the figures were measured on; the load averages tell how busy the machine was meanwhile."""
    return [
        ("CPU", f"{cpu_model()}, {os.cpu_count()} logical cores"),
        ("RAM", f"{ram_gib():.1f} GiB"),
        ("OS", platform.platform()),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("Kafka", kafka),
        ("load average (1/5/15 min) at the start", load_at_start),
        ("load average (1/5/15 min) at the end", load_average()),
    ]


def markdown(*, date: str, command: str, machine_rows: list[tuple[str, str]],
             grouped: list[tuple[str, list[Row]]], runs: int, method: str, errors: list[str],
             notes: str) -> str:  # fmt: skip
    parts = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python -m bench` (bench/__main__.py); do not edit by hand. The notes below the table "
        "are bench/NOTES.md, included verbatim. -->",
        "",
        f"Measured on {date} with `{command}`: every figure is the median of {runs} run(s) (each run's value "
        "under *runs*), all benchmarks one after another on one local Apache Kafka broker.",
        "",
        "| machine | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in machine_rows],
        "",
        markdown_table(grouped),
        "",
    ]
    if errors:
        parts += ["**Benchmarks that failed in this run** (their figures are missing):", "",
                  *[f"- {e}" for e in errors], ""]  # fmt: skip
    parts += [method.strip(), "", notes.strip(), ""]
    return "\n".join(parts)
