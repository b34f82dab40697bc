"""Deterministic, realistic agency traffic for Halland: a pure generator of contract events.

``Simulator(seed, start).events(n)`` yields ``n`` events (or an endless stream) built through the
contract models, so every event validates and encodes. The same seed and start give the same events,
byte for byte: all randomness, including every ``event_id``, comes from one ``random.Random(seed)``
created afresh for each :meth:`Simulator.events` call.

Simulated time
    The stream starts at ``start`` and advances through simulated time (not wall-clock time): event times
    are drawn from a non-homogeneous Poisson process (thinning) per event kind, so ``occurred_at`` never
    decreases along the stream; ``recorded_at`` is ``occurred_at`` plus a plausible registration delay.
    Follow-ups (a SIG referral after the consent, a withdrawal weeks after a consent, a release after its
    release-planning consent, the end of a probation) are queued and emitted when the clock reaches them.
    At about 90 events per simulated day, 5,000 events cover roughly two months.

What is generated (county-wide daily averages in :data:`DAILY_RATES`)
    * police incident reports by municipality and named area, with a category mix that shifts towards
      violence, disorder, drugs and drink-driving on Friday and Saturday nights (weekly rhythm);
    * LUL 6 § notices about suspected minors (12–17), the police's and the municipality's reports of
      concern for a child (a few ``honour_related``), rare extremism concerns;
    * SIG: written consent (scope ``sig``) and the referral (15–25), sometimes a referral without consent;
    * Kriminalvården: scheduled releases (15–60, home municipality), usually preceded by a consent for
      ``release_planning``; probation started (after some releases, and on its own) and ended;
    * consent withdrawals for the same person, scope and consent id, some time after the consent;
    * youth activities with participant counts, citizen-promise actions by police and municipality,
      occasional safety-survey results, and one neighbourhood-watch registration per area at the start.

Municipalities are drawn in proportion to population (:data:`MUNICIPALITIES`). Personnummer come only
from the test series of :mod:`connectors.simulator.testpersons`.

Pacing
    :func:`rate_schedule` and :func:`paced` give send offsets for a target rate; sleeping and producing
    is the job of the connector glue.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Final, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.simulator.testpersons import random_test_personnummer
from hub.contract.envelope import Agency, ConsentScope, DataClass, Envelope, Event, OffenceCategory, Subject
from hub.contract.events import (
    ChildConcern,
    ChildConcernKind,
    ChildConcernPayload,
    ChildConcernReport,
    ChildConcernReportPayload,
    CitizenPromiseActionPayload,
    ConsentGiven,
    ConsentGivenPayload,
    ConsentWithdrawn,
    ConsentWithdrawnPayload,
    ExtremismConcern,
    ExtremismConcernPayload,
    IncidentReport,
    IncidentReportPayload,
    KommunCitizenPromiseAction,
    MinorSuspected,
    MinorSuspectedPayload,
    PolisenCitizenPromiseAction,
    ProbationEnded,
    ProbationEndedPayload,
    ProbationStarted,
    ProbationStartedPayload,
    ReleaseScheduled,
    ReleaseScheduledPayload,
    RiskLevel,
    SafetySurveyResult,
    SafetySurveyResultPayload,
    SigReferral,
    SigReferralPayload,
    WatchAreaRegistered,
    WatchAreaRegisteredPayload,
    YouthActivity,
    YouthActivityPayload,
)

try:
    LOCAL_TZ: tzinfo = ZoneInfo("Europe/Stockholm")
except ZoneInfoNotFoundError:  # pragma: no cover - system without a tz database
    LOCAL_TZ = timezone(timedelta(hours=1))

T = TypeVar("T")


@dataclass(frozen=True)
class Municipality:
    """A municipality the simulator knows: SCB code, name, population (weight) and named areas."""

    code: str
    name: str
    population: int
    areas: tuple[str, ...]
    frivard: str
    """The probation office (frivården) serving it."""


MUNICIPALITIES: Final[Mapping[str, Municipality]] = {
    m.code: m
    for m in (
        Municipality("1315", "Hylte", 11_000, ("Hyltebruk", "Torup", "Unnaryd", "Landeryd", "Rydöbruk"), "Halmstad"),
        Municipality(
            "1380",
            "Halmstad",
            104_000,
            ("Centrum", "Andersberg", "Vallås", "Linehed", "Frösakull", "Oskarström", "Getinge", "Söndrum"),
            "Halmstad",
        ),
        Municipality(
            "1381",
            "Laholm",
            26_000,
            ("Centrum", "Mellbystrand", "Skottorp", "Våxtorp", "Knäred", "Veinge", "Skummeslövsstrand"),
            "Halmstad",
        ),
        Municipality(
            "1382",
            "Falkenberg",
            46_000,
            ("Centrum", "Skrea", "Ullared", "Vessigebro", "Glommen", "Slöinge"),
            "Varberg",
        ),
        Municipality(
            "1383",
            "Varberg",
            67_000,
            ("Centrum", "Håsten", "Trönninge", "Träslövsläge", "Veddige", "Tvååker", "Bua"),
            "Varberg",
        ),
        Municipality(
            "1384",
            "Kungsbacka",
            86_000,
            ("Centrum", "Onsala", "Fjärås", "Åsa", "Kullavik", "Särö", "Frillesås"),
            "Kungsbacka",
        ),
    )
}
"""The six Halland municipalities (population rounded, 2024)."""

DEFAULT_MUNICIPALITIES: Final[tuple[str, ...]] = tuple(MUNICIPALITIES)

SCHEMA_VERSIONS: Final[Mapping[str, int]] = {"kommun.youth_activity": 2}
"""The schema version written per event type when it is not 1 (the latest in ``schemas/``)."""

DAILY_RATES: Final[Mapping[str, float]] = {
    "incident_report": 60.0,
    "minor_suspected": 4.0,
    "police_child_concern": 3.0,
    "kommun_child_concern": 6.0,
    "extremism_concern": 0.15,
    "sig": 0.8,
    "release": 1.0,
    "probation_started": 1.2,
    "probation_ended": 1.0,
    "youth_activity": 8.0,
    "polisen_promise_action": 1.0,
    "kommun_promise_action": 1.0,
    "safety_survey": 0.1,
}
"""Average events per simulated day for the whole county, per generated kind (follow-ups not included)."""

INCIDENT_CATEGORY_WEIGHTS: Final[Mapping[OffenceCategory, float]] = {
    OffenceCategory.theft: 22,
    OffenceCategory.traffic: 13,
    OffenceCategory.vandalism: 12,
    OffenceCategory.fraud: 10,
    OffenceCategory.drugs: 9,
    OffenceCategory.assault: 8,
    OffenceCategory.residential_burglary: 6,
    OffenceCategory.threat_harassment: 6,
    OffenceCategory.other_burglary: 4,
    OffenceCategory.public_order: 3,
    OffenceCategory.domestic_violence: 2,
    OffenceCategory.other: 2,
    OffenceCategory.robbery: 1,
    OffenceCategory.weapons: 1,
    OffenceCategory.sexual_offence: 1,
    OffenceCategory.fire: 1,
    OffenceCategory.missing_person: 0.5,
    OffenceCategory.shooting_explosion: 0.2,
}
"""The incident-report category mix on an ordinary day."""

WEEKEND_NIGHT_BOOST: Final[Mapping[OffenceCategory, float]] = {
    OffenceCategory.assault: 3.0,
    OffenceCategory.public_order: 3.0,
    OffenceCategory.vandalism: 2.0,
    OffenceCategory.drugs: 2.0,
    OffenceCategory.traffic: 1.8,
    OffenceCategory.threat_harassment: 1.5,
    OffenceCategory.fraud: 0.3,
    OffenceCategory.residential_burglary: 0.6,
}
"""Multipliers of :data:`INCIDENT_CATEGORY_WEIGHTS` on Friday and Saturday nights."""

_DESCRIPTIONS: Final[Mapping[OffenceCategory, tuple[str, ...]]] = {
    OffenceCategory.theft: ("Stöld ur butik", "Cykelstöld", "Stöld ur bil", "Stöld av båtmotor", "Fickstöld"),
    OffenceCategory.traffic: ("Rattfylleri", "Olovlig körning", "Trafikolycka med personskada"),
    OffenceCategory.vandalism: ("Klotter på skola", "Krossad busskur", "Skadegörelse på bil"),
    OffenceCategory.fraud: ("Bedrägeri via telefon", "Kortbedrägeri", "Bedrägeri mot äldre"),
    OffenceCategory.drugs: ("Innehav av narkotika", "Eget bruk av narkotika", "Överlåtelse av narkotika"),
    OffenceCategory.assault: ("Misshandel utomhus", "Misshandel vid krog", "Misshandel i bostad"),
    OffenceCategory.residential_burglary: ("Inbrott i villa", "Inbrott i lägenhet", "Försök till inbrott"),
    OffenceCategory.threat_harassment: ("Olaga hot", "Ofredande"),
    OffenceCategory.other_burglary: ("Inbrott i förråd", "Inbrott på arbetsplats", "Inbrott i skola"),
    OffenceCategory.public_order: ("Ordningsstörning", "Förargelseväckande beteende"),
    OffenceCategory.domestic_violence: ("Misshandel i nära relation",),
    OffenceCategory.other: ("Hittegods", "Djur i trafiken"),
    OffenceCategory.robbery: ("Rån mot person", "Butiksrån"),
    OffenceCategory.weapons: ("Brott mot knivlagen", "Vapenbrott"),
    OffenceCategory.sexual_offence: ("Sexuellt ofredande",),
    OffenceCategory.fire: ("Brand i soptunna", "Anlagd brand i förråd"),
    OffenceCategory.missing_person: ("Försvunnen person",),
    OffenceCategory.shooting_explosion: ("Explosion vid flerfamiljshus", "Skottlossning"),
}

_OFFENCE_CODES: Final[Mapping[OffenceCategory, str]] = {
    OffenceCategory.theft: "BrB 8:1",
    OffenceCategory.residential_burglary: "BrB 8:4",
    OffenceCategory.other_burglary: "BrB 8:4",
    OffenceCategory.robbery: "BrB 8:5",
    OffenceCategory.assault: "BrB 3:5",
    OffenceCategory.domestic_violence: "BrB 4:4a",
    OffenceCategory.threat_harassment: "BrB 4:5",
    OffenceCategory.sexual_offence: "BrB 6:10",
    OffenceCategory.fraud: "BrB 9:1",
    OffenceCategory.vandalism: "BrB 12:1",
    OffenceCategory.fire: "BrB 13:1",
    OffenceCategory.drugs: "NSL 1",
    OffenceCategory.traffic: "TBL 4",
    OffenceCategory.weapons: "VapL 9:1",
}

_MINOR_CATEGORIES: Final[Mapping[OffenceCategory, float]] = {
    OffenceCategory.theft: 30,
    OffenceCategory.vandalism: 20,
    OffenceCategory.assault: 15,
    OffenceCategory.drugs: 12,
    OffenceCategory.threat_harassment: 8,
    OffenceCategory.traffic: 6,
    OffenceCategory.robbery: 4,
    OffenceCategory.weapons: 3,
    OffenceCategory.fraud: 2,
}

_CHILD_CONCERN_WEIGHTS: Final[Mapping[ChildConcernKind, float]] = {
    ChildConcernKind.violence_in_home: 30,
    ChildConcernKind.own_behaviour: 30,
    ChildConcernKind.neglect: 15,
    ChildConcernKind.other: 15,
    ChildConcernKind.exploitation: 5,
    ChildConcernKind.honour_related: 4,
}

_CHILD_CONCERN_TEXT: Final[Mapping[ChildConcernKind, str]] = {
    ChildConcernKind.violence_in_home: "Barnet har bevittnat våld i hemmet",
    ChildConcernKind.own_behaviour: "Barnet påträffat berusat sent på kvällen",
    ChildConcernKind.neglect: "Barnet saknar tillsyn under längre tid",
    ChildConcernKind.other: "Övrig oro för barnets situation",
    ChildConcernKind.exploitation: "Oro för att barnet utnyttjas av kriminella",
    ChildConcernKind.honour_related: "Oro för hedersrelaterat förtryck",
}

_REPORTER_ROLES: Final = ("school", "preschool", "health_care", "youth_centre", "relative", "neighbour")
_SIG_REFERRERS: Final = ("socialtjanst", "polisen", "skola", "kriminalvarden")
_SIG_REASONS: Final = (
    "Risk för rekrytering till kriminellt nätverk",
    "Upprepad brottslighet",
    "Narkotikabruk och skolfrånvaro",
    "Våldsbrott och kriminellt umgänge",
)
_EXTREMISM_KINDS: Final = ("violent_right_wing", "violent_islamist", "violent_left_wing", "other")
_INSTITUTIONS: Final = (
    "Anstalten Skogome",
    "Anstalten Kumla",
    "Anstalten Tidaholm",
    "Anstalten Hall",
    "Anstalten Rödjan",
    "Anstalten Skänninge",
    "Anstalten Saltvik",
)
_NEEDS: Final = (
    "housing",
    "employment",
    "addiction_treatment",
    "mental_health",
    "debt_counselling",
    "education",
    "social_network",
)
_PROBATION_END_REASONS: Final = (("completed", 80), ("revoked", 12), ("transferred", 8))
_WITHDRAW_REASONS: Final = ("wishes_no_further_contact", "moved_away", "by_request", None)
_ACTIVITIES: Final = (  # kind, min, max participants
    ("open_youth_centre", 10, 60),
    ("sports_night", 15, 90),
    ("field_work", 5, 40),
    ("homework_help", 4, 25),
    ("music_studio", 3, 15),
    ("esports", 6, 30),
)
_PROMISE_THEMES: Final = (
    (OffenceCategory.residential_burglary, "Färre bostadsinbrott"),
    (OffenceCategory.public_order, "Tryggare centrum kvällstid"),
    (OffenceCategory.traffic, "Säkrare trafik vid skolor"),
    (OffenceCategory.drugs, "Minskad narkotika bland unga"),
    (OffenceCategory.vandalism, "Mindre skadegörelse"),
)
_POLICE_ACTIONS: Final = (
    "Fotpatrullering",
    "Trygghetsvandring",
    "Hastighetskontroll",
    "Narkotikaspaning",
    "Dialogmöte med boende",
    "Besök på skola",
)
_KOMMUN_ACTIONS: Final = (
    "Förbättrad belysning",
    "Sanering av klotter",
    "Fältassistenter ute",
    "Nattvandring med föräldrar",
    "Röjning av buskage",
    "Trygghetsvandring",
)
_PROMISE_STATUS: Final = (("done", 60), ("in_progress", 30), ("planned", 10))
_SURVEY_QUESTIONS: Final = (
    "Känner dig otrygg utomhus i bostadsområdet sent en kväll",
    "Oroar dig för inbrott i bostaden",
    "Avstår från aktiviteter på grund av otrygghet",
)


# -- time profiles (local time) -------------------------------------------------------------------------


def is_weekend_night(local: datetime) -> bool:
    """Friday 18:00 – Saturday 04:00 or Saturday 18:00 – Sunday 04:00 (local time)."""
    wd, h = local.weekday(), local.hour
    return (wd in (4, 5) and h >= 18) or (wd in (5, 6) and h < 4)


def _incident_profile(local: datetime) -> float:
    if is_weekend_night(local):
        return 2.6
    h = local.hour
    if h >= 22 or h < 4:
        return 1.2
    if h < 8:
        return 0.4
    if h >= 18:
        return 1.2
    return 1.0


def _office_profile(local: datetime) -> float:
    return 1.0 if local.weekday() < 5 and 8 <= local.hour < 17 else 0.04


def _youth_profile(local: datetime) -> float:
    if local.weekday() < 5:
        return 1.0 if 15 <= local.hour < 22 else 0.0
    return 1.0 if 10 <= local.hour < 21 else 0.0


def _flat_profile(local: datetime) -> float:
    return 1.0


Profile = Callable[[datetime], float]

_PROFILES: Final[Mapping[str, Profile]] = {
    "incident_report": _incident_profile,
    "minor_suspected": _incident_profile,
    "police_child_concern": _flat_profile,
    "kommun_child_concern": _office_profile,
    "extremism_concern": _office_profile,
    "sig": _office_profile,
    "release": _office_profile,
    "probation_started": _office_profile,
    "probation_ended": _office_profile,
    "youth_activity": _youth_profile,
    "polisen_promise_action": _flat_profile,
    "kommun_promise_action": _office_profile,
    "safety_survey": _office_profile,
}


def _week_hours() -> list[datetime]:
    monday = datetime(2024, 1, 1)  # a Monday; only weekday and hour matter
    return [monday + timedelta(hours=h) for h in range(7 * 24)]


@dataclass(frozen=True)
class _Kind:
    name: str
    profile: Profile
    scale: float  # events per day at profile value 1.0
    peak: float  # scale * max(profile)


def _kinds(rates: Mapping[str, float]) -> tuple[_Kind, ...]:
    hours = _week_hours()
    kinds = []
    for name, rate in rates.items():
        profile = _PROFILES[name]
        values = [profile(h) for h in hours]
        scale = rate / (sum(values) / len(values))
        kinds.append(_Kind(name, profile, scale, scale * max(values)))
    return tuple(kinds)


# -- pacing ---------------------------------------------------------------------------------------------


def rate_schedule(rate: float, duration_s: float | None = None) -> Iterator[float]:
    """Send offsets in seconds from the start (0, 1/rate, 2/rate, ...) for ``rate`` events a second.

    Ends before ``duration_s`` when given, else never. The connector glue sleeps until each offset.
    """
    if not rate > 0 or not math.isfinite(rate):
        raise ValueError("rate must be a positive number of events per second")
    if duration_s is not None and duration_s < 0:
        raise ValueError("duration_s must not be negative")
    for i in itertools.count():
        offset = i / rate
        if duration_s is not None and offset >= duration_s:
            return
        yield offset


def paced(items: Iterable[T], rate: float, duration_s: float | None = None) -> Iterator[tuple[float, T]]:
    """``(send offset in seconds, item)`` pairs at ``rate`` per second, for at most ``duration_s``."""
    return zip(rate_schedule(rate, duration_s), items, strict=False)


# -- the simulator --------------------------------------------------------------------------------------


PERSON_DRAWS = 20
"""Draws for a person not yet in the stream before one already in it is taken again."""


@dataclass(order=True)
class _Pending:
    at: datetime
    seq: int
    make: Callable[[datetime], Event] = field(compare=False)


def replay_start(now: datetime, rate: float, duration_s: float | None,
                 daily_rates: Mapping[str, float] = DAILY_RATES, unbounded_days: float = 30.0) -> datetime:  # fmt: skip
    """Where to start the simulated clock so that a run of ``duration_s`` at ``rate`` events/s ends about ``now``.

    Simulated time runs far faster than the wall clock (a day of Halland traffic every couple of seconds at
    50 events/s). Started at ``now`` it would be days in the future within a minute, and the hub rightly refuses
    a SIG referral whose consent is valid only from a future date. Started in the past, the run replays recent
    weeks instead; an unbounded run starts ``unbounded_days`` back.
    """
    per_day = sum(daily_rates.values())
    days = unbounded_days if duration_s is None or per_day <= 0 else rate * duration_s / per_day
    return (now - timedelta(days=days)).replace(microsecond=0)


def wall_clock_rates(rate: float, daily_rates: Mapping[str, float] = DAILY_RATES) -> dict[str, float]:
    """``daily_rates`` scaled so that the whole stream is ``rate`` events per wall-clock second: paced at
    ``rate``, simulated time then runs with the wall clock (the mix of kinds stays; follow-ups due weeks
    later stay in the future), so calendar-bound state (the lägesbild's days and weeks) grows as it would in
    service, not with replayed years."""
    per_day = sum(daily_rates.values())
    if not rate > 0 or not math.isfinite(rate) or per_day <= 0:
        raise ValueError("rate and the daily rates must be positive")
    factor = rate * 86_400 / per_day
    return {kind: r * factor for kind, r in daily_rates.items()}


class Simulator:
    """Deterministic traffic for all agencies and the given municipalities (default: the six)."""

    def __init__(
        self,
        seed: int,
        start: datetime,
        municipalities: Sequence[str] = DEFAULT_MUNICIPALITIES,
        *,
        daily_rates: Mapping[str, float] | None = None,
    ) -> None:
        unknown = [c for c in municipalities if c not in MUNICIPALITIES]
        if unknown or not municipalities:
            raise ValueError(f"municipalities must be a non-empty subset of {sorted(MUNICIPALITIES)}")
        rates = dict(DAILY_RATES if daily_rates is None else daily_rates)
        bad = set(rates) - set(DAILY_RATES)
        if bad:
            raise ValueError(f"unknown kinds in daily_rates: {sorted(bad)}")
        if any(not (r >= 0 and math.isfinite(r)) for r in rates.values()):
            raise ValueError("daily rates must be finite and non-negative")
        self.seed = seed
        self.start = (start if start.tzinfo is not None else start.replace(tzinfo=UTC)).astimezone(UTC)
        self.municipalities: tuple[Municipality, ...] = tuple(MUNICIPALITIES[c] for c in municipalities)
        self.daily_rates: Mapping[str, float] = {k: v for k, v in rates.items() if v > 0}

    def events(self, n: int | None = None) -> Iterator[Event]:
        """The first ``n`` events of the stream (all of it, endlessly, when ``n`` is None)."""
        if n is not None and n < 0:
            raise ValueError("n must not be negative")
        stream = _Run(self).stream()
        return stream if n is None else itertools.islice(stream, n)


class _Run:
    """One pass over the stream: all mutable state of a :meth:`Simulator.events` call."""

    def __init__(self, sim: Simulator) -> None:
        self.rng = random.Random(sim.seed)  # noqa: S311 - deterministic simulation, not cryptography
        self.sim = sim
        self.now = sim.start
        self.kinds = _kinds(sim.daily_rates)
        self.peak = sum(k.peak for k in self.kinds)
        self.pending: list[_Pending] = []
        self.seq = itertools.count()
        self.counter = itertools.count(1)
        self.used_pnr: set[str] = set()
        self.weights = [m.population for m in sim.municipalities]
        self.makers: dict[str, Callable[[datetime], Event]] = {
            "incident_report": self.incident_report,
            "minor_suspected": self.minor_suspected,
            "police_child_concern": self.police_child_concern,
            "kommun_child_concern": self.kommun_child_concern,
            "extremism_concern": self.extremism_concern,
            "sig": self.sig,
            "release": self.release,
            "probation_started": self.probation_started,
            "probation_ended": self.probation_ended,
            "youth_activity": self.youth_activity,
            "polisen_promise_action": self.polisen_promise_action,
            "kommun_promise_action": self.kommun_promise_action,
            "safety_survey": self.safety_survey,
        }
        self.promises = {
            m.code: self.rng.sample(_PROMISE_THEMES, 2) for m in sim.municipalities
        }  # two citizen promises per municipality

    # -- the loop ---------------------------------------------------------------------------------------

    def stream(self) -> Iterator[Event]:
        for m in self.sim.municipalities:  # one watch-area registration per area, in the first hours
            for i, area in enumerate(m.areas, 1):
                at = self.sim.start + timedelta(minutes=self.rng.uniform(0, 180))
                self.later(at, self._watch_area(m, area, i))
        if self.peak <= 0:
            yield from self.drain(None)
            return
        per_second = self.peak / 86_400
        while True:
            self.now += timedelta(seconds=self.rng.expovariate(per_second))
            yield from self.drain(self.now)
            local = self.now.astimezone(LOCAL_TZ)
            u = self.rng.random() * self.peak
            for kind in self.kinds:
                u -= kind.scale * kind.profile(local)
                if u < 0:
                    yield self.makers[kind.name](self.now)
                    break

    def drain(self, until: datetime | None) -> Iterator[Event]:
        while self.pending and (until is None or self.pending[0].at <= until):
            item = heapq.heappop(self.pending)
            yield item.make(item.at)

    def later(self, at: datetime, make: Callable[[datetime], Event]) -> None:
        heapq.heappush(self.pending, _Pending(at, next(self.seq), make))

    # -- helpers ----------------------------------------------------------------------------------------

    def uuid(self) -> UUID:
        return UUID(int=self.rng.getrandbits(128), version=4)

    def municipality(self) -> Municipality:
        return self.rng.choices(self.sim.municipalities, self.weights)[0]

    def area(self, m: Municipality) -> str:
        weights = [3.0 if a == "Centrum" else 1.0 for a in m.areas]
        return self.rng.choices(m.areas, weights)[0]

    def person(self, at: datetime, min_age: int, max_age: int) -> str:
        """Someone new when one is found in a few draws, else someone met before: the test series holds a few
        tens of thousands of people per age range, and a long run at a high rate on the wall clock used them
        all up (the loop then never ended: ``hub simulate`` stopped publishing, at 100 % CPU)."""
        for _ in range(PERSON_DRAWS):
            pnr = random_test_personnummer(self.rng, on=at.astimezone(UTC).date(), min_age=min_age, max_age=max_age)
            if pnr not in self.used_pnr:
                self.used_pnr.add(pnr)
                return pnr
        return pnr

    def age(self, pnr: str, at: datetime) -> int:
        """Age as the contract computes it (on the UTC date of ``at``)."""
        return Subject(personnummer=pnr).age_on_date(at)

    def police_case(self, at: datetime) -> str:
        return f"5000-K{100_000 + next(self.counter)}-{at:%y}"

    def case(self, prefix: str, at: datetime) -> str:
        return f"{prefix}-{at:%Y}-{next(self.counter):06d}"

    def delay(self, at: datetime, median_min: float, sigma: float = 1.0) -> datetime:
        minutes = min(self.rng.lognormvariate(math.log(median_min), sigma), 14 * 24 * 60)
        return at + timedelta(minutes=minutes)

    def envelope(
        self,
        model: type[Event],
        at: datetime,
        *,
        agency: Agency,
        unit: str,
        code: str,
        data_class: DataClass,
        area: str | None = None,
        pnr: str | None = None,
        record_delay_min: float = 30.0,
    ) -> Envelope:
        subject = None if pnr is None else Subject(personnummer=pnr, birth_year=int(pnr[:4]))
        return Envelope(
            event_id=self.uuid(),
            event_type=model.EVENT_TYPE,
            schema_version=SCHEMA_VERSIONS.get(model.EVENT_TYPE, 1),
            source_agency=agency,
            source_unit=unit,
            municipality_code=code,
            area=area,
            occurred_at=at,
            recorded_at=self.delay(at, record_delay_min),
            subject=subject,
            data_class=data_class,
        )

    @staticmethod
    def local_date(at: datetime) -> date:
        return at.astimezone(LOCAL_TZ).date()

    def office_time(self, day: date) -> datetime:
        """A moment during office hours on ``day`` (local), as UTC."""
        local = datetime(day.year, day.month, day.day, 8, tzinfo=LOCAL_TZ)
        return (local + timedelta(minutes=self.rng.uniform(0, 8 * 60))).astimezone(UTC)

    # -- police -----------------------------------------------------------------------------------------

    def incident_report(self, at: datetime) -> Event:
        m = self.municipality()
        area = self.area(m)
        boost = WEEKEND_NIGHT_BOOST if is_weekend_night(at.astimezone(LOCAL_TZ)) else {}
        cats = list(INCIDENT_CATEGORY_WEIGHTS)
        weights = [INCIDENT_CATEGORY_WEIGHTS[c] * boost.get(c, 1.0) for c in cats]
        category = self.rng.choices(cats, weights)[0]
        return IncidentReport(
            envelope=self.envelope(
                IncidentReport,
                at,
                agency=Agency.polisen,
                unit="polisområde Halland",
                code=m.code,
                area=area,
                data_class=DataClass.aggregated,
                record_delay_min=45,
            ),
            payload=IncidentReportPayload(
                report_id=self.police_case(at),
                category=category,
                area=area,
                offence_code=_OFFENCE_CODES.get(category),
                description=self.rng.choice(_DESCRIPTIONS[category]),
            ),
        )

    def minor_suspected(self, at: datetime) -> Event:
        m = self.municipality()
        pnr = self.person(at, 12, 17)
        cats = list(_MINOR_CATEGORIES)
        category = self.rng.choices(cats, [_MINOR_CATEGORIES[c] for c in cats])[0]
        return MinorSuspected(
            envelope=self.envelope(
                MinorSuspected,
                at,
                agency=Agency.polisen,
                unit="polisområde Halland",
                code=m.code,
                area=self.area(m),
                pnr=pnr,
                data_class=DataClass.personal_statutory,
                record_delay_min=120,
            ),
            payload=MinorSuspectedPayload(
                case_id=self.police_case(at),
                offence_category=category,
                offence_description=self.rng.choice(_DESCRIPTIONS[category]),
                guardian_notified=self.rng.random() < 0.9,
            ),
        )

    def _concern_kind(self) -> ChildConcernKind:
        kinds = list(_CHILD_CONCERN_WEIGHTS)
        return self.rng.choices(kinds, [_CHILD_CONCERN_WEIGHTS[k] for k in kinds])[0]

    def police_child_concern(self, at: datetime) -> Event:
        m = self.municipality()
        kind = self._concern_kind()
        return ChildConcern(
            envelope=self.envelope(
                ChildConcern,
                at,
                agency=Agency.polisen,
                unit="polisområde Halland",
                code=m.code,
                pnr=self.person(at, 0, 17),
                data_class=DataClass.personal_statutory,
                record_delay_min=90,
            ),
            payload=ChildConcernPayload(
                case_id=self.police_case(at), concern_kind=kind, description=_CHILD_CONCERN_TEXT[kind]
            ),
        )

    def extremism_concern(self, at: datetime) -> Event:
        m = self.municipality()
        risk = self.rng.choices(list(RiskLevel), [50, 35, 15])[0]
        return ExtremismConcern(
            envelope=self.envelope(
                ExtremismConcern,
                at,
                agency=Agency.polisen,
                unit="polisområde Halland",
                code=m.code,
                pnr=self.person(at, 14, 40),
                data_class=DataClass.personal_statutory,
                record_delay_min=240,
            ),
            payload=ExtremismConcernPayload(
                case_id=self.police_case(at),
                concern_kind=self.rng.choice(_EXTREMISM_KINDS),
                description="Oro för radikalisering mot våldsbejakande extremism",
                risk_level=risk,
            ),
        )

    def polisen_promise_action(self, at: datetime) -> Event:
        m = self.municipality()
        theme = self.rng.choice(self.promises[m.code])
        return PolisenCitizenPromiseAction(
            envelope=self.envelope(
                PolisenCitizenPromiseAction,
                at,
                agency=Agency.polisen,
                unit="polisområde Halland",
                code=m.code,
                area=self.area(m),
                data_class=DataClass.public,
                record_delay_min=180,
            ),
            payload=self._promise_payload(m, theme, self.rng.choice(_POLICE_ACTIONS), at),
        )

    def _promise_payload(
        self, m: Municipality, theme: tuple[OffenceCategory, str], action: str, at: datetime
    ) -> CitizenPromiseActionPayload:
        category, _title = theme
        statuses = [s for s, _ in _PROMISE_STATUS]
        return CitizenPromiseActionPayload(
            promise_id=f"ML-{m.code}-{self.local_date(at):%Y}-{category.value}",
            action=action,
            category=category,
            action_date=self.local_date(at),
            status=self.rng.choices(statuses, [w for _, w in _PROMISE_STATUS])[0],
        )

    # -- municipality -----------------------------------------------------------------------------------

    def kommun_child_concern(self, at: datetime) -> Event:
        m = self.municipality()
        kind = self._concern_kind()
        return ChildConcernReport(
            envelope=self.envelope(
                ChildConcernReport,
                at,
                agency=Agency.kommun,
                unit=f"socialtjänsten {m.name}",
                code=m.code,
                pnr=self.person(at, 0, 17),
                data_class=DataClass.personal_statutory,
                record_delay_min=60,
            ),
            payload=ChildConcernReportPayload(
                case_id=self.case(f"SOC-{m.code}", at),
                reporter_role=self.rng.choice(_REPORTER_ROLES),
                concern_kind=kind.value,
                description=_CHILD_CONCERN_TEXT[kind],
            ),
        )

    def consent(self, at: datetime, m: Municipality, pnr: str, scope: ConsentScope) -> ConsentGiven:
        """A consent for ``pnr`` and ``scope``; sometimes a withdrawal of it is queued for later."""
        minor = self.age(pnr, at) < 18
        valid_from = self.local_date(at)
        consent_id = self.case(f"SAMT-{m.code}", at)
        event = ConsentGiven(
            envelope=self.envelope(
                ConsentGiven,
                at,
                agency=Agency.kommun,
                unit=f"socialtjänsten {m.name}",
                code=m.code,
                pnr=pnr,
                data_class=DataClass.personal_consent,
                record_delay_min=20,
            ),
            payload=ConsentGivenPayload(
                consent_id=consent_id,
                scope=scope,
                signed_by="individual_and_guardian" if minor else "individual",
                guardian_consent=minor,
                valid_from=valid_from,
                valid_until=None if self.rng.random() < 0.3 else valid_from + timedelta(days=365),
            ),
        )
        if self.rng.random() < 0.25:
            when = at + timedelta(days=self.rng.uniform(1, 30))
            self.later(when, lambda t: self.withdrawal(t, m, pnr, scope, consent_id))
        return event

    def withdrawal(self, at: datetime, m: Municipality, pnr: str, scope: ConsentScope, consent_id: str) -> Event:
        return ConsentWithdrawn(
            envelope=self.envelope(
                ConsentWithdrawn,
                at,
                agency=Agency.kommun,
                unit=f"socialtjänsten {m.name}",
                code=m.code,
                pnr=pnr,
                data_class=DataClass.personal_consent,
                record_delay_min=10,
            ),
            payload=ConsentWithdrawnPayload(
                consent_id=consent_id,
                scope=scope,
                withdrawn_at=at,
                reason=self.rng.choice(_WITHDRAW_REASONS),
            ),
        )

    def sig(self, at: datetime) -> Event:
        """A SIG referral (15–25), usually preceded by the person's SIG consent."""
        m = self.municipality()
        pnr = self.person(at, 15, 25)
        if self.rng.random() < 0.15:  # a referral without consent: the hub must hold it back
            return self.sig_referral(at, m, pnr)
        self.later(at + timedelta(hours=self.rng.uniform(1, 72)), lambda t: self.sig_referral(t, m, pnr))
        return self.consent(at, m, pnr, ConsentScope.sig)

    def sig_referral(self, at: datetime, m: Municipality, pnr: str) -> Event:
        return SigReferral(
            envelope=self.envelope(
                SigReferral,
                at,
                agency=Agency.kommun,
                unit=f"socialtjänsten {m.name}",
                code=m.code,
                pnr=pnr,
                data_class=DataClass.personal_consent,
                record_delay_min=30,
            ),
            payload=SigReferralPayload(
                case_id=self.case(f"SIG-{m.code}", at),
                referred_by=self.rng.choice(_SIG_REFERRERS),
                reason=self.rng.choice(_SIG_REASONS),
            ),
        )

    def youth_activity(self, at: datetime) -> Event:
        m = self.municipality()
        kind, lo, hi = self.rng.choice(_ACTIVITIES)
        scale = 0.6 + 0.8 * m.population / 104_000
        participants = max(1, round(self.rng.randint(lo, hi) * scale))
        teens = round(participants * self.rng.uniform(0.5, 0.9))
        young_adults = self.rng.randint(0, participants - teens)
        return YouthActivity(
            envelope=self.envelope(
                YouthActivity,
                at,
                agency=Agency.kommun,
                unit=f"fritid {m.name}",
                code=m.code,
                area=self.area(m),
                data_class=DataClass.aggregated,
                record_delay_min=600,
            ),
            payload=YouthActivityPayload(
                activity_id=self.case(f"FRI-{m.code}", at),
                activity_kind=kind,
                participants=participants,
                participants_13_17=teens,
                participants_18_24=young_adults,
                leader_hours=round(self.rng.uniform(2, 12), 1),
                participants_girls=round(participants * self.rng.uniform(0.2, 0.55)),
            ),
        )

    def _watch_area(self, m: Municipality, area: str, index: int) -> Callable[[datetime], Event]:
        def make(at: datetime) -> Event:
            return WatchAreaRegistered(
                envelope=self.envelope(
                    WatchAreaRegistered,
                    at,
                    agency=Agency.kommun,
                    unit=f"trygghetssamordnare {m.name}",
                    code=m.code,
                    area=area,
                    data_class=DataClass.aggregated,
                    record_delay_min=5,
                ),
                payload=WatchAreaRegisteredPayload(
                    area_id=f"GS-{m.code}-{index:03d}",
                    area_name=f"Grannsamverkan {area}",
                    households=self.rng.randint(20, 400),
                    contact_count=self.rng.randint(1, 6),
                    registered_on=self.local_date(at),
                ),
            )

        return make

    def kommun_promise_action(self, at: datetime) -> Event:
        m = self.municipality()
        theme = self.rng.choice(self.promises[m.code])
        return KommunCitizenPromiseAction(
            envelope=self.envelope(
                KommunCitizenPromiseAction,
                at,
                agency=Agency.kommun,
                unit=f"trygghetssamordnare {m.name}",
                code=m.code,
                area=self.area(m),
                data_class=DataClass.public,
                record_delay_min=240,
            ),
            payload=self._promise_payload(m, theme, self.rng.choice(_KOMMUN_ACTIONS), at),
        )

    def safety_survey(self, at: datetime) -> Event:
        m = self.municipality()
        year = self.local_date(at).year - 1
        area = self.area(m) if self.rng.random() < 0.5 else None
        return SafetySurveyResult(
            envelope=self.envelope(
                SafetySurveyResult,
                at,
                agency=Agency.kommun,
                unit=f"kommunledningskontoret {m.name}",
                code=m.code,
                area=area,
                data_class=DataClass.aggregated,
                record_delay_min=60,
            ),
            payload=SafetySurveyResultPayload(
                survey_id=f"TRYGG-{m.code}-{year}",
                question=self.rng.choice(_SURVEY_QUESTIONS),
                share_feeling_unsafe=round(self.rng.uniform(0.08, 0.4), 3),
                respondents=max(50, round(m.population * self.rng.uniform(0.01, 0.02))),
                year=year,
            ),
        )

    # -- Kriminalvården ---------------------------------------------------------------------------------

    def release(self, at: datetime) -> Event:
        """A scheduled release; usually the release-planning consent comes first (then the release)."""
        m = self.municipality()
        pnr = self.person(at, 15, 60)
        if self.rng.random() < 0.6:
            when = at + timedelta(hours=self.rng.uniform(1, 96))
            self.later(when, lambda t: self.release_scheduled(t, m, pnr))
            return self.consent(at, m, pnr, ConsentScope.release_planning)
        return self.release_scheduled(at, m, pnr)

    def release_scheduled(self, at: datetime, m: Municipality, pnr: str) -> Event:
        release_day = self.local_date(at) + timedelta(days=self.rng.randint(14, 90))
        needs = self.rng.sample(_NEEDS, self.rng.randint(0, 3))
        event = ReleaseScheduled(
            envelope=self.envelope(
                ReleaseScheduled,
                at,
                agency=Agency.kriminalvarden,
                unit=self.rng.choice(_INSTITUTIONS),
                code=m.code,
                pnr=pnr,
                data_class=DataClass.personal_consent,
                record_delay_min=15,
            ),
            payload=ReleaseScheduledPayload(
                case_id=self.case("KV", at),
                home_municipality_code=m.code,
                planned_release_date=release_day,
                institution=self.rng.choice(_INSTITUTIONS),
                needs=needs,
            ),
        )
        if self.rng.random() < 0.5:  # conditional release with supervision
            self.later(self.office_time(release_day), lambda t: self.probation_start(t, m, pnr))
        return event

    def probation_started(self, at: datetime) -> Event:
        m = self.municipality()
        return self.probation_start(at, m, self.person(at, 15, 60))

    def probation_start(self, at: datetime, m: Municipality, pnr: str) -> Event:
        start = self.local_date(at)
        end = start + timedelta(days=self.rng.choice((182, 365, 365, 730, 1095)))
        case_id = self.case("KV", at)
        unit = f"frivården {m.frivard}"
        if self.rng.random() < 0.08:  # some end early: revoked or transferred
            early = self.office_time(start + timedelta(days=self.rng.randint(20, 120)))
            why = self.rng.choice(("revoked", "transferred"))
            self.later(early, lambda t: self.probation_end(t, m, pnr, case_id, unit, why))
        else:
            self.later(self.office_time(end), lambda t: self.probation_end(t, m, pnr, case_id, unit, "completed"))
        return ProbationStarted(
            envelope=self.envelope(
                ProbationStarted,
                at,
                agency=Agency.kriminalvarden,
                unit=unit,
                code=m.code,
                pnr=pnr,
                data_class=DataClass.personal_consent,
                record_delay_min=30,
            ),
            payload=ProbationStartedPayload(
                case_id=case_id,
                start_date=start,
                end_date=None if self.rng.random() < 0.1 else end,
                supervision_unit=unit,
            ),
        )

    def probation_ended(self, at: datetime) -> Event:
        """The end of a probation that started before the simulation."""
        m = self.municipality()
        return self.probation_end(
            at, m, self.person(at, 16, 62), self.case("KV", at - timedelta(days=365)), f"frivården {m.frivard}"
        )

    def probation_end(
        self, at: datetime, m: Municipality, pnr: str, case_id: str, unit: str, reason: str | None = None
    ) -> Event:
        reasons = [r for r, _ in _PROBATION_END_REASONS]
        if reason is None:
            reason = self.rng.choices(reasons, [w for _, w in _PROBATION_END_REASONS])[0]
        return ProbationEnded(
            envelope=self.envelope(
                ProbationEnded,
                at,
                agency=Agency.kriminalvarden,
                unit=unit,
                code=m.code,
                pnr=pnr,
                data_class=DataClass.personal_consent,
                record_delay_min=30,
            ),
            payload=ProbationEndedPayload(
                case_id=case_id,
                end_date=self.local_date(at),
                reason=reason,
            ),
        )
