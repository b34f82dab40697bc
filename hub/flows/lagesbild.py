"""The lägesbild stage: count increments into aggregates that leave the hub only with small counts hidden.

Every event a rule sends to a receiver on the ``aggregated`` basis becomes a count increment on
``hub.lagesbild`` (no personal data: receiver, municipality, area, category, ISO week and day, and the
event id). This stage counts them per receiver × municipality × area (and the municipality total) ×
category × period (ISO week, and day) and publishes a ``hub.lagesbild_aggregate`` to
``deliver.<receiver>.<kommunkod>``. Counts 1–2 are suppressed everywhere they leave the hub: the first
increment publishes a suppressed record ("<3"), the next one nothing, and from 3 on every change publishes
the count. Each municipal increment is also forwarded once as a county increment, so
``deliver.<receiver>.13`` carries the county totals for Länsstyrelsen and the region.

**Counting is idempotent.** The state written to Kafka is not a number per aggregate but one record per
counted event (:class:`Counts`), so an increment processed twice — the worker's at-least-once redelivery
after a crash, or a route stage that ran twice — counts once, and one table write covers all the keys an
event counts into. A repeated increment publishes its keys' current state again, which repairs a
publication lost in the crash. The aggregates are therefore the same after a crash as without one, and
can be recomputed from the agency topics (:mod:`hub.lagesbild_rebuild`).
"""

from __future__ import annotations

import collections
import itertools
import uuid
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from hub.audit import millis
from hub.contract.outputs import AreaAlert, LagesbildAggregate, PeriodKind

SUPPRESS_BELOW = 3

@dataclass(frozen=True, slots=True)
class Publication:
    """One aggregate to publish, made into a record only when it is published (a batch publishes only
    the last state of each key it touched)."""

    receiver: str
    municipality_code: str
    increment: dict[str, Any]
    area: str | None
    kind: PeriodKind
    period: str
    count: int
    at: datetime

    @property
    def record(self) -> LagesbildAggregate:
        return aggregate(self.increment, self.area, self.kind, self.period, self.count, self.at)

    @property
    def key(self) -> bytes:
        """The Kafka key of the aggregate on a receiver topic: one per area, category and period."""
        return f"{self.area or '-'}|{self.increment['category']}|{self.period}".encode()

    def datum(self) -> dict[str, Any]:
        """:attr:`record` as the plain data its Avro schema takes, without validating a model (the hot path)."""
        shown = self.count if self.count >= SUPPRESS_BELOW else None
        return {
            "municipality_code": self.municipality_code, "area": self.area, "category": self.increment["category"],
            "period_kind": self.kind.value, "period": self.period, "count": shown, "suppressed": shown is None,
            "updated_at": millis(self.at),
        }  # fmt: skip


def aggregate_keys(inc: dict[str, Any]) -> list[tuple[str | None, PeriodKind, str, str]]:
    """(area, period kind, period, table key) of every aggregate the increment counts into: its area (if
    any) and the municipality total (area None), per ISO week and per day."""
    areas = [inc.get("area"), None] if inc.get("area") else [None]
    out = []
    for area in areas:
        base = f"{inc['receiver']}|{inc['municipality_code']}|{area or '-'}|{inc['category']}"
        out += [(area, PeriodKind.week, inc["week"], f"{base}|{inc['week']}"),
                (area, PeriodKind.day, inc["day"], f"{base}|{inc['day']}")]  # fmt: skip
    return out


class Counts:
    """The lägesbild's state: which events were counted and the counts they make.

    ``contributions`` maps ``receiver|municipality|event id`` to the aggregate keys that event was counted
    into; it is the only state written to Kafka (``hub.lagesbild-state``, :mod:`hub.lagesbild_store`), one
    small record per event. ``counts`` (aggregate key → number) is derived from it in memory.
    """

    def __init__(self, contributions: MutableMapping[str, list[str]] | None = None) -> None:
        self.contributions: MutableMapping[str, list[str]] = {} if contributions is None else contributions
        self.counts: dict[str, int] = {}
        self.recount()

    def recount(self) -> None:
        self.counts = dict(collections.Counter(itertools.chain.from_iterable(self.contributions.values())))

    def apply(self, inc: dict[str, Any], now: datetime | None = None) -> list[Publication]:
        """Count ``inc`` once per event id; return the aggregates to publish (suppressed below 3).

        An increment seen before changes nothing and republishes the current state of its keys (which
        repairs a publication a crash may have lost)."""
        now = now or datetime.now(UTC)
        keys = aggregate_keys(inc)
        contribution = contribution_key(inc)
        repeated = contribution in self.contributions
        if not repeated:
            self.contributions[contribution] = [key for *_, key in keys]
            for *_, key in keys:
                self.counts[key] = self.counts.get(key, 0) + 1
        out: list[Publication] = []
        for area, kind, period, key in keys:
            count = self.counts.get(key, 0)
            if repeated or count >= SUPPRESS_BELOW or count == 1:
                out.append(Publication(inc["receiver"], inc["municipality_code"], inc, area, kind, period, count, now))
        return out


def contribution_key(inc: dict[str, Any]) -> str:
    return f"{inc['receiver']}|{inc['municipality_code']}|{inc['event_id']}"


def aggregate(inc: dict[str, Any], area: str | None, kind: PeriodKind, period: str, count: int,
              now: datetime) -> LagesbildAggregate:  # fmt: skip
    """The record that leaves the hub for one key: the count, or "<3" (count None, suppressed) below 3."""
    shown = count if count >= SUPPRESS_BELOW else None
    return LagesbildAggregate(
        municipality_code=inc["municipality_code"], area=area, category=inc["category"],
        period_kind=kind, period=period, count=shown, suppressed=shown is None, updated_at=now,
    )  # fmt: skip


def county_increment(inc: dict[str, Any], county_code: str) -> dict[str, Any] | None:
    """The same increment for the county total, or None when it is one already."""
    if inc["municipality_code"] == county_code or inc.get("county_copy"):
        return None
    return {**inc, "municipality_code": county_code, "area": None, "county_copy": True}


@dataclass(frozen=True)
class WaveRule:
    """When residential burglaries in an area make a wave (defaults from the product brief)."""

    category: str = "residential_burglary"
    min_count: int = 3
    """At least this many in the last 7 days ..."""
    factor: float = 2.0
    """... and at least this many times the trailing weekly mean."""
    trailing_weeks: int = 8

    def describe(self) -> str:
        return f">= {self.min_count} in 7 days and >= {self.factor:g} x the trailing {self.trailing_weeks}-week mean"


def check_wave(
    counts: Mapping[str, int], alerts: MutableMapping[str, bool], inc: dict[str, Any], rule: WaveRule,
) -> AreaAlert | None:
    """After ``inc`` was counted: the area alert to send if a burglary wave starts in its area, else None.

    One alert per wave: the area's alert state stays on while the condition holds and is cleared by the
    first counted burglary for which it no longer does.
    """
    area = inc.get("area")
    if inc["category"] != rule.category or not area or inc.get("county_copy") or inc["receiver"] != "lagesbild":
        return None
    base = f"{inc['receiver']}|{inc['municipality_code']}|{area}|{rule.category}"
    end = date.fromisoformat(inc["day"])

    def days(first: date, n: int) -> int:
        return sum(counts.get(f"{base}|{(first + timedelta(d)).isoformat()}", 0) for d in range(n))

    start = end - timedelta(days=6)
    count_7d = days(start, 7)
    mean = days(start - timedelta(weeks=rule.trailing_weeks), 7 * rule.trailing_weeks) / rule.trailing_weeks
    wave = count_7d >= rule.min_count and count_7d >= rule.factor * mean
    state_key = f"{inc['municipality_code']}|{area}|{rule.category}"
    if not wave:
        if alerts.get(state_key):
            alerts[state_key] = False
        return None
    if alerts.get(state_key):
        return None  # the wave already alerted
    alerts[state_key] = True
    return AreaAlert(
        alert_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"wave:{state_key}:{start.isoformat()}")),
        municipality_code=inc["municipality_code"], area=area, category=rule.category,
        count_7d=count_7d, trailing_weekly_mean=round(mean, 3),
        period_start=datetime.combine(start, time.min, UTC), period_end=datetime.combine(end, time.max, UTC),
        threshold=rule.describe(),
    )  # fmt: skip
