"""The traffic simulator: determinism, validity, coverage, consent lifecycles, category mix, test numbers."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from itertools import islice

import pytest

from connectors.base import event_topic
from connectors.simulator.generate import (
    DEFAULT_MUNICIPALITIES,
    LOCAL_TZ,
    MUNICIPALITIES,
    SCHEMA_VERSIONS,
    Simulator,
    is_weekend_night,
    paced,
    rate_schedule,
    replay_start,
    wall_clock_rates,
)
from connectors.simulator.testpersons import (
    NotInTestSeriesError,
    is_test_personnummer,
    make_test_personnummer,
    random_test_personnummer,
)
from hub.contract import personnummer as pnr
from hub.contract.base import model_for_event_type
from hub.contract.envelope import Event
from hub.contract.events import ConsentGiven, ConsentWithdrawn, IncidentReport
from hub.contract.registry import SchemaRegistry
from hub.contract.serde import Serde

START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday


@lru_cache(maxsize=1)
def serde() -> Serde:
    return Serde()


@lru_cache(maxsize=4)
def stream(seed: int, n: int) -> tuple[Event, ...]:
    return tuple(Simulator(seed, START).events(n))


# -- test personnummer ----------------------------------------------------------------------------------


def test_test_personnummer_series() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        number = random_test_personnummer(rng, on=date(2026, 3, 2), min_age=0, max_age=90)
        assert pnr.is_valid(number)
        assert is_test_personnummer(number)
        assert 980 <= int(number[8:11]) <= 999
    assert make_test_personnummer(date(2009, 4, 12), 981) == "200904129814"
    assert is_test_personnummer("20090412-9814")
    assert is_test_personnummer("0904129814")
    with pytest.raises(NotInTestSeriesError):
        make_test_personnummer(date(2009, 4, 12), 123)


def test_is_test_personnummer_refuses_other_numbers() -> None:
    assert not is_test_personnummer("19121212-1212")  # valid Luhn, ordinary serial
    assert not is_test_personnummer("200904129815")  # wrong check digit
    assert not is_test_personnummer("garbage")
    # a samordningsnummer with a test serial is not in the series
    nine = "090472981"
    check = next(d for d in "0123456789" if pnr.luhn_ok(nine + d))
    assert pnr.is_valid("2009047298" + "1" + check)
    assert not is_test_personnummer("2009047298" + "1" + check)


def test_random_test_personnummer_has_the_requested_age() -> None:
    rng = random.Random(3)
    on = date(2024, 2, 29)
    for _ in range(500):
        number = random_test_personnummer(rng, on=on, min_age=12, max_age=17)
        assert 12 <= pnr.age_on(number, on) <= 17


# -- simulator ------------------------------------------------------------------------------------------


def test_same_seed_same_bytes_different_seed_different() -> None:
    a = [serde().encode(e) for e in Simulator(42, START).events(500)]
    b = [serde().encode(e) for e in Simulator(42, START).events(500)]
    c = [serde().encode(e) for e in Simulator(43, START).events(500)]
    assert a == b
    assert a != c
    sim = Simulator(42, START)  # repeated calls on one simulator start over
    assert list(sim.events(50)) == list(sim.events(50))


def test_every_event_validates_encodes_and_round_trips() -> None:
    for event in stream(1, 5000):
        model = model_for_event_type(event.EVENT_TYPE)
        assert model is type(event)
        again = model.model_validate(event.model_dump())
        assert again == event
        assert serde().decode(serde().encode(event)) == event
        env = event.envelope
        assert env.recorded_at >= env.occurred_at
        if env.subject is not None:
            assert is_test_personnummer(env.subject.personnummer)


def test_all_agencies_municipalities_and_types_appear() -> None:
    events = stream(1, 5000)
    agencies = {e.envelope.source_agency.value for e in events}
    assert agencies == {"polisen", "kommun", "kriminalvarden"}
    assert {e.envelope.municipality_code for e in events} == set(DEFAULT_MUNICIPALITIES)
    types = Counter(e.EVENT_TYPE for e in events)
    expected = {
        "polisen.incident_report",
        "polisen.minor_suspected",
        "polisen.child_concern",
        "polisen.extremism_concern",
        "polisen.citizen_promise_action",
        "kriminalvarden.release_scheduled",
        "kriminalvarden.probation_started",
        "kriminalvarden.probation_ended",
        "kommun.child_concern_report",
        "kommun.sig_referral",
        "kommun.consent_given",
        "kommun.consent_withdrawn",
        "kommun.youth_activity",
        "kommun.watch_area_registered",
        "kommun.citizen_promise_action",
        "kommun.safety_survey_result",
    }
    assert expected <= set(types)
    assert types["polisen.extremism_concern"] < types["polisen.minor_suspected"]  # rare


def test_population_weighting() -> None:
    counts = Counter(e.envelope.municipality_code for e in stream(1, 5000) if isinstance(e, IncidentReport))
    order = ["1380", "1384", "1383", "1382", "1381", "1315"]  # Halmstad > ... > Hylte
    values = [counts[c] for c in order]
    assert values == sorted(values, reverse=True), counts


def test_timestamps_advance() -> None:
    events = stream(1, 5000)
    times = [e.envelope.occurred_at for e in events]
    assert times == sorted(times)
    assert times[0] >= START
    assert times[-1] - times[0] > timedelta(days=20)


def test_watch_areas_registered_once_per_area() -> None:
    regs = Counter(
        (e.envelope.municipality_code, e.envelope.area)
        for e in stream(1, 5000)
        if e.EVENT_TYPE == "kommun.watch_area_registered"
    )
    expected = {(m.code, a) for m in MUNICIPALITIES.values() for a in m.areas}
    assert set(regs) == expected
    assert set(regs.values()) == {1}
    assert {a for m in ("1381",) for a in MUNICIPALITIES[m].areas} >= {"Centrum", "Mellbystrand", "Skottorp"}


def test_withdrawals_follow_a_consent_for_the_same_person_and_scope() -> None:
    given: dict[str, tuple[str, str, datetime]] = {}
    withdrawals = 0
    for e in stream(1, 5000):
        assert e.envelope.subject is not None or not isinstance(e, ConsentGiven | ConsentWithdrawn)
        if isinstance(e, ConsentGiven):
            assert e.envelope.subject is not None
            given[e.payload.consent_id] = (
                e.envelope.subject.personnummer,
                e.payload.scope.value,
                e.envelope.occurred_at,
            )
            assert e.payload.scope.value in {"sig", "release_planning"}
        elif isinstance(e, ConsentWithdrawn):
            withdrawals += 1
            assert e.envelope.subject is not None
            assert e.payload.consent_id in given
            person, scope, at = given[e.payload.consent_id]
            assert person == e.envelope.subject.personnummer
            assert scope == e.payload.scope.value
            assert at < e.envelope.occurred_at
    assert withdrawals >= 3


def test_follow_ups_concern_the_same_person() -> None:
    events = stream(1, 5000)
    consented = {
        (e.envelope.subject.personnummer, e.payload.scope.value)
        for e in events
        if isinstance(e, ConsentGiven) and e.envelope.subject is not None
    }
    referrals = [e for e in events if e.EVENT_TYPE == "kommun.sig_referral"]
    releases = [e for e in events if e.EVENT_TYPE == "kriminalvarden.release_scheduled"]
    with_sig = sum((e.envelope.subject.personnummer, "sig") in consented for e in referrals if e.envelope.subject)
    with_rp = sum(
        (e.envelope.subject.personnummer, "release_planning") in consented for e in releases if e.envelope.subject
    )
    assert 0 < with_sig <= len(referrals)
    assert 0 < with_rp < len(releases)


def test_ages_by_kind() -> None:
    ranges = {
        "polisen.minor_suspected": (12, 17),
        "kommun.sig_referral": (15, 25),
        "kriminalvarden.release_scheduled": (15, 60),
        "polisen.child_concern": (0, 17),
        "kommun.child_concern_report": (0, 17),
    }
    for e in stream(1, 5000):
        if e.EVENT_TYPE in ranges:
            age = e.envelope.age()
            lo, hi = ranges[e.EVENT_TYPE]
            assert age is not None
            assert lo <= age <= hi + 1, (e.EVENT_TYPE, age)  # +1: follow-ups come days later


def test_category_mix_and_weekend_rhythm() -> None:
    reports = [e for e in stream(1, 5000) if isinstance(e, IncidentReport)]
    cats = Counter(e.payload.category.value for e in reports)
    assert cats.most_common(1)[0][0] == "theft"
    for c in ("theft", "residential_burglary", "vandalism", "assault", "drugs", "traffic", "fraud"):
        assert cats[c] > 0, c
    assert cats["shooting_explosion"] < cats["assault"] < cats["theft"]
    assert "summary" not in cats
    # more reports per hour on Friday/Saturday nights than on other nights (22-04)
    weekend: Counter[str] = Counter()
    for e in reports:
        local = e.envelope.occurred_at.astimezone(LOCAL_TZ)
        if local.hour >= 22 or local.hour < 4:
            weekend["weekend" if is_weekend_night(local) else "other"] += 1
    # 2 weekend nights vs 5 other nights of 6 hours in a week (roughly)
    assert weekend["weekend"] / 2 > 1.5 * weekend["other"] / 5
    violent_weekend = sum(
        1
        for e in reports
        if is_weekend_night(e.envelope.occurred_at.astimezone(LOCAL_TZ)) and e.payload.category.value == "assault"
    )
    assert violent_weekend > 0


def test_areas_belong_to_the_municipality() -> None:
    for e in stream(1, 5000):
        if e.envelope.area is not None:
            assert e.envelope.area in MUNICIPALITIES[e.envelope.municipality_code].areas


def test_subset_of_municipalities_and_validation() -> None:
    events = list(Simulator(5, START, ["1381"]).events(300))
    assert {e.envelope.municipality_code for e in events} == {"1381"}
    with pytest.raises(ValueError, match="non-empty subset"):
        Simulator(5, START, ["9999"])
    with pytest.raises(ValueError, match="non-empty subset"):
        Simulator(5, START, [])


def test_endless_stream_and_naive_start() -> None:
    sim = Simulator(9, datetime(2026, 6, 1, 12, 0))  # naive: taken as UTC
    first = list(islice(sim.events(), 20))
    assert len(first) == 20
    assert first[0].envelope.occurred_at.tzinfo is not None


def test_schema_versions_are_the_latest() -> None:
    registry = SchemaRegistry()
    for event in {e.EVENT_TYPE: e for e in stream(1, 5000)}.values():
        latest = registry.latest(type(event).SCHEMA_NAME)
        assert latest is not None
        assert event.envelope.schema_version == latest.version
        assert SCHEMA_VERSIONS.get(event.EVENT_TYPE, 1) == latest.version


def test_rate_schedule_and_paced() -> None:
    assert list(rate_schedule(4, 1.0)) == [0.0, 0.25, 0.5, 0.75]
    assert list(islice(rate_schedule(0.5), 3)) == [0.0, 2.0, 4.0]
    assert list(paced("abc", 2)) == [(0.0, "a"), (0.5, "b"), (1.0, "c")]
    assert [x for _, x in paced(range(100), 10, duration_s=0.5)] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="rate must be"):
        list(rate_schedule(0))


def test_a_demo_length_run_replays_the_recent_past_so_sig_consents_are_valid() -> None:
    """Simulated time runs ~50,000x faster than the wall clock; started at now, every SIG consent of a one-minute
    run would be valid only from a future date and the hub would (rightly) refuse every referral."""
    from hub.audit import AuditChain
    from hub.contract.outputs import AuditRecord
    from hub.contract.serde import Serde
    from hub.flows.routing import Router
    from hub.pipeline import Message, Pipeline
    from hub.pseudonym import Pseudonymiser
    from hub.rules.model import load_rules
    from hub.settings import HubSettings
    from hub.topics import Topics

    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    start = replay_start(now, rate=50, duration_s=60)
    events = list(Simulator(2026, start).events(3000))
    assert start < now
    assert max(e.envelope.occurred_at for e in events) <= now + timedelta(days=2)

    settings = HubSettings()
    serde = Serde()
    pipeline = Pipeline(Router(load_rules(settings.rules_path), "13"), serde, Pseudonymiser(settings),
                        seen={}, consents={}, chain=AuditChain(), topics=Topics())  # fmt: skip
    sig: Counter[str] = Counter()
    for i, e in enumerate(events):
        result = pipeline.process(Message(event_topic(e, Topics()), 0, i, None, serde.encode(e)), now=now)
        for out in result.outputs:
            record = serde.decode(out.value) if out.topic == "hub.audit" else None
            if isinstance(record, AuditRecord) and record.receiver == "sig":
                sig[record.decision.value] += 1
    assert sig["delivered"] >= 5  # consented referrals reach SIG ...
    assert sig["refused"] >= 1  # ... and the ones without consent do not


def test_on_the_wall_clock_simulated_time_runs_with_the_rate() -> None:
    """``hub simulate --clock wall`` (the soak's traffic): at 400 events/s, 24,000 events span about a minute
    of simulated time from the start, not months, so calendar-bound state grows as in service; the agencies'
    kinds still come (their mix is that of the hour simulated, by the daily profiles)."""
    rates = wall_clock_rates(400.0)
    assert sum(rates.values()) == pytest.approx(400.0 * 86_400)
    start = datetime(2026, 11, 23, 12, tzinfo=UTC)
    events = list(Simulator(7, start, daily_rates=rates).events(24_000))
    span = max(e.envelope.occurred_at for e in events) - start
    assert timedelta(seconds=50) < span < timedelta(seconds=70)
    kinds = Counter(e.envelope.event_type for e in events)
    assert kinds.most_common(1)[0][0] == "polisen.incident_report"
    assert {"kommun.consent_given", "kommun.sig_referral", "kriminalvarden.release_scheduled"} <= set(kinds)
    with pytest.raises(ValueError, match="positive"):
        wall_clock_rates(0)


@pytest.mark.timeout(120)
def test_a_run_that_uses_up_the_test_series_goes_on_with_people_met_before() -> None:
    """A soak at 2,000 events/s on the wall clock used up the test series of an age range after ~550,000
    events, and ``hub simulate`` looped forever drawing a new person (publishing nothing more, at 100 % CPU).
    One age on one day: a year of birth dates × 20 test serials = ~7,300 people."""
    from connectors.simulator.generate import _Run

    at = datetime(2026, 11, 23, 12, tzinfo=UTC)
    run = _Run(Simulator(3, at))
    people = [run.person(at, 15, 15) for _ in range(9000)]
    assert all(is_test_personnummer(p) for p in people)
    assert 7000 <= len(set(people)) <= 7320
