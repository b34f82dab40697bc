"""Effect indicators on constructed data with known answers."""

from __future__ import annotations

from datetime import date

from hub.indicators import WeeklyCount, iso_week, neighbourhood_watch_effect, promise_follow_up

WEEKS = [f"2026-W{w:02d}" for w in range(10, 20)]  # ten weeks


def burglaries(area: str, per_week: int) -> list[WeeklyCount]:
    return [WeeklyCount(area, "residential_burglary", w, per_week) for w in WEEKS]


def test_watch_areas_against_the_rest_of_the_municipality() -> None:
    # Two watch areas with 37 burglaries each over ten weeks; two other areas with 50 each.
    counts = [
        *[WeeklyCount("Mellbystrand", "residential_burglary", w, 4 if i < 7 else 3) for i, w in enumerate(WEEKS)],
        *[WeeklyCount("Skottorp", "residential_burglary", w, 3 if i < 3 else 4) for i, w in enumerate(WEEKS)],
        *burglaries("Centrum", 5), *burglaries("Lilla Tjärby", 5),
        WeeklyCount("Centrum", "theft", WEEKS[0], 40),  # another category: not counted
        WeeklyCount("Centrum", "residential_burglary", "2026-W30", 99),  # outside the period: not counted
    ]  # fmt: skip
    effect = neighbourhood_watch_effect(counts, {"Mellbystrand": 500, "Skottorp": 500}, WEEKS)
    assert effect.weeks == 10
    assert effect.watch_per_week == 3.7  # (37 + 37) / (10 weeks × 2 areas)
    assert effect.rest_per_week == 5.0
    assert effect.relative_difference == -0.26  # 26 % fewer, the figure the Laholm article quotes
    assert effect.watch_per_1000_households == 7.4  # 7.4 burglaries a week per 1,000 households


def test_a_watch_area_without_burglaries_counts_as_zero_and_households_may_be_unknown() -> None:
    effect = neighbourhood_watch_effect(burglaries("Centrum", 2), {"Ränneslöv": None}, WEEKS)
    assert effect.watch_per_week == 0.0
    assert effect.relative_difference == -1.0
    assert effect.watch_per_1000_households is None


def test_citizen_promise_trend_before_and_after_the_action() -> None:
    action = date(2026, 3, 16)  # a Monday in 2026-W12
    assert iso_week(action) == "2026-W12"
    series = [(7, 9), (8, 6), (9, 5), (10, 4), (11, 5), (12, 3), (13, 2), (14, 1), (15, 2), (16, 8)]
    counts = [WeeklyCount("Centrum", "public_order", f"2026-W{w:02d}", n) for w, n in series]
    follow = promise_follow_up(counts, "MEDB-1381-1", "Centrum", "public_order", action, weeks=4)
    assert follow.before == 6 + 5 + 4 + 5  # W08–W11
    assert follow.after == 3 + 2 + 1 + 2  # W12–W15
    assert follow.change == -0.6
    other = promise_follow_up(counts, "MEDB-1381-2", "Väster", "public_order", action)
    assert (other.before, other.after, other.change) == (0, 0, None)


def test_no_reported_weeks_gives_no_rates() -> None:
    effect = neighbourhood_watch_effect([], {"Mellbystrand": 100}, [])
    assert (effect.weeks, effect.relative_difference, effect.watch_per_1000_households) == (0, None, None)
