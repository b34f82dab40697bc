"""The lägesbild stage: counts per receiver × municipality × area × category × period, small counts hidden."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from connectors.polisen_feed.connector import HALLAND, to_event
from connectors.polisen_feed.mapping import parse_event
from hub.contract.outputs import AreaAlert, LagesbildAggregate
from hub.contract.serde import Serde
from hub.flows.lagesbild import Counts, Horizon, WaveRule, check_wave, coalesce, county_increment
from hub.lagesbild_stage import LagesbildStage
from hub.lagesbild_store import counts_of
from hub.topics import Topics
from tests import factories as f
from tests.hub.support import HubUnderTest, running_hub


def increment(area: str = "Centrum", week: str = "2026-W33", day: str = "2026-08-14",
              event_id: str | None = None) -> dict[str, object]:  # fmt: skip
    return {"receiver": "lagesbild", "municipality_code": "1381", "area": area, "category": "residential_burglary",
            "week": week, "day": day, "event_id": event_id or str(uuid.uuid4()),
            "event_type": "polisen.incident_notice", "participants": None}  # fmt: skip


def test_counts_one_and_two_never_leave_unsuppressed() -> None:
    counts = Counts()
    shown = []
    for _ in range(4):
        shown.append([(p.record.area, p.record.period_kind.value, p.record.count, p.record.suppressed)
                      for p in counts.apply(increment())])  # fmt: skip
    both = [("Centrum", "week"), ("Centrum", "day"), (None, "week"), (None, "day")]  # the area and the total
    assert shown == [
        [(a, k, None, True) for a, k in both],  # 1: published as "<3"
        [],  # 2: nothing, not even a suppressed update (that would reveal the change)
        [(a, k, 3, False) for a, k in both],
        [(a, k, 4, False) for a, k in both],
    ]


def test_a_coalesced_increment_counts_its_n_events_and_the_state_is_one_count_per_key() -> None:
    counts = Counts()
    counts.apply({**increment(), "n": 2})  # two events in one batch: 0 → 2, published once as "<3"
    assert {p.record.count for p in counts.apply({**increment(), "n": 3})} == {5}
    written = dict(counts.drain())  # what the batch writes to hub.lagesbild-state
    assert written == {k: 5 for k in counts.counts}
    assert len(written) == 4  # the area and the municipality total, per week and per day: not per event
    assert counts.drain() == []  # nothing changed since
    restarted = Counts(dict(written))  # what a restarted worker loads
    assert restarted.counts == counts.counts


def test_a_batch_of_increments_is_coalesced_per_key_with_its_county_copy() -> None:
    made = [increment(), increment(), increment(area="Söder"), {**increment(), "receiver": "ungdom"}]
    out = coalesce(made, "13")
    got = {(i["receiver"], i["municipality_code"], i["area"], i.get("county_copy", False)): i["n"] for i in out}
    assert got == {
        ("lagesbild", "1381", "Centrum", False): 2, ("lagesbild", "1381", "Söder", False): 1,
        ("lagesbild", "13", None, True): 3, ("ungdom", "1381", "Centrum", False): 1, ("ungdom", "13", None, True): 1,
    }  # fmt: skip
    assert all("event_id" not in i for i in out)  # nothing about single events leaves the batch


def test_county_copy_is_made_once() -> None:
    county = county_increment(increment(), "13")
    assert county is not None
    assert county["municipality_code"] == "13"
    assert county["area"] is None
    assert county_increment(county, "13") is None


def test_the_stage_produces_aggregates_alert_and_state_records_in_that_order() -> None:
    """What the worker produces for the increments of a batch, in order: the aggregates (latest state per
    key), the alert, then one state record per key changed, in the increments' partition."""
    topics, serde = Topics(), Serde()
    stage = LagesbildStage(serde, topics, "13", WaveRule(min_count=3, factor=2.0), alerts={})
    counts = Counts()
    wave = [{**increment(day=d, week="2026-W28"), "n": 1} for d in ("2026-07-06", "2026-07-07", "2026-07-08")]
    first, _second, third = (stage.process(counts, json.dumps(inc).encode(), 4) for inc in wave)

    assert [o.topic for o in first] == [topics.deliver("lagesbild", "1381")] * 4 + [topics.lagesbild_state] * 4
    assert {o.partition for o in first[4:]} == {4}  # beside the increments, in the partition this worker reloads
    assert {json.loads(o.key or b"") for o in first[4:]} == set(counts.counts) - {
        "lagesbild|1381|Centrum|residential_burglary|2026-07-07",
        "lagesbild|1381|Centrum|residential_burglary|2026-07-08",
        "lagesbild|1381|-|residential_burglary|2026-07-07", "lagesbild|1381|-|residential_burglary|2026-07-08"}

    alert_out = [o for o in third if o.topic == topics.deliver("grannsamverkan", "1381")]
    assert [o.key for o in alert_out] == [b"Centrum"]
    alert = serde.decode(alert_out[0].value)
    assert isinstance(alert, AreaAlert)
    assert alert.count_7d == 3
    aggregates = [serde.decode(o.value) for o in third if o.topic == topics.deliver("lagesbild", "1381")]
    shown = {(a.area, a.period_kind.value, a.count) for a in aggregates if isinstance(a, LagesbildAggregate)}
    assert shown == {("Centrum", "week", 3), (None, "week", 3), ("Centrum", "day", None), (None, "day", None)}
    assert [o.key for o in third[:4]] == [b"Centrum|residential_burglary|2026-W28",
                                          b"Centrum|residential_burglary|2026-07-08",
                                          b"-|residential_burglary|2026-W28",
                                          b"-|residential_burglary|2026-07-08"]  # fmt: skip
    assert [o.topic for o in third[4:]] == [topics.deliver("grannsamverkan", "1381")] + [topics.lagesbild_state] * 4


def test_a_coalesced_burglary_increment_alerts_at_the_count_that_crossed_the_threshold() -> None:
    """Five burglaries in one batch: the wave check sees them one at a time, so the alert says 3 as it would
    have with one increment per event."""
    topics, serde = Topics(), Serde()
    stage = LagesbildStage(serde, topics, "13", WaveRule(min_count=3, factor=2.0), alerts={})
    counts = Counts()
    out = stage.process(counts, json.dumps({**increment(), "n": 5}).encode(), 0)
    [alert] = [serde.decode(o.value) for o in out if o.topic == topics.deliver("grannsamverkan", "1381")]
    assert isinstance(alert, AreaAlert)
    assert alert.count_7d == 3
    assert counts.counts["lagesbild|1381|Centrum|residential_burglary|2026-W33"] == 5


def test_an_older_per_event_increment_is_counted_once_and_its_county_copy_made_by_the_stage() -> None:
    topics = Topics()
    stage = LagesbildStage(Serde(), topics, "13", WaveRule(), alerts={})
    counts = Counts()
    out = stage.process(counts, json.dumps(increment(area="Söder")).encode(), 4)  # no n: one event, as before
    [copy] = [o for o in out if o.topic == topics.lagesbild]
    assert copy.key == b"lagesbild|13"
    county = json.loads(copy.value)
    assert (county["municipality_code"], county["area"], county["county_copy"]) == ("13", None, True)
    assert counts.counts["lagesbild|1381|Söder|residential_burglary|2026-W33"] == 1
    assert [o for o in stage.process(counts, copy.value, 7) if o.topic == topics.lagesbild] == []


def test_older_per_event_state_records_are_converted_on_load_and_retired() -> None:
    """State written before the counts were kept per key: counted on load, then replaced by count records and
    tombstones for the old records in the first batch."""
    keys = ["lagesbild|1381|Centrum|theft|2026-W33", "lagesbild|1381|-|theft|2026-W33"]
    older = {f"lagesbild|1381|{uuid.uuid4()}": keys for _ in range(3)}
    counts = counts_of({**older, "lagesbild|1381|-|theft|2026-W34": 2})
    assert counts.counts == {keys[0]: 3, keys[1]: 3, "lagesbild|1381|-|theft|2026-W34": 2}
    drained = counts.drain()
    assert {k: v for k, v in drained if v is None} == dict.fromkeys(older)  # tombstones for the old records
    assert {k: v for k, v in drained if v is not None} == counts.counts


@pytest.fixture(scope="module")
def hub(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubUnderTest]:
    with running_hub(kafka_bootstrap, tmp_path_factory.mktemp("lagesbild"), "lb") as h:
        yield h


def latest(records: list[object]) -> dict[tuple[str | None, str, str], LagesbildAggregate]:
    out: dict[tuple[str | None, str, str], LagesbildAggregate] = {}
    for r in records:
        if isinstance(r, LagesbildAggregate) and r.period_kind.value == "week":
            out[(r.area, r.category, r.period)] = r
    return out


@pytest.mark.kafka
def test_the_300_real_police_events_give_the_counts_the_file_gives(hub: HubUnderTest, shared_data: Path) -> None:
    raw = json.loads((shared_data / "polisen-events-sample.json").read_text(encoding="utf-8"))
    notices = [parse_event(item, municipalities=HALLAND) for item in raw]
    hub.publish([to_event(n) for n in notices])

    expected: Counter[tuple[str, str, str]] = Counter()
    for n in notices:
        iso = n.occurred_at.astimezone(f.NOW.tzinfo).isocalendar()
        expected[(n.municipality_code, n.category, f"{iso.year}-W{iso.week:02d}")] += 1
    codes = sorted({code for code, _, _ in expected})
    topics = [hub.topics.deliver("lagesbild", c) for c in codes]

    def complete(got: dict[str, list[object]]) -> bool:
        seen = {(t, k) for t in topics for k in latest(got[t])}
        return len(seen) >= len(expected)

    got = hub.read(topics, until=complete, quiet_s=3)
    for (code, category, week), count in expected.items():
        agg = latest(got[hub.topics.deliver("lagesbild", code)]).get((None, category, week))
        assert agg is not None, (code, category, week)
        if count >= 3:
            assert agg.count == count, (code, category, week)
        else:
            assert agg.suppressed, (code, category, week)
            assert agg.count is None


@pytest.mark.kafka
def test_hub_lagesbild_report_for_people_and_programs(hub: HubUnderTest) -> None:
    import subprocess
    import sys

    from tests.hub.support import REPO

    burglaries = [f.incident_notice("residential_burglary", "1315", area="Hyltebruk") for _ in range(4)]
    hub.publish([*burglaries, f.incident_notice("assault", "1315", area="Hyltebruk")])
    topic = hub.topics.deliver("lagesbild", "1315")
    hub.read([topic], until=lambda g: any(isinstance(r, LagesbildAggregate) and r.count == 4 for r in g[topic]))

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "hub.cli", "lagesbild", "1315", *args], cwd=REPO,
                              env=hub.env, capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
        return done.stdout

    rows = json.loads(run("--json"))
    total = {(r["category"], r["area"]): r for r in rows}
    assert total[("residential_burglary", None)]["count"] == 4
    assert total[("assault", None)]["suppressed"] is True
    assert total[("assault", None)]["count"] is None
    table = run()
    assert "residential_burglary" in table
    assert "<3" in table
    assert "Hyltebruk" in table
    assert "residential_burglary,2026-W33,4" in run("--csv").replace(",,", ",")


def burglaries(days: list[str], area: str = "Mellbystrand") -> list[dict[str, object]]:
    out = []
    for day in days:
        d = date.fromisoformat(day)
        iso = d.isocalendar()
        out.append({**increment(area=area, day=day, week=f"{iso.year}-W{iso.week:02d}")})
    return out


def run_series(days: list[str]) -> list[AreaAlert]:
    counts = Counts()
    state: dict[str, bool] = {}
    alerts = []
    for inc in burglaries(days):
        counts.apply(inc)
        alert = check_wave(counts.counts, state, inc, WaveRule())
        if alert is not None:
            alerts.append(alert)
    return alerts


def weekly(start: str, weeks: int, per_week: int = 1) -> list[str]:
    first = date.fromisoformat(start)
    return [(first + timedelta(weeks=w, days=k)).isoformat() for w in range(weeks) for k in range(per_week)]


def test_a_burglary_wave_alerts_once_and_a_flat_series_never() -> None:
    background = weekly("2026-05-04", 9)  # one a week for nine weeks: flat
    assert run_series(background) == []
    assert run_series(weekly("2026-05-04", 10, per_week=2)) == []  # two a week, steadily: still flat

    wave = [*background, "2026-07-06", "2026-07-07", "2026-07-07", "2026-07-08", "2026-07-09"]
    alerts = run_series(wave)
    assert len(alerts) == 1  # once per wave, not once per burglary
    (alert,) = alerts
    assert alert.area == "Mellbystrand"
    assert alert.count_7d >= 3
    assert alert.count_7d >= 2 * alert.trailing_weekly_mean

    calm_then_second_wave = [*wave, "2026-08-03", "2026-08-24", "2026-08-25", "2026-08-25", "2026-08-26"]
    assert len(run_series(calm_then_second_wave)) == 2  # a new wave after the first ended


@pytest.mark.kafka
def test_the_worker_sends_one_alert_to_neighbourhood_watch(hub: HubUnderTest) -> None:
    start = datetime(2026, 3, 2, 10, tzinfo=UTC)
    flat = [f.incident_notice("residential_burglary", "1382", area="Skrea", occurred_at=start + timedelta(weeks=w))
            for w in range(9)]  # fmt: skip
    wave = [f.incident_notice("residential_burglary", "1382", area="Skrea",
                              occurred_at=start + timedelta(weeks=9, hours=5 * k)) for k in range(5)]  # fmt: skip
    hub.publish(flat)
    hub.publish(wave)
    topic = hub.topics.deliver("grannsamverkan", "1382")
    got = hub.read([topic], until=lambda g: any(isinstance(r, AreaAlert) for r in g[topic]), quiet_s=4)
    alerts = [r for r in got[topic] if isinstance(r, AreaAlert)]
    assert len(alerts) == 1
    assert alerts[0].area == "Skrea"
    assert alerts[0].count_7d == 3  # sent as soon as the wave crosses the threshold, not again after


def test_by_default_no_count_expires() -> None:
    counts = Counts()
    counts.apply(increment(day="2019-01-05", week="2019-W01"))
    counts.apply(increment(day="2026-08-14", week="2026-W33"))  # years later: the old figures still count on
    assert len(counts.counts) == 8
    assert {p.count for p in counts.apply(increment(day="2019-01-05", week="2019-W01"))} == set()  # 2: "<3" stays
    assert counts.counts["lagesbild|1381|Centrum|residential_burglary|2019-W01"] == 2


def test_counts_older_than_the_horizon_leave_the_state_and_a_late_increment_is_not_counted() -> None:
    """With a horizon the state stays bounded by it: the newest day counted moves the horizon, the counts of
    periods that ended before it are dropped (tombstoned), and an event for such a period no longer changes
    its final figure."""
    counts = Counts(horizon=Horizon(day_days=70, week_days=400))
    counts.apply({**increment(day="2024-01-05", week="2024-W01"), "n": 4})
    counts.drain()
    assert len(counts.counts) == 4
    counts.apply(increment(day="2024-03-20", week="2024-W12"))  # 74 days later: the day counts of 5 Jan expire
    drained = dict(counts.drain())
    assert drained["lagesbild|1381|Centrum|residential_burglary|2024-01-05"] is None  # a tombstone
    assert drained["lagesbild|1381|-|residential_burglary|2024-01-05"] is None
    assert counts.counts["lagesbild|1381|Centrum|residential_burglary|2024-W01"] == 4  # weeks are kept longer
    late = counts.apply(increment(day="2024-01-05", week="2024-W01"))  # arrives after its day's horizon
    assert {p.period for p in late} == {"2024-W01"}  # counted into its week, not into the expired day
    assert counts.counts["lagesbild|1381|Centrum|residential_burglary|2024-W01"] == 5
    assert "lagesbild|1381|Centrum|residential_burglary|2024-01-05" not in counts.counts
    counts.apply(increment(day="2025-03-01", week="2025-W09"))  # more than 400 days after week 2: all of it is final
    assert counts.apply(increment(day="2024-01-06", week="2024-W01")) == []
    assert counts.too_late == 1
    assert not any(k.endswith("2024-W01") for k in counts.counts)


def test_a_date_far_in_the_future_does_not_expire_the_present() -> None:
    counts = Counts(horizon=Horizon(day_days=70, week_days=400))
    today = datetime.now(UTC).date()
    iso = today.isocalendar()
    counts.apply(increment(day=today.isoformat(), week=f"{iso.year}-W{iso.week:02d}"))
    counts.apply(increment(day="2199-12-31", week="2199-W52"))  # mistyped: the horizon moves to tomorrow at most
    assert sum(1 for k in counts.counts if today.isoformat() in k) == 2
