"""The lägesbild stage: count increments into aggregates that leave the hub only with small counts hidden.

Every event a rule sends to a receiver on the ``aggregated`` basis becomes a count increment on
``hub.lagesbild`` (no personal data: receiver, municipality, area, category, ISO week and day, and the
event id). This stage counts them per receiver × municipality × area (and the municipality total) ×
category × period (ISO week, and day) and publishes a ``hub.lagesbild_aggregate`` to
``deliver.<receiver>.<kommunkod>``. Counts 1–2 are suppressed everywhere they leave the hub: the first
increment publishes a suppressed record ("<3"), the next one nothing, and from 3 on every change publishes
the count. Each municipal increment is also forwarded once as a county increment, so
``deliver.<receiver>.13`` carries the county totals for Länsstyrelsen and the region.

**Counted exactly once, state bounded by the keys.** The state is the count per aggregate key
(:class:`Counts`): the worker writes each batch's increments, the counts they change and the offsets it
read in one Kafka transaction (:mod:`hub.kafka.transactions`), so an increment is counted once whatever
crashes, and no per-event record is kept — the state grows with receivers × municipalities × areas ×
categories × periods, never with the number of events counted. Increments are coalesced per batch
(:func:`coalesce`: one increment with a count ``n`` per receiver, municipality, area, category and period),
and the county copy is made there too, so each event costs the stage a fraction of an increment. The
aggregates can be recomputed from the agency topics (:mod:`hub.lagesbild_rebuild`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, MutableMapping
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


@dataclass(frozen=True)
class Horizon:
    """How far back of the newest day counted the counts are kept (``HUB_LAGESBILD__*_HORIZON_DAYS``); None
    (the default): for good — the state then grows with the calendar (one set of keys per day and week),
    never with the number of events.

    With a horizon, an aggregate whose period ended before it is final: its last published figure stands on
    the receiver's topic, its count leaves the state (a tombstone in the changelog), and an increment that
    arrives for it later is not counted (``hub_lagesbild_too_late_total``; ``hub lagesbild --rebuild``
    recounts from the agency topics). Day counts need the wave check's window (7 days and the trailing
    weeks: 63 days by default)."""

    day_days: int | None = None
    week_days: int | None = None


def period_end(period: str) -> date:
    """The last day of an aggregate's period (``2026-08-14``, or ``2026-W33``: its Sunday)."""
    if "W" in period:
        year, week = period.split("-W")
        return date.fromisocalendar(int(year), int(week), 7)
    return date.fromisoformat(period)


class Counts:
    """The lägesbild's state: the count of every aggregate key (``receiver|municipality|area|category|period``).

    Written to Kafka as one record per key a batch changed (``hub.lagesbild-state``, :mod:`hub.lagesbild_store`):
    :attr:`dirty` holds the keys changed since the last :meth:`drain`. Bounded by the :class:`Horizon`: the
    newest day counted (never past tomorrow by the wall clock, so a mistyped future date cannot expire
    everything) moves the horizon, and the counts of periods that ended before it are dropped.
    """

    def __init__(self, counts: dict[str, int] | None = None, horizon: Horizon | None = None) -> None:
        self.counts: dict[str, int] = {} if counts is None else counts
        self.horizon = horizon or Horizon()
        self.dirty: set[str] = set()
        self.retired: list[str] = []
        """State keys to tombstone at the next drain: expired counts, and older per-event records converted on load."""
        self.too_late = 0
        """Increments not counted because their periods had ended before the horizon."""
        self._periods: dict[str, set[str]] = {}
        self._ends: dict[str, date] = {}
        self._cutoff_day = self._cutoff_week = date.min
        self.newest: date | None = None
        for key in list(self.counts):
            period = key.rsplit("|", 1)[-1]
            try:
                end = self._end(period)
            except ValueError:  # not a key this stage makes: dropped, with a tombstone
                del self.counts[key]
                self.retired.append(key)
                continue
            self._periods.setdefault(period, set()).add(key)
            if "W" not in period and (self.newest is None or end > self.newest):
                self.newest = end
        self._advance(self.newest)

    def _end(self, period: str) -> date:
        end = self._ends.get(period)
        if end is None:
            end = self._ends[period] = period_end(period)
        return end

    def _advance(self, day: date | None) -> None:
        """The newest day counted is ``day``: drop the counts of periods that ended before the horizon."""
        if day is None:
            return
        day = min(day, datetime.now(UTC).date() + timedelta(days=1))
        self.newest = day
        h = self.horizon
        self._cutoff_day = date.min if h.day_days is None else day - timedelta(days=h.day_days)
        self._cutoff_week = date.min if h.week_days is None else day - timedelta(days=h.week_days)
        if h.day_days is None and h.week_days is None:
            return
        for period in list(self._periods):
            if self._end(period) < (self._cutoff_week if "W" in period else self._cutoff_day):
                for key in self._periods.pop(period):
                    del self.counts[key]
                    self.dirty.discard(key)
                    self.retired.append(key)
                self._ends.pop(period, None)

    def apply(self, inc: dict[str, Any], now: datetime | None = None) -> list[Publication]:
        """Count ``inc`` (``n`` events, default 1); return the aggregates to publish (suppressed below 3).

        A key is published when it is first counted (as "<3") and whenever it reaches 3 or more; a change
        within 1–2 publishes nothing (the suppressed figure a receiver holds stays true)."""
        now = now or datetime.now(UTC)
        n = inc.get("n", 1)
        day = self._end(inc["day"])
        if self.newest is None or day > self.newest:
            self._advance(day)
        counts = self.counts
        out: list[Publication] = []
        late = True
        for area, kind, period, key in aggregate_keys(inc):
            if self._end(period) < (self._cutoff_day if kind is PeriodKind.day else self._cutoff_week):
                continue  # final: that period ended before the horizon
            late = False
            old = counts.get(key, 0)
            if old == 0:
                self._periods.setdefault(period, set()).add(key)
            counts[key] = new = old + n
            self.dirty.add(key)
            if old == 0 or new >= SUPPRESS_BELOW:
                out.append(Publication(inc["receiver"], inc["municipality_code"], inc, area, kind, period, new, now))
        if late:
            self.too_late += n
        return out

    def drain(self) -> list[tuple[str, int | None]]:
        """(key, count) of every key changed since the last drain, and (key, None) for each retired one."""
        out: list[tuple[str, int | None]] = [(k, None) for k in self.retired]
        out += [(k, self.counts[k]) for k in self.dirty]
        self.dirty.clear()
        self.retired.clear()
        return out


_COALESCED = ("receiver", "municipality_code", "area", "category", "week", "day")


def coalesce(increments: Iterable[dict[str, Any]], county_code: str) -> list[dict[str, Any]]:
    """One increment per receiver × municipality × area × category × week × day, with the number ``n`` of
    events it stands for, and the county copy of each municipal one (in the order keys first appear)."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for inc in increments:
        for each in (inc, county_increment(inc, county_code)):
            if each is None:
                continue
            key = (*(each.get(f) for f in _COALESCED), bool(each.get("county_copy")))
            seen = out.get(key)
            if seen is None:
                out[key] = {**{f: each.get(f) for f in _COALESCED}, "n": each.get("n", 1),
                            **({"county_copy": True} if each.get("county_copy") else {})}  # fmt: skip
            else:
                seen["n"] += each.get("n", 1)
    return list(out.values())


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

    def watches(self, inc: dict[str, Any]) -> bool:
        """Whether an increment is one the wave check counts (a municipal area's burglaries for the lägesbild)."""
        return (inc["category"] == self.category and bool(inc.get("area")) and not inc.get("county_copy")
                and inc["receiver"] == "lagesbild")  # fmt: skip

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
    if not area or not rule.watches(inc):
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
