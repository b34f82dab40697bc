"""Hypothesis settings, batch generation and the per-target figures of the fuzz suite.

Every target runs ``NORMAL_CASES`` cases in a normal run and ``FULL_CASES`` with ``--full``. Hypothesis is
derandomized (the cases are the same on every machine and every run) and keeps no example database, so
CI is reproducible; a failure prints the smallest case that still fails.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import TypeVar

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from hub.contract.envelope import Event
from hub.identity import parse_unit
from tests.hub.support import HubUnderTest

NORMAL_CASES = 300
FULL_CASES = 10_000
T = TypeVar("T")


@dataclass
class Figures:
    """What one fuzz target ran: cases per kind and the time taken."""

    target: str
    cases: int = 0
    seconds: float = 0.0
    kinds: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, n: int = 1) -> None:
        self.cases += n
        self.kinds[kind] = self.kinds.get(kind, 0) + n


def fuzz_settings(cases: int, *, shrink: bool = True) -> settings:
    """Hypothesis settings for a fuzz target: ``cases`` examples, reproducible, no deadline."""
    phases = (Phase.explicit, Phase.generate, Phase.shrink) if shrink else (Phase.explicit, Phase.generate)
    return settings(max_examples=cases, deadline=None, database=None, derandomize=True, phases=phases,
                    suppress_health_check=list(HealthCheck), report_multiple_bugs=False)  # fmt: skip


def generate(strategy: st.SearchStrategy[T], cases: int) -> list[T]:
    """``cases`` inputs drawn by Hypothesis (reproducibly), to push through a component as one batch."""
    out: list[T] = []

    @fuzz_settings(cases, shrink=False)
    @given(strategy)
    def draw(case: T) -> None:
        out.append(case)

    draw()
    return out


@cache
def _scanner() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "scripts" / "scan_logs.py"
    spec = importlib.util.spec_from_file_location("scan_logs", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def personnummer_lines(text: str) -> list[int]:
    """Numbers of the lines of ``text`` that hold a personnummer, by the run's own log scanner."""
    holds = _scanner().holds_personnummer
    return [n for n, line in enumerate(text.splitlines(), start=1) if holds(line)]


def published_events(hub: HubUnderTest, units: Iterable[str], expect: int) -> list[tuple[str, Event]]:
    """Every record on the topics of these source units (``kriminalvarden``, ``kommun-1381``), once ``expect``
    arrived and a quiet spell passed, with its unit; each must be a valid agency event whose
    ``source_agency`` is the unit's agency."""
    topics = {hub.topics.unit(parse_unit(unit, hub.settings().municipality_codes)): unit for unit in units}
    got = hub.read(list(topics), until=lambda g: sum(len(v) for v in g.values()) >= expect, quiet_s=3,
                   timeout_s=180)  # fmt: skip
    out: list[tuple[str, Event]] = []
    for topic, records in got.items():
        for record in records:
            assert isinstance(record, Event)
            assert record.envelope.source_agency.value == hub.topics.agency_of(topic)
            out.append((topics[topic], record))
    return out


def event_ids(events: list[tuple[str, Event]]) -> Counter[tuple[str, str]]:
    """How often each (agency or source unit, event id) was published."""
    return Counter((who, str(event.envelope.event_id)) for who, event in events)
