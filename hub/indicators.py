"""Effect indicators computed from what left the hub (aggregates, watch areas, citizen-promise actions).

- **Neighbourhood watch effect**: residential burglaries per week in the areas registered with
  neighbourhood watch against the rest of the same municipality (and per 1,000 households where the
  registrations give households), with the relative difference — the figure the Laholm agreement quotes.
- **Citizen-promise follow-up**: for each action, the incident count in its area and category in the
  weeks before the action date against the same number of weeks from it.

Both take plain rows so they are computed the same way from a live topic, a report or a test.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta


@dataclass(frozen=True)
class WeeklyCount:
    area: str | None
    category: str
    week: str  # ISO week, e.g. 2026-W33
    count: int  # suppressed counts (< 3) are entered as 0 by the caller or left out


@dataclass(frozen=True)
class EffectIndicator:
    weeks: int
    watch_per_week: float
    rest_per_week: float
    watch_per_1000_households: float | None
    relative_difference: float | None
    """(watch - rest) / rest per week; -0.26 means 26 % fewer burglaries in the watch areas."""


def neighbourhood_watch_effect(
    counts: Iterable[WeeklyCount],
    watch_areas: Mapping[str, int | None],
    weeks: list[str],
    category: str = "residential_burglary",
) -> EffectIndicator:
    """Watch areas (name → households or None) against the other areas, over ``weeks``.

    Rates are per area and week, so a municipality with many unregistered areas is compared fairly.
    """
    chosen = set(weeks)
    per_area: dict[str, int] = {}
    for c in counts:
        if c.category == category and c.area is not None and c.week in chosen:
            per_area[c.area] = per_area.get(c.area, 0) + c.count
    watch = [a for a in per_area if a in watch_areas] + [a for a in watch_areas if a not in per_area]
    rest = [a for a in per_area if a not in watch_areas]
    n = len(weeks)
    if n == 0:
        return EffectIndicator(0, 0.0, 0.0, None, None)
    watch_rate = sum(per_area.get(a, 0) for a in watch) / (n * len(watch)) if watch else 0.0
    rest_rate = sum(per_area[a] for a in rest) / (n * len(rest)) if rest else 0.0
    households = [h for a in watch if (h := watch_areas.get(a))]
    per_1000 = (sum(per_area.get(a, 0) for a in watch) / n) / (sum(households) / 1000) if households else None
    diff = (watch_rate - rest_rate) / rest_rate if rest_rate else None
    return EffectIndicator(n, round(watch_rate, 4), round(rest_rate, 4),
                           None if per_1000 is None else round(per_1000, 4),
                           None if diff is None else round(diff, 4))  # fmt: skip


@dataclass(frozen=True)
class PromiseFollowUp:
    promise_id: str
    area: str | None
    category: str
    action_date: date
    before: int
    after: int

    @property
    def change(self) -> float | None:
        return None if self.before == 0 else round((self.after - self.before) / self.before, 4)


def iso_week(d: date) -> str:
    iso = d.isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


def promise_follow_up(
    counts: Iterable[WeeklyCount], promise_id: str, area: str | None, category: str, action_date: date, weeks: int = 4
) -> PromiseFollowUp:
    """Incidents in the ``weeks`` ISO weeks before the action's week against the action's week and the
    ``weeks - 1`` after it, in its area and category."""
    before = {iso_week(action_date - timedelta(weeks=k)) for k in range(1, weeks + 1)}
    after = {iso_week(action_date + timedelta(weeks=k)) for k in range(weeks)}
    rows = [c for c in counts if c.category == category and c.area == area]
    return PromiseFollowUp(promise_id, area, category, action_date,
                           sum(c.count for c in rows if c.week in before),
                           sum(c.count for c in rows if c.week in after))  # fmt: skip
