"""The fast validator (:mod:`hub.contract.fast`) against the pydantic contract: a differential test.

Every case goes through both paths — ``Serde.decode`` (+ the worker's "is it an agency event" check) and
``Serde.decode_record`` + :class:`FastValidator` — and must get the same accept/reject decision, the same reason
code on a refusal and, on acceptance, the same field values (type and ``repr`` of every leaf) and the same answers
to what the flows ask (``age()``, routing plans, projected fields). Both validators are checked: the default one
(pydantic confirms refusals) and ``confirm_rejections=False``, where every refusal is decided by the hand-written
checks alone.

Cases: valid events (Hypothesis, derived from the models), the fuzz suite's agency-topic messages (random bytes,
garbage bodies, flipped/truncated/extended encodings, contract breaks, hub records), mutations of the decoded Avro
dict (wrong types, nulls, missing and extra keys, bad personnummer, municipality codes, enums, ranges, dates,
cross-field rules) and the same mutations re-encoded as bytes where Avro can carry them, plus
``tests.factories.mixed_events``. Hypothesis is derandomized and keeps no database.
"""

from __future__ import annotations

import copy
import io
import math
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, date, datetime, timedelta, timezone
from enum import Enum, IntEnum
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastavro import schemaless_writer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from hub.contract.base import model_for_schema_name
from hub.contract.envelope import Agency, ConsentScope, DataClass, Event, OffenceCategory
from hub.contract.errors import ContractError
from hub.contract.events import ChildConcernKind, ConsentGiven, ConsentGivenPayload, ConsentWithdrawn, RiskLevel
from hub.contract.fast import (
    EVENT_STRUCTS,
    FastConsentGivenPayload,
    FastEvent,
    FastValidator,
    as_dict,
    fast_validate,
    from_model,
    is_consent,
    mirror_problems,
    to_model,
)
from hub.contract.fields import municipality_codes
from hub.contract.personnummer import contains_personnummer
from hub.contract.serde import MAGIC, Serde, validate
from hub.flows.routing import Router, event_category, field_value
from hub.rules.model import load_rules
from tests import factories as f
from tests.contract.strategies import personnummer_12
from tests.fuzz.strategies import AgencyMessage, agency_messages, case_id, valid_events, wrong_check_digit

SERDE = Serde()
FAST = FastValidator()
PURE = FastValidator(confirm_rejections=False)
VALIDATORS = {"confirmed": FAST, "pure": PURE}
ROUTER = Router(load_rules())


def _settings(cases: int) -> settings:
    return settings(max_examples=cases, deadline=None, database=None, derandomize=True,
                    phases=(Phase.explicit, Phase.generate, Phase.shrink), suppress_health_check=list(HealthCheck),
                    report_multiple_bugs=False)  # fmt: skip


# -- the two paths ------------------------------------------------------------------------------------------

Outcome = tuple[str, Any]
"""``("ok", the accepted event)`` or ``("err", reason code)``."""


def reference_record(name: str, record: Any) -> Outcome:
    """``Serde.decode``'s validation of a decoded record, then the worker's intake check."""
    model = model_for_schema_name(name)
    if model is None:
        return ("err", "unknown_event_type")
    try:
        result = validate(model, copy.deepcopy(record))
    except ContractError as err:
        return ("err", err.reason)
    return ("ok", result) if isinstance(result, Event) else ("err", "unknown_event_type")


def reference_bytes(data: bytes) -> Outcome:
    try:
        result = SERDE.decode(data)
    except ContractError as err:
        return ("err", err.reason)
    return ("ok", result) if isinstance(result, Event) else ("err", "unknown_event_type")


def _refused(err: ContractError) -> Outcome:
    assert not contains_personnummer(err.message), "a refusal's message holds a personnummer"
    return ("err", err.reason)


def fast_record(validator: FastValidator, name: str, record: Any) -> Outcome:
    try:
        return ("ok", validator.validate(name, copy.deepcopy(record)))
    except ContractError as err:
        return _refused(err)


def fast_bytes(validator: FastValidator, data: bytes) -> Outcome:
    try:
        return ("ok", validator.decode(data, SERDE))
    except ContractError as err:
        return _refused(err)


def same_values(ref: Any, fast: Any, path: str = "") -> list[str]:
    """Where ``fast`` (``as_dict`` of a FastEvent) differs from ``ref`` (a ``model_dump()``): [] when equal.

    Leaves must have the same type and ``repr`` (so a datetime's timezone and microseconds count too). The one
    allowance is the documented one: a ``str`` subclass where pydantic gives an exact ``str`` of equal value.
    """
    if isinstance(ref, dict):
        if not isinstance(fast, dict) or list(ref) != list(fast):
            return [f"{path}: keys {list(ref)} != {fast!r}"]
        return [p for k in ref for p in same_values(ref[k], fast[k], f"{path}.{k}" if path else k)]
    if isinstance(ref, list):
        if not isinstance(fast, list) or len(ref) != len(fast):
            return [f"{path}: {ref!r} != {fast!r}"]
        return [p for i, (a, b) in enumerate(zip(ref, fast, strict=True)) for p in same_values(a, b, f"{path}[{i}]")]
    if type(ref) is str and isinstance(fast, str) and str.__str__(fast) == ref:
        return []
    if type(ref) is not type(fast) or repr(ref) != repr(fast):
        return [f"{path}: {ref!r} ({type(ref).__name__}) != {fast!r} ({type(fast).__name__})"]
    return []


def same_interface(model: Event, event: FastEvent) -> list[str]:
    """What the flows ask of an event, asked of both."""
    problems: list[str] = []
    payload = model.payload  # type: ignore[attr-defined]
    checks: dict[str, tuple[Any, Any]] = {
        "age()": (model.envelope.age(), event.envelope.age()),
        "data_class.value": (model.envelope.data_class.value, event.envelope.data_class.value),
        "source_agency.value": (model.envelope.source_agency.value, event.envelope.source_agency.value),
        "str(event_id)": (str(model.envelope.event_id), str(event.envelope.event_id)),
        "is consent": (isinstance(model, ConsentGiven | ConsentWithdrawn), is_consent(event)),
        "consent given payload": (isinstance(payload, ConsentGivenPayload),
                                  isinstance(event.payload, FastConsentGivenPayload)),
        "event_category": (event_category(model), event_category(event)),  # type: ignore[arg-type]
        "type": (type(model).EVENT_TYPE, type(event).EVENT_TYPE),
        "plans": (ROUTER.route(model), ROUTER.route(event)),  # type: ignore[arg-type]
    }  # fmt: skip
    if model.envelope.subject is not None and event.envelope.subject is not None:
        checks["personnummer"] = (model.envelope.subject.personnummer, event.envelope.subject.personnummer)
        at = datetime(2030, 2, 28, tzinfo=UTC)
        checks["age_on_date"] = (model.envelope.subject.age_on_date(at), event.envelope.subject.age_on_date(at))
    for top in ("envelope", "payload"):
        for name in type(getattr(model, top)).model_fields:
            path = f"{top}.{name}"
            want = field_value(model, path)
            got = field_value(event, path)  # type: ignore[arg-type]
            checks[path] = (want.model_dump(), as_dict(got)) if isinstance(want, BaseModel) else (want, got)
            if path != "envelope.subject":  # never projected (minimise discloses the person apart)
                checks[f"json {path}"] = (to_jsonable_python(want), to_jsonable_python(got))
            if isinstance(want, Enum):
                checks[f"str {path}"] = (str(want), str(got))
    for what, (want, got) in checks.items():
        if want != got:
            problems.append(f"{what}: {want!r} != {got!r}")
    if to_model(event) != model:
        problems.append("to_model(event) != the pydantic model")
    if from_model(model) != event:
        problems.append("from_model(model) != the fast event")
    return problems


def assert_same(ref: Outcome, got: Outcome, what: str) -> None:
    if ref[0] != got[0] or (ref[0] == "err" and ref[1] != got[1]):
        shown = lambda o: o[1] if o[0] == "err" else "accepted"  # noqa: E731
        raise AssertionError(f"{what}: pydantic {ref[0]} ({shown(ref)}), fast {got[0]} ({shown(got)})")
    if ref[0] == "ok":
        model, event = ref[1], got[1]
        assert isinstance(event, FastEvent)
        problems = same_values(model.model_dump(), as_dict(event)) + same_interface(model, event)
        assert not problems, f"{what}: " + "; ".join(problems)


def check_record(name: str, record: Any, what: str = "record") -> str:
    """Both paths on a decoded record, with both validators; the decision ("ok" or the reason)."""
    ref = reference_record(name, record)
    for mode, validator in VALIDATORS.items():
        assert_same(ref, fast_record(validator, name, record), f"{what} [{mode}]")
    assert FAST.overruled == 0, f"{what}: pydantic accepted what the fast checks refused"
    return "ok" if ref[0] == "ok" else str(ref[1])


def check_bytes(data: bytes, what: str = "bytes") -> str:
    """Both paths on message bytes, with both validators."""
    ref = reference_bytes(data)
    for mode, validator in VALIDATORS.items():
        assert_same(ref, fast_bytes(validator, data), f"{what} [{mode}]")
    assert FAST.overruled == 0, f"{what}: pydantic accepted what the fast checks refused"
    return "ok" if ref[0] == "ok" else str(ref[1])


def decoded(event: Event, version: int | None = None) -> tuple[str, dict[str, Any]]:
    return SERDE.decode_record(SERDE.encode(event, version))


def encode_record(name: str, record: dict[str, Any], version: int | None = None) -> bytes | None:
    """The record as Avro bytes with the (latest or given) writer schema, or None when Avro cannot carry it."""
    sv = SERDE.registry.latest(name) if version is None else SERDE.registry.version(name, version)
    assert sv is not None
    out = io.BytesIO()
    out.write(MAGIC + sv.fingerprint)
    try:
        schemaless_writer(out, sv.parsed, record)
    except Exception:  # fastavro refuses wrong types in many ways
        return None
    return out.getvalue()


# -- mutations of the decoded record -----------------------------------------------------------------------


class Level(IntEnum):
    one = 1


MINOR, YOUNG, ADULT = f.MINOR, f.YOUNG, f.ADULT
COORDINATION = personnummer_12(date(2009, 4, 7), 123, coordination=True)
CENTENARIAN = personnummer_12(date(1920, 6, 1), 456)
STOCKHOLM = ZoneInfo("Europe/Stockholm")
UTC_NOW = datetime(2026, 8, 14, 12, 0, tzinfo=UTC)


def _pnr_forms(pnr: str) -> list[Any]:
    """Accepted and refused spellings of a personnummer."""
    return [pnr, f"{pnr[:8]}-{pnr[8:]}", pnr[2:], f"{pnr[2:8]}-{pnr[8:]}", f"{pnr[2:8]}+{pnr[8:]}", f" {pnr} ",
            f"{pnr}\n", wrong_check_digit(pnr), pnr[:11], pnr + "0", pnr.replace(pnr[4:6], "13", 1),
            "".join(chr(0x660 + int(c)) for c in pnr), int(pnr), f"{pnr[:8]}--{pnr[8:]}"]  # fmt: skip


GENERAL: list[Any] = [None, True, False, 0, 1, -1, 1.0, 1.5, math.nan, math.inf, "", " ", "x", "1", "1381",
                      b"x", b"1381", [], ["x"], ("x",), {}, {"a": 1}, UTC_NOW, date(2026, 8, 14), uuid.UUID(int=5),
                      Level.one, 2**31, 2**63, OffenceCategory.theft]  # fmt: skip
TIMESTAMPS: list[Any] = [
    UTC_NOW, UTC_NOW.replace(microsecond=123456), UTC_NOW.replace(microsecond=5000),
    UTC_NOW.astimezone(timezone(timedelta(hours=2))), UTC_NOW.astimezone(timezone(timedelta(hours=-5, minutes=-30))),
    UTC_NOW.astimezone(STOCKHOLM), UTC_NOW.replace(tzinfo=None), datetime(1899, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
    datetime(1900, 1, 1, tzinfo=UTC), datetime(1900, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))),
    datetime(2200, 12, 31, 23, 59, 59, 999000, tzinfo=UTC), datetime(2200, 12, 31, 23, 59, 59, 999500, tzinfo=UTC),
    datetime(2201, 1, 1, tzinfo=UTC), datetime(999, 5, 31, 10, tzinfo=UTC), datetime(9999, 12, 31, 23, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))), "2026-08-14T12:00:00Z", "2026-08-14T12:00:00+02:00",
    "2026-08-14 12:00:00.1234567Z", "2026-08-14T12:00:00", "1700000000", " 1700000000", 1700000000, 1.7e12,
    date(2026, 8, 14), b"2026-08-14T12:00:00Z",
]  # fmt: skip
DATES: list[Any] = [
    date(2026, 8, 14), date(1970, 1, 1), date(2100, 1, 1), date(1, 1, 1), date(9999, 12, 31),
    datetime(2026, 8, 14), datetime(2026, 8, 14, 0, 0, 1), datetime(2026, 8, 14, tzinfo=UTC), "2026-08-14",
    "20260814", "2026-02-30", 20260814, 0, b"2026-08-14", UTC_NOW,
]  # fmt: skip
COUNTS: list[Any] = [0, 1, 5, 17, 100, 2**31 - 1, 2**31, -1, True, 5.0, "5", Level.one, None]
TEXT: list[Any] = ["", " ", "x", "polisen", "åäö", "x\ud800y", 5, None, b"x", OffenceCategory.theft]
ENUMS: list[Any] = [*{m.value for e in (OffenceCategory, ChildConcernKind, RiskLevel, ConsentScope, DataClass, Agency)
                      for m in e}, "", "Theft", "personal-consent", OffenceCategory.robbery, ChildConcernKind.neglect,
                    RiskLevel.high, ConsentScope.sig, 3]  # fmt: skip
BY_FIELD: dict[str, list[Any]] = {
    "event_id": [uuid.UUID(int=7), str(uuid.UUID(int=7)), str(uuid.uuid5(uuid.NAMESPACE_DNS, "x")).upper(),
                 uuid.UUID(int=7).hex, "{" + str(uuid.UUID(int=7)) + "}", uuid.UUID(int=7).urn, uuid.UUID(int=7).bytes,
                 "7b0f7a64-3a55-4f1e-9f53-3f4f2a6f2b1", 7],
    "event_type": [*(s.EVENT_TYPE for s in EVENT_STRUCTS.values()), "polisen.Minor_suspected", "polisen",
                   "hub.deadletter", "polisen.minor_suspected\n", " polisen.minor_suspected", "1.x"],
    "schema_version": [0, 1, 2, 3, -1, 2**31 - 1, 2**31, True, 1.0, "1", Level.one, None],
    "source_agency": [*(a.value for a in Agency), *Agency, "Polisen", "x", None],
    "source_unit": ["", " ", "x", "polisområde Halland", 5, None],
    "municipality_code": ["1315", "1380", "1381", "1382", "1383", "1384", "13", "9999", " 1381", "1381\n", "138",
                          b"1381", 1381, None],
    "area": [None, "", "Centrum", 5],
    "occurred_at": TIMESTAMPS, "recorded_at": TIMESTAMPS, "published_at": TIMESTAMPS, "withdrawn_at": TIMESTAMPS,
    "personnummer": [*_pnr_forms(MINOR), *_pnr_forms(ADULT), COORDINATION, f"{COORDINATION[:8]}-{COORDINATION[8:]}",
                     CENTENARIAN, CENTENARIAN[2:], f"{CENTENARIAN[2:8]}+{CENTENARIAN[8:]}",
                     personnummer_12(date(2011, 2, 28), 1).replace("0228", "0230"), "179912319999", None],
    "birth_year": [None, 2011, 2004, 1980, 2009, 1920, 2012, 1799, 1800, 2200, 2201, True, "2011", 2011.0,
                   Level.one],
    "data_class": [*(d.value for d in DataClass), *DataClass, "personal-consent", "x", None],
    "subject": [None, {"personnummer": MINOR}, {"personnummer": ADULT, "birth_year": None},
                {"personnummer": MINOR, "birth_year": 2011}, {"personnummer": YOUNG, "birth_year": 2005},
                {"personnummer": MINOR, "zz": 1}, {}, "x", [MINOR], {"personnummer": COORDINATION}],
    "police_id": [0, -1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, True, 1.0, "1", None],
    "year": [1899, 1900, 2026, 2200, 2201, True, 2026.0, "2026"],
    "leader_hours": [None, 0.0, -0.0, -0.1, 1.5, 3, math.inf, math.nan, -math.inf, True, "1.5", 1e308],
    "share_feeling_unsafe": [0.0, -0.0, 0.5, 1.0, 1.0000001, -1e-9, 0, 1, 2, math.nan, math.inf, True, "0.5"],
    "home_municipality_code": ["1381", "0180", "9999", "138", "13810", "1381\n", "١٣٨١", " 1381", "13a1", 1381],
    "needs": [[], ["bostad"], ("a", "b"), ["a", 1], "ab", None, [None], {"a"}, [b"x"], [OffenceCategory.fire]],
    **{n: COUNTS for n in ("participants", "participants_13_17", "participants_18_24", "participants_girls",
                           "households", "contact_count", "respondents")},
    **{n: [True, False, 0, 1, "true", None, 1.0] for n in ("county_level", "guardian_notified", "guardian_consent")},
    **{n: ENUMS for n in ("category", "offence_category", "concern_kind", "risk_level", "scope")},
    **{n: DATES for n in ("action_date", "planned_release_date", "start_date", "end_date", "valid_from",
                          "valid_until", "registered_on")},
    **{n: TEXT for n in ("case_id", "report_id", "promise_id", "consent_id", "activity_id", "area_id", "survey_id",
                         "police_type", "title", "gps", "reason", "status", "description", "offence_code")},
}  # fmt: skip


def leaf_paths(record: dict[str, Any]) -> list[tuple[str, ...]]:
    """Every key path of the record (the subject's own fields when it has one)."""
    out: list[tuple[str, ...]] = []
    for top in ("envelope", "payload"):
        for key, value in record[top].items():
            out.append((top, key))
            if isinstance(value, dict):
                out.extend((top, key, sub) for sub in value)
    return out


def _container(record: Any, path: tuple[str, ...]) -> Any:
    for key in path[:-1]:
        record = record[key] if isinstance(record, dict) else None
    return record


def mutate(record: dict[str, Any], op: str, path: tuple[str, ...], value: Any) -> str:
    """Apply one change in place; its label."""
    holder = _container(record, path)
    if not isinstance(holder, dict):
        return "skip"
    if op == "delete":
        holder.pop(path[-1], None)
        return f"delete {'.'.join(path)}"
    if op == "extra":
        holder["zz_extra" if path[-1] != "zz_extra" else "zz_more"] = value
        return f"extra key beside {'.'.join(path)}"
    holder[path[-1]] = value
    return f"set {'.'.join(path)}"


def _same_kind(value: Any, original: Any) -> bool:
    """Whether ``value`` has the Python type fastavro gives the field (what a well-typed change keeps)."""
    if original is None:
        return value is None or type(value) in (str, int, float, bool, dict, date, datetime)
    return type(value) is type(original) or (type(original) is float and type(value) is int)


@st.composite
def changes(draw: st.DrawFn, base: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of a decoded record with 1–3 changes, and their labels.

    Most changes are well-typed (a value of the type fastavro gives the field, from the field's pool of edge
    values: what only the hand-written checks can refuse); the others put any hostile value anywhere, delete a
    key or add one.
    """
    record = copy.deepcopy(base)
    labels = []
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 2, 3]))):
        paths = leaf_paths(record) if isinstance(record.get("envelope"), dict) else [("envelope",)]
        top = draw(st.sampled_from(sorted({p[0] for p in paths})))  # the payload as often as the envelope
        path = draw(st.sampled_from(sorted(p for p in paths if p[0] == top)))
        holder = _container(record, path)
        original = holder.get(path[-1]) if isinstance(holder, dict) else None
        pool = BY_FIELD.get(path[-1], [])
        well_typed = [v for v in pool if _same_kind(v, original)]
        how = draw(st.sampled_from(["typed"] * 6 + ["any", "any", "delete", "extra"]))
        if how == "typed" and well_typed:
            labels.append(mutate(record, "set", path, draw(st.sampled_from(well_typed))))
        elif how in ("typed", "any"):
            values = st.sampled_from(pool) if pool and draw(st.booleans()) else st.sampled_from(GENERAL)
            labels.append(mutate(record, "set", path, draw(values)))
        else:
            labels.append(mutate(record, how, path, draw(st.sampled_from(GENERAL))))
    if draw(st.sampled_from([False] * 19 + [True])):  # the envelope or payload itself replaced
        record[draw(st.sampled_from(["envelope", "payload"]))] = draw(st.sampled_from([None, "x", [], 5]))
        labels.append("replace a part")
    return record, labels


MutatedCase = tuple[str, int | None, list[tuple[dict[str, Any], list[str]]]]


@st.composite
def mutated_records(draw: st.DrawFn) -> MutatedCase:
    """A valid event's decoded record (a youth activity maybe written with v1) and four changed copies of it:
    (schema name, writer version or None for the latest, [(record, labels)]). Drawing the event costs far more
    than changing it, so each event is changed several times."""
    event = draw(valid_events())
    version = 1 if event.envelope.event_type == "kommun.youth_activity" and draw(st.booleans()) else None
    try:
        name, base = decoded(event, version)
    except ContractError:  # a v2-only value: write v2
        version = None
        name, base = decoded(event)
    return name, version, [draw(changes(base)) for _ in range(4)]


# -- the tests ------------------------------------------------------------------------------------------------


def test_the_structs_mirror_the_models() -> None:
    assert mirror_problems() == []


@_settings(200)
@given(valid_events())
def test_valid_events_are_accepted_alike(event: Event) -> None:
    data = SERDE.encode(event)
    assert check_bytes(data, "valid event") == "ok"
    assert check_record(*SERDE.decode_record(data)) == "ok"


def test_mixed_events_are_accepted_alike() -> None:
    for i, event in enumerate(f.mixed_events(300)):
        assert check_bytes(SERDE.encode(event), f"mixed event {i}") == "ok"


def test_v1_youth_activity_read_by_the_v2_reader() -> None:
    event = f.youth_activity("1381")
    data = SERDE.encode(event, version=1)
    assert check_bytes(data, "youth activity v1") == "ok"
    name, record = SERDE.decode_record(data)
    assert record["payload"]["participants_girls"] is None  # filled in by the reader schema
    record["payload"]["participants_girls"] = 3  # a v2-only field in a v1 event: refused
    assert check_record(name, record) == "invalid_payload"
    del record["payload"]["participants_girls"]  # absent: the default, accepted
    assert check_record(name, record) == "ok"
    record["envelope"]["schema_version"] = 2
    record["payload"]["participants_girls"] = 3
    assert check_record(name, record) == "ok"


@_settings(400)
@given(agency_messages(), st.integers(0, 10**6))
def test_agency_topic_messages_get_the_same_answer(msg: AgencyMessage, n: int) -> None:
    check_bytes(msg.materialise(case_id("fast", n)), msg.family)


@_settings(400)
@given(mutated_records())
def test_mutated_records_get_the_same_answer(case: MutatedCase) -> None:
    name, version, variants = case
    for record, labels in variants:
        what = ", ".join(labels)
        check_record(name, record, what)
        data = encode_record(name, record, version)  # what a producer that bypasses the gateway could write
        if data is not None:
            check_bytes(data, f"{what} (as bytes)")


EVENTS: dict[str, Callable[[], Event]] = {
    "minor": f.minor_suspected, "incident": f.incident_notice, "release": f.release,
    "youth": lambda: f.youth_activity("1381"), "extremism": f.extremism, "honour": f.honour_concern,
    "consent": lambda: f.consent("sig", pnr=MINOR), "withdraw": lambda: f.consent("sig", withdraw=True),
}  # fmt: skip

# (event kind, what to change, path, value): each a known edge of the contract.
EDGES: list[tuple[str, str, tuple[str, ...], Any]] = [
    ("minor", "adult subject", ("envelope", "subject", "personnummer"), ADULT),
    ("minor", "18 today", ("envelope", "subject", "personnummer"), personnummer_12(date(2008, 8, 14), 77)),
    ("minor", "18 tomorrow", ("envelope", "subject", "personnummer"), personnummer_12(date(2008, 8, 15), 77)),
    ("minor", "coordination number", ("envelope", "subject", "personnummer"), COORDINATION),
    ("minor", "short form", ("envelope", "subject", "personnummer"), MINOR[2:]),
    ("minor", "dashed long form", ("envelope", "subject", "personnummer"), f"{MINOR[:8]}-{MINOR[8:]}"),
    ("minor", "padded", ("envelope", "subject", "personnummer"), f"  {MINOR}\t"),
    ("minor", "wrong check digit", ("envelope", "subject", "personnummer"), wrong_check_digit(MINOR)),
    ("minor", "arabic digits", ("envelope", "subject", "personnummer"), "".join(chr(0x660 + int(c)) for c in MINOR)),
    ("minor", "day 60", ("envelope", "subject", "personnummer"), "201103609985"),
    ("minor", "year 1799", ("envelope", "subject", "personnummer"), "179903050008"),
    ("minor", "birth year agrees", ("envelope", "subject", "birth_year"), 2011),
    ("minor", "birth year disagrees", ("envelope", "subject", "birth_year"), 2010),
    ("minor", "no subject", ("envelope", "subject"), None),
    ("minor", "public with a subject", ("envelope", "data_class"), "public"),
    ("minor", "consent data class", ("envelope", "data_class"), "personal_consent"),
    ("minor", "empty case id", ("payload", "case_id"), ""),
    ("minor", "bool as int", ("payload", "guardian_notified"), 1),
    ("incident", "subject where forbidden", ("envelope", "subject"), {"personnummer": MINOR}),
    ("incident", "other event type", ("envelope", "event_type"), "polisen.minor_suspected"),
    ("incident", "unserved municipality", ("envelope", "municipality_code"), "9999"),
    ("incident", "county code", ("envelope", "municipality_code"), "13"),
    ("incident", "schema version 2", ("envelope", "schema_version"), 2),
    ("incident", "schema version 0", ("envelope", "schema_version"), 0),
    ("incident", "police id int64 max", ("payload", "police_id"), 2**63 - 1),
    ("incident", "police id over int64", ("payload", "police_id"), 2**63),
    ("incident", "published in +02:00", ("payload", "published_at"), UTC_NOW.astimezone(timezone(timedelta(hours=2)))),
    ("incident", "published with microseconds", ("payload", "published_at"), UTC_NOW.replace(microsecond=654321)),
    ("incident", "published naive", ("payload", "published_at"), UTC_NOW.replace(tzinfo=None)),
    ("incident", "occurred in year 999", ("envelope", "occurred_at"), datetime(999, 5, 31, tzinfo=UTC)),
    ("incident", "occurred at the last millisecond", ("envelope", "occurred_at"),
     datetime(2200, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)),
    ("incident", "recorded just after the last millisecond", ("envelope", "recorded_at"),
     datetime(2200, 12, 31, 23, 59, 59, 999001, tzinfo=UTC)),
    ("incident", "recorded before 1900 in UTC", ("envelope", "recorded_at"),
     datetime(1900, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))),
    ("incident", "occurred in Stockholm time", ("envelope", "occurred_at"), UTC_NOW.astimezone(STOCKHOLM)),
    ("incident", "occurred as ISO text", ("envelope", "occurred_at"), "2026-08-14T12:00:00Z"),
    ("incident", "occurred as epoch text", ("envelope", "occurred_at"), "1700000000"),
    ("incident", "event id as text", ("envelope", "event_id"), "7b0f7a64-3a55-4f1e-9f53-3f4f2a6f2b11"),
    ("incident", "event id without dashes", ("envelope", "event_id"), "7b0f7a643a554f1e9f533f4f2a6f2b11"),
    ("incident", "source unit empty", ("envelope", "source_unit"), ""),
    ("incident", "source unit as bytes", ("envelope", "source_unit"), b"x"),
    ("incident", "category not a symbol", ("payload", "category"), "Inbrott"),
    ("incident", "category as another enum's member", ("payload", "category"), ChildConcernKind.other),
    ("incident", "title as a StrEnum member", ("payload", "title"), OffenceCategory.theft),
    ("release", "home municipality outside the county", ("payload", "home_municipality_code"), "0180"),
    ("release", "home municipality with a newline", ("payload", "home_municipality_code"), "0180\n"),
    ("release", "home municipality of 3 digits", ("payload", "home_municipality_code"), "180"),
    ("release", "needs as a tuple", ("payload", "needs"), ("bostad",)),
    ("release", "release date as a zero-time datetime", ("payload", "planned_release_date"), datetime(2026, 9, 1)),
    ("release", "release date as a datetime", ("payload", "planned_release_date"), datetime(2026, 9, 1, 8)),
    ("youth", "parts exceed the whole", ("payload", "participants_13_17"), 25),
    ("youth", "girls exceed the whole", ("payload", "participants_girls"), 26),
    ("youth", "leader hours infinite", ("payload", "leader_hours"), math.inf),
    ("youth", "leader hours as int", ("payload", "leader_hours"), 4),
    ("youth", "leader hours negative zero", ("payload", "leader_hours"), -0.0),
    ("youth", "participants over int32", ("payload", "participants"), 2**31),
    ("youth", "participants as IntEnum", ("payload", "participants"), Level.one),
    ("consent", "a minor without the guardian's consent", ("payload", "guardian_consent"), False),
    ("consent", "valid until before valid from", ("payload", "valid_until"), date(2025, 12, 31)),
    ("consent", "valid until on valid from", ("payload", "valid_until"), date(2026, 1, 1)),
    ("withdraw", "withdrawn in +05:30", ("payload", "withdrawn_at"),
     UTC_NOW.astimezone(timezone(timedelta(hours=5, minutes=30)))),
    ("withdraw", "unknown scope", ("payload", "scope"), "everything"),
    ("honour", "extra payload key", ("payload", "zz"), None),
    ("honour", "extra envelope key", ("envelope", "zz"), 1),
    ("honour", "extra subject key", ("envelope", "subject", "zz"), None),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "case", "path", "value"), EDGES, ids=[e[1] for e in EDGES])
def test_edges_of_the_contract(kind: str, case: str, path: tuple[str, ...], value: Any) -> None:
    name, record = decoded(EVENTS[kind]())
    mutate(record, "set", path, value)
    check_record(name, record, case)
    data = encode_record(name, record)
    if data is not None:
        check_bytes(data, f"{case} (as bytes)")


@pytest.mark.parametrize("part", ["envelope", "payload"])
def test_missing_parts_and_keys(part: str) -> None:
    name, record = decoded(f.minor_suspected())
    for key in list(record[part]):
        broken = copy.deepcopy(record)
        del broken[part][key]
        check_record(name, broken, f"without {part}.{key}")
    check_record(name, {k: v for k, v in record.items() if k != part}, f"without {part}")
    check_record(name, {**record, "zz": None}, "extra top-level key")
    check_record(name, {**record, part: None}, f"{part} null")


def test_records_that_are_not_agency_events() -> None:
    from hub.contract.outputs import Deadletter, ReasonCode

    record = Deadletter(reason=ReasonCode.undecodable, message="x", source_topic="t", source_partition=0,
                        source_offset=0, original=b"", event_id=None, at=f.NOW)  # fmt: skip
    assert check_bytes(SERDE.encode(record), "deadletter") == "unknown_event_type"
    name, raw = SERDE.decode_record(SERDE.encode(record))
    raw["source_partition"] = "zero"  # an invalid hub record is invalid_payload first, as Serde.decode says
    assert check_record(name, raw) == "invalid_payload"
    assert check_record("se.samverkan.nowhere.Nothing", raw) == "unknown_event_type"
    with pytest.raises(ContractError) as info:
        fast_validate("se.samverkan.nowhere.Nothing", raw)
    assert info.value.reason == "unknown_event_type"


CONTEXTS: dict[str, Callable[[], AbstractContextManager[Any]]] = {
    "settings": nullcontext,
    "laholm only": lambda: municipality_codes({"1381", "13"}),
    "county only": lambda: municipality_codes({"13"}),
    "none": lambda: municipality_codes(set()),
}


@pytest.mark.parametrize("context", list(CONTEXTS))
def test_served_municipalities_are_read_per_context(context: str) -> None:
    """The served codes are a ContextVar that tests (and the worker) change: nothing stale may be used."""
    datas = [SERDE.encode(e) for e in f.mixed_events(60)]
    datas += [SERDE.encode(f.incident_notice(municipality="13"))]
    seen: set[str] = set()
    with CONTEXTS[context]():
        for i, data in enumerate(datas):
            seen.add(check_bytes(data, f"{context} {i}"))
    assert seen == ({"ok"} if context == "settings" else {"ok", "invalid_payload"} if context != "none"
                    else {"invalid_payload"})  # fmt: skip


def test_settings_changes_are_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a context, the served codes are the settings' (read afresh, as allowed_municipality_codes does)."""
    from hub.settings import get_settings

    data = SERDE.encode(f.incident_notice(municipality="1381"))
    assert check_bytes(data) == "ok"
    monkeypatch.setattr(get_settings(), "municipality_codes", ["1315"])
    assert check_bytes(data) == "invalid_payload"
    monkeypatch.setattr(get_settings(), "county_code", "1381")
    assert check_bytes(data) == "ok"


def test_a_refusal_names_the_field_in_both_modes() -> None:
    name, record = decoded(f.minor_suspected())
    record["envelope"]["subject"]["personnummer"] = wrong_check_digit(MINOR)
    for validator in VALIDATORS.values():
        with pytest.raises(ContractError) as info:
            validator.validate(name, record)
        assert info.value.reason == "invalid_payload"
        assert info.value.path == "envelope.subject.personnummer"
        assert "check digit" in info.value.message
        assert MINOR not in info.value.message


def test_subject_repr_masks_the_personnummer() -> None:
    event = FAST.decode(SERDE.encode(f.minor_suspected()), SERDE)
    assert MINOR not in repr(event)


def test_a_str_subclass_in_a_str_field_keeps_its_type_with_an_equal_value() -> None:
    """The one documented difference: pydantic makes it an exact str; the values are equal."""
    name, record = decoded(f.incident_notice())
    record["payload"]["title"] = OffenceCategory.theft
    model = reference_record(name, record)[1]
    event = FAST.validate(name, record)
    assert type(model.payload.title) is str
    assert event.payload.title == model.payload.title == "theft"  # type: ignore[attr-defined]
    assert str(event.payload.title) == str(model.payload.title)  # type: ignore[attr-defined]

