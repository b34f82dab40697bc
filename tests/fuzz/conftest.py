"""Fixtures of the fuzz suite: the number of cases per target and the figures reported at the end."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fuzz.support import FULL_CASES, NORMAL_CASES, Figures

_FIGURES: list[Figures] = []


@pytest.fixture(scope="session")
def fuzz_cases(full_run: bool) -> int:
    """How many cases each target runs (``--full``: 10,000)."""
    return FULL_CASES if full_run else NORMAL_CASES


@pytest.fixture
def figures() -> Iterator[Callable[[str], Figures]]:
    """``figures("target")``: counters a test fills, printed at the end of the run ("fuzz figures")."""
    made: list[Figures] = []
    started = time.monotonic()

    def make(target: str) -> Figures:
        fig = Figures(target)
        made.append(fig)
        return fig

    yield make
    elapsed = time.monotonic() - started
    for fig in made:
        fig.seconds = elapsed
        _FIGURES.append(fig)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("fuzz figures")
    for fig in _FIGURES:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(fig.kinds.items()))
        terminalreporter.write_line(f"{fig.target}: {fig.cases} cases in {fig.seconds:.1f} s ({kinds})")
