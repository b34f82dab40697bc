"""The lägesbild as a chart: weekly counts per category, for meeting notes (``hub lagesbild --png``) and the web.

Only what left the hub is drawn: municipality-wide counts per category and ISO week. A suppressed count
("<3") is drawn as an outlined bar of height 0 with the label "<3" — never as its true value, which the
hub does not publish.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Protocol

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # the backend is chosen above
from matplotlib.ticker import MaxNLocator

SUPPRESSED_LABEL = "<3"


class WeeklyRow(Protocol):
    @property
    def area(self) -> str | None: ...
    @property
    def category(self) -> str: ...
    @property
    def period(self) -> str: ...
    @property
    def count(self) -> int | None: ...
    @property
    def suppressed(self) -> bool: ...


def weekly_chart(rows: Sequence[WeeklyRow], title: str, fmt: str = "png", weeks: int = 8) -> bytes:
    """A grouped bar chart, categories × the last ``weeks`` weeks, as PNG or SVG bytes."""
    totals = [r for r in rows if r.area is None]
    periods = sorted({r.period for r in totals})[-weeks:]
    categories = sorted({r.category for r in totals if r.period in periods})
    cell = {(r.category, r.period): r for r in totals}

    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(periods) + 3), 4.5), dpi=120)
    try:
        width = 0.8 / max(1, len(categories))
        for i, category in enumerate(categories):
            xs, heights, labels = [], [], []
            for j, period in enumerate(periods):
                row = cell.get((category, period))
                if row is None:
                    continue
                xs.append(j + (i - (len(categories) - 1) / 2) * width)
                heights.append(0 if row.suppressed else (row.count or 0))
                labels.append(SUPPRESSED_LABEL if row.suppressed else str(row.count))
            bars = ax.bar(xs, heights, width=width, label=category.replace("_", " "))
            ax.bar_label(bars, labels=labels, fontsize=7, padding=1)
        ax.set_xticks(range(len(periods)), periods, rotation=30, ha="right", fontsize=8)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no half events on the axis
        ax.set_ylabel("händelser per vecka")
        ax.set_title(title)
        if not categories:
            ax.text(0.5, 0.5, "inga uppgifter för perioden", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.text(0.0, -0.22, f"Antal 1–2 visas som {SUPPRESSED_LABEL}.", transform=ax.transAxes, fontsize=7)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt)
        return buf.getvalue()
    finally:
        plt.close(fig)
