"""Hypothesis strategies for valid contract models, derived from the pydantic model fields."""

from __future__ import annotations

import types
import typing
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any
from uuid import UUID

import annotated_types
from hypothesis import strategies as st
from pydantic import AwareDatetime, BaseModel, ValidationError
from pydantic.fields import FieldInfo

from hub.contract.base import ContractRecord
from hub.contract.envelope import DataClass, Envelope, Event
from hub.contract.fields import allowed_municipality_codes
from hub.contract.personnummer import luhn_ok

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
MIN_DT = datetime(1971, 1, 1)
MAX_DT = datetime(2099, 12, 31)


def personnummer_12(born: date, serial: int, coordination: bool = False) -> str:
    """A valid 12-digit personnummer for a birth date and a 3-digit serial."""
    day = born.day + (60 if coordination else 0)
    nine = f"{born:%y%m}{day:02d}{serial:03d}"
    for check in range(10):
        if luhn_ok(nine + str(check)):
            return f"{born.year:04d}{nine[2:]}{check}"
    raise AssertionError("unreachable")


PERSONNUMMER = st.builds(
    personnummer_12,
    st.dates(date(1925, 1, 1), date(2024, 12, 31)),
    st.integers(0, 999),
    st.booleans(),
)
UTC_DATETIMES = st.datetimes(MIN_DT, MAX_DT, timezones=st.just(UTC)).map(
    lambda d: d.replace(microsecond=d.microsecond - d.microsecond % 1000)
)


def _bounds(meta: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    meta = [x for m in meta for x in (m.metadata if isinstance(m, FieldInfo) else [m])]
    for m in meta:
        for attr in ("ge", "le", "min_length"):
            if getattr(m, attr, None) is not None:
                out[attr] = getattr(m, attr)
        if isinstance(m, annotated_types.Ge):
            out["ge"] = m.ge
    return out


def for_annotation(annotation: Any, meta: list[Any], name: str) -> st.SearchStrategy[Any]:
    """A strategy for one field type (before the model's own validators)."""
    if name == "personnummer":
        return PERSONNUMMER
    if name == "municipality_code":
        return st.sampled_from(sorted(allowed_municipality_codes()))
    if name == "home_municipality_code":
        return st.from_regex(r"\A\d{4}\Z")
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        return for_annotation(base, [*meta, *extra], name)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return st.none() | for_annotation(args[0], meta, name)
    if origin is list:
        return st.lists(for_annotation(typing.get_args(annotation)[0], [], name), max_size=3)
    if origin is dict:
        return st.dictionaries(TEXT, TEXT, max_size=3)
    b = _bounds(meta)
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers(b.get("ge", -(2**31)), b.get("le", 2**31 - 1))
    if annotation is float:
        return st.floats(b.get("ge", -1e12), b.get("le", 1e12), allow_nan=False, allow_infinity=False)
    if annotation is str:
        return st.text(st.characters(exclude_categories=("Cs",)), min_size=b.get("min_length", 0), max_size=20)
    if annotation is bytes:
        return st.binary(max_size=30)
    if annotation in (datetime, AwareDatetime):
        return UTC_DATETIMES
    if annotation is date:
        return st.dates(MIN_DT.date(), MAX_DT.date())
    if annotation is UUID:
        return st.uuids()
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return st.sampled_from(list(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return dicts_for(annotation)
    for m in meta:  # AwareDatetime and friends
        if "datetime" in repr(m).lower():
            return UTC_DATETIMES
    raise NotImplementedError(f"{name}: {annotation!r}")


def dicts_for(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    """Field values for ``model`` as a dict (nested models as dicts)."""
    fields = {}
    for name, info in model.model_fields.items():
        if model is Envelope and name == "schema_version":
            fields[name] = st.just(1)
            continue
        if name == "birth_year":
            fields[name] = st.none()
            continue
        fields[name] = for_annotation(info.annotation, list(info.metadata), name)
    return st.fixed_dictionaries(fields)


def _fix_event(model: type[Event], data: dict[str, Any]) -> dict[str, Any]:
    env = data["envelope"]
    env["event_type"] = model.EVENT_TYPE
    if model.SUBJECT_RULE == "forbidden":
        env["subject"] = None
    elif model.SUBJECT_RULE == "required" and env["subject"] is None:
        env["subject"] = {"personnummer": personnummer_12(date(2008, 5, 17), 123), "birth_year": None}
    if env["subject"] is not None and not DataClass(env["data_class"]).is_personal:
        env["data_class"] = DataClass.personal_statutory
    return data


def _fix_record(model: type[ContractRecord], data: dict[str, Any]) -> dict[str, Any]:
    if "period_kind" in data:  # lägesbild
        data["period"] = "2026-W33" if data["period_kind"].value == "week" else "2026-08-14"
        if data["count"] in (1, 2):
            data["count"] = None
        data["suppressed"] = data["count"] is None
    if model.EVENT_TYPE == "hub.deadletter":
        data["message"] = "".join(c for c in data["message"] if not c.isdigit())
    if model.EVENT_TYPE == "hub.access_record":  # channel and phase are strings of a closed set
        n = len(data["target"]) + len(data["accessor"])
        data["channel"] = ["web.inbox", "web.stream", "web.lagesbild", "web.operator", "cli.tail",
                           "cli.audit_subject"][n % 6]  # fmt: skip
        data["phase"] = ["view", "start", "progress", "end"][n % 4]
        data["subject"] = None if data["subject"] is None else "0123456789abcdef" * 2
    return data


def _validated(model: type[ContractRecord], data: dict[str, Any]) -> ContractRecord | None:
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


def models(model: type[ContractRecord]) -> st.SearchStrategy[ContractRecord]:
    """Valid instances of ``model`` (the few that break a cross-field rule are filtered out)."""
    base = dicts_for(model)
    if issubclass(model, Event):
        base = base.map(lambda d: _fix_event(model, d))  # type: ignore[arg-type]
    base = base.map(lambda d: _fix_record(model, d))
    return base.map(lambda d: _validated(model, d)).filter(lambda m: m is not None)  # type: ignore[return-value]


def envelope(event_type: str, subject: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A plain, valid envelope dict for hand-written tests."""
    now = datetime(2026, 8, 14, 13, 5, tzinfo=UTC)
    data: dict[str, Any] = {
        "event_id": "7b0f7a64-3a55-4f1e-9f53-3f4f2a6f2b11",
        "event_type": event_type,
        "schema_version": 1,
        "source_agency": event_type.partition(".")[0],
        "source_unit": "test",
        "municipality_code": "1381",
        "occurred_at": now,
        "recorded_at": now + timedelta(minutes=5),
        "subject": None if subject is None else {"personnummer": subject},
        "data_class": "personal_statutory" if subject else "aggregated",
    }
    data.update(overrides)
    return data
