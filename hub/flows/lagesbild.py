"""The lägesbild stage: count increments into aggregates that leave the hub only with small counts hidden.

Every event a rule sends to a receiver on the ``aggregated`` basis becomes a count increment on
``hub.lagesbild`` (no personal data: receiver, municipality, area, category, ISO week and day). This stage
sums them per receiver × municipality × area (and the municipality total) × category × period (ISO
week, and day) and publishes a
``hub.lagesbild_aggregate`` to ``deliver.<receiver>.<kommunkod>``. Counts 1–2 are suppressed everywhere
they leave the hub: the first increment publishes a suppressed record ("<3"), the next one nothing, and
from 3 on every change publishes the count. Each municipal increment is also forwarded once as a county
increment, so ``deliver.<receiver>.13`` carries the county totals for Länsstyrelsen and the region.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hub.contract.outputs import LagesbildAggregate, PeriodKind

SUPPRESS_BELOW = 3


@dataclass(frozen=True, slots=True)
class Publication:
    receiver: str
    municipality_code: str
    record: LagesbildAggregate


def _keys(inc: dict[str, Any]) -> list[tuple[str | None, PeriodKind, str, str]]:
    """(area, period kind, period, table key) of every aggregate the increment counts into: its area (if
    any) and the municipality total (area None), per ISO week and per day."""
    areas = [inc.get("area"), None] if inc.get("area") else [None]
    out = []
    for area in areas:
        base = f"{inc['receiver']}|{inc['municipality_code']}|{area or '-'}|{inc['category']}"
        out += [(area, PeriodKind.week, inc["week"], f"{base}|{inc['week']}"),
                (area, PeriodKind.day, inc["day"], f"{base}|{inc['day']}")]  # fmt: skip
    return out


def apply_increment(
    counts: MutableMapping[str, int], inc: dict[str, Any], now: datetime | None = None
) -> list[Publication]:
    """Count ``inc`` and return the aggregates to publish (suppressed below 3)."""
    now = now or datetime.now(UTC)
    out: list[Publication] = []
    for area, kind, period, key in _keys(inc):
        count = counts.get(key, 0) + 1
        counts[key] = count
        if count >= SUPPRESS_BELOW or count == 1:
            shown = count if count >= SUPPRESS_BELOW else None
            record = LagesbildAggregate(
                municipality_code=inc["municipality_code"], area=area, category=inc["category"],
                period_kind=kind, period=period, count=shown, suppressed=shown is None, updated_at=now,
            )  # fmt: skip
            out.append(Publication(inc["receiver"], inc["municipality_code"], record))
    return out


def county_increment(inc: dict[str, Any], county_code: str) -> dict[str, Any] | None:
    """The same increment for the county total, or None when it is one already."""
    if inc["municipality_code"] == county_code or inc.get("county_copy"):
        return None
    return {**inc, "municipality_code": county_code, "area": None, "county_copy": True}
