"""Minimise and pseudonymise: build exactly what one receiver may see of one event.

A receiver gets only the fields its rule projects. The person is referred to as the rule says: not at all,
by a pseudonym keyed for that receiver alone, or — only for ``sig``/``socialtjanst`` under consent or
statute, as the rules loader enforces — by the personnummer itself.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import orjson
from pydantic_core import to_jsonable_python

from hub.audit import millis
from hub.contract.envelope import Event
from hub.contract.fast import EventView
from hub.contract.outputs import Delivery
from hub.flows.routing import Plan, field_value
from hub.pseudonym import Pseudonymiser
from hub.rules.receivers import PersonDisclosure


def project(plan: Plan, event: EventView) -> dict[str, str]:
    """The projected fields as JSON texts, keyed by field path; the subject never appears here."""
    out: dict[str, str] = {}
    for path in plan.spec.fields:
        if path == "envelope.subject":
            continue  # the person is disclosed only through person_ref / personnummer below
        out[path] = json_text(field_value(event, path))
    return out


_ENUM_TEXT: dict[Enum, str] = {}


def json_text(value: Any) -> str:
    """``json.dumps(to_jsonable_python(value), ensure_ascii=False)``: by orjson for the plain text, whole numbers,
    booleans and null most fields are, and for what pydantic makes text of (datetimes, dates; the same text:
    tested); an enum member's text once per member; the standard library for the rest."""
    t = type(value)
    if not (t is str or t is int or t is bool or value is None):  # the common fields skip both checks
        if isinstance(value, Enum):
            text = _ENUM_TEXT.get(value)
            if text is None:
                text = _ENUM_TEXT[value] = json_text(value.value)
            return text
        value = to_jsonable_python(value)
        t = type(value)
    if t is str or t is int or t is bool or value is None:
        try:
            return orjson.dumps(value).decode()
        except orjson.JSONEncodeError:  # a lone surrogate, a number beyond 64 bits: as before
            pass
    return json.dumps(value, ensure_ascii=False)


def delivery_datum(
    plan: Plan, event: EventView, pseudonyms: Pseudonymiser, now: datetime | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The ``hub.delivery`` record ``plan.receiver`` gets for ``event``, as the plain data its Avro schema
    takes (the hot path: every value comes from the validated event and the rules; ``event_id``: its id as
    text, when the caller has it)."""
    env = event.envelope
    person_ref: str | None = None
    personnummer: str | None = None
    if env.subject is not None and plan.spec.person is not PersonDisclosure.NONE:
        person_ref = pseudonyms.pseudonym(plan.receiver, env.subject.personnummer)
        if plan.spec.person is PersonDisclosure.IDENTIFIED:
            personnummer = env.subject.personnummer
    return {
        "receiver": plan.receiver, "municipality_code": plan.municipality_code, "legal_basis": plan.spec.basis,
        "event_id": event_id or str(env.event_id), "event_type": env.event_type, "person_ref": person_ref,
        "personnummer": personnummer, "fields": project(plan, event), "occurred_at": env.occurred_at,
        "delivered_at": millis(now or datetime.now(UTC)),
    }  # fmt: skip


def build_delivery(plan: Plan, event: Event, pseudonyms: Pseudonymiser, now: datetime | None = None) -> Delivery:
    """:func:`delivery_datum` as a validated :class:`Delivery`."""
    return Delivery.model_validate(delivery_datum(plan, event, pseudonyms, now))


def disclosed_fields(plan: Plan, delivery: dict[str, Any]) -> list[str]:
    """What the audit records as disclosed: the projected paths plus any person reference."""
    fields = sorted(delivery["fields"])
    if delivery["person_ref"] is not None:
        fields.append("person_ref")
    if delivery["personnummer"] is not None:
        fields.append("personnummer")
    return fields
