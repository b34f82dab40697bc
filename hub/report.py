"""``hub lagesbild``: the situational picture for a municipality or the county, as a receiver sees it.

Reads ``deliver.lagesbild.<kommunkod>`` (what left the hub, already suppressed) and keeps the latest
aggregate per area × category × period. Output: a readable table (categories × weeks, "<3" for
suppressed counts), ``--json`` or ``--csv``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from hub.contract.outputs import LagesbildAggregate
from hub.contract.serde import Serde
from hub.kafka.clients import KafkaAccess
from hub.kafka.read import read_to_end
from hub.settings import HubSettings
from hub.topics import Topics


@dataclass(frozen=True)
class Row:
    area: str | None
    category: str
    period: str
    count: int | None
    suppressed: bool

    @property
    def shown(self) -> str:
        return "<3" if self.suppressed else str(self.count)


async def load(settings: HubSettings, kafka: KafkaAccess, municipality: str, kind: str = "week") -> list[Row]:
    serde = Serde()
    latest: dict[tuple[str | None, str, str], Row] = {}
    topic = Topics(settings.topic_namespace).deliver("lagesbild", municipality)
    async for m in read_to_end(kafka, [topic]):
        rec = serde.decode(m.value)
        if isinstance(rec, LagesbildAggregate) and rec.period_kind.value == kind:
            latest[(rec.area, rec.category, rec.period)] = Row(rec.area, rec.category, rec.period, rec.count,
                                                               rec.suppressed)  # fmt: skip
    return sorted(latest.values(), key=lambda r: (r.period, r.category, r.area or ""))


def select(rows: list[Row], since: str | None, until: str | None, categories: list[str] | None) -> list[Row]:
    return [r for r in rows if (since is None or r.period >= since) and (until is None or r.period <= until)
            and (not categories or r.category in categories)]  # fmt: skip


def as_json(rows: list[Row]) -> str:
    return json.dumps([{"area": r.area, "category": r.category, "period": r.period, "count": r.count,
                        "suppressed": r.suppressed} for r in rows], ensure_ascii=False)  # fmt: skip


def as_csv(rows: list[Row]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["area", "category", "period", "count"])
    for r in rows:
        writer.writerow([r.area or "", r.category, r.period, r.shown])
    return buf.getvalue()


def as_table(rows: list[Row], municipality: str) -> str:
    """Categories down, periods across; municipality-wide counts (area-level rows are listed after)."""
    periods = sorted({r.period for r in rows})[-8:]
    categories = sorted({r.category for r in rows if r.area is None})
    cell = {(r.category, r.period): r.shown for r in rows if r.area is None}
    width = max([len(c) for c in categories] + [8])
    lines = [f"Lägesbild {municipality} (counts below 3 shown as <3)",
             " " * width + "".join(f"{p:>10}" for p in periods)]  # fmt: skip
    lines += [c.ljust(width) + "".join(f"{cell.get((c, p), ''):>10}" for p in periods) for c in categories]
    by_area = [r for r in rows if r.area is not None and r.period in periods]
    if by_area:
        lines.append("by area:")
        lines += [f"  {r.period}  {r.area:<20} {r.category:<24} {r.shown}" for r in by_area]
    return "\n".join(lines)


async def indicators(settings: HubSettings, kafka: KafkaAccess, municipality: str, weeks: int = 8) -> dict[str, object]:
    """The neighbourhood-watch effect over the last ``weeks`` reported weeks and the follow-up of every
    citizen-promise action, from the receivers' own topics (suppressed counts count as 0)."""
    from datetime import date as date_

    from hub.contract.outputs import Delivery
    from hub.indicators import WeeklyCount, neighbourhood_watch_effect, promise_follow_up

    rows = await load(settings, kafka, municipality)
    counts = [WeeklyCount(r.area, r.category, r.period, r.count or 0) for r in rows if r.area is not None]
    topics = Topics(settings.topic_namespace)
    serde = Serde()
    watch: dict[str, int | None] = {}
    promises: list[Delivery] = []
    deliveries = [topics.deliver("grannsamverkan", municipality), topics.deliver("medborgarloften", municipality)]
    async for m in read_to_end(kafka, deliveries):
        d = serde.decode(m.value)
        if not isinstance(d, Delivery):
            continue
        if d.event_type == "kommun.watch_area_registered" and "envelope.area" in d.fields:
            area = json.loads(d.fields["envelope.area"])
            if area:
                watch[area] = json.loads(d.fields.get("payload.households", "null"))
        elif d.event_type.endswith("citizen_promise_action"):
            promises.append(d)
    periods = sorted({r.period for r in rows})[-weeks:]
    effect = neighbourhood_watch_effect(counts, watch, periods)
    follow = [promise_follow_up(counts, json.loads(p.fields["payload.promise_id"]),
                                json.loads(p.fields.get("envelope.area", "null")),
                                json.loads(p.fields["payload.category"]),
                                date_.fromisoformat(json.loads(p.fields["payload.action_date"])))
              for p in promises]  # fmt: skip
    return {
        "municipality": municipality, "weeks": periods, "watch_areas": sorted(watch),
        "neighbourhood_watch_effect": effect.__dict__,
        "citizen_promises": [{**f.__dict__, "action_date": f.action_date.isoformat(), "change": f.change}
                             for f in follow],
    }  # fmt: skip
