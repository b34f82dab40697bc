"""Declarative routing rules: the YAML file's shape, and the checks that make unlawful rules unloadable.

A rule matches events (type, offence category, age range, municipality, data class) and lists deliveries,
each to one receiver on one legal basis with the fields that receiver gets. Loading fails, naming the rule,
when a delivery would give personal data to a receiver without a consent or statute basis, when a statute
flow is fanned out to more than one receiver, or when a receiver, basis or field is unknown.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hub.contract.base import all_models
from hub.rules.receivers import PERSONAL_BASES, RECEIVERS, Basis, PersonDisclosure

DEFAULT_RULES = Path(__file__).resolve().parent / "halland.yaml"

#: Payload fields that describe a person's circumstances in free text or identify a case about a person.
#: They count as personal data wherever the event has a subject.
PERSONAL_PAYLOAD_FIELDS = frozenset(
    {"case_id", "description", "offence_description", "reason", "needs", "consent_id", "signed_by"}
)


class RuleError(ValueError):
    """A rules file that must not be loaded; the message names the rule and what is wrong."""


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgeRange(_Closed):
    min: int = 0
    max: int = 200


class Match(_Closed):
    event_types: Annotated[list[str], Field(min_length=1)]
    categories: list[str] | None = None
    """Offence categories (``payload.category`` or ``payload.offence_category``)."""
    age: AgeRange | None = None
    """Age of the subject on the day of the event; events without a subject never match an age range."""
    municipalities: list[str] | None = None
    data_classes: list[str] | None = None
    fields: dict[str, list[str]] | None = None
    """Field predicates: ``{payload.concern_kind: [honour_related]}`` — the field's value is one of these."""


class Delivery(_Closed):
    receiver: str
    basis: str
    """``public``, ``aggregated``, ``anonymised``, ``consent:<scope>`` or ``statute:<name>``."""
    fields: list[str] = Field(default_factory=list)
    """Projection: ``envelope.<field>`` or ``payload.<field>`` the receiver gets."""
    person: PersonDisclosure = PersonDisclosure.NONE
    municipality_from: str = "envelope.municipality_code"
    """Which field names the receiving municipality (``payload.home_municipality_code``) or ``county``."""

    @functools.cached_property
    def basis_kind(self) -> Basis:  # asked several times per event on the hot path
        return Basis(self.basis.split(":", 1)[0])

    @property
    def basis_arg(self) -> str | None:
        parts = self.basis.split(":", 1)
        return parts[1] if len(parts) == 2 else None


class Rule(_Closed):
    id: str
    description: str
    match: Match
    deliver: Annotated[list[Delivery], Field(min_length=1)]


class RuleSet(_Closed):
    version: int
    name: str
    rules: list[Rule]

    @model_validator(mode="after")
    def _unique_ids(self) -> RuleSet:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule {rule.id!r} is defined twice")
            seen.add(rule.id)
        return self


def load_rules(path: Path | None = None) -> RuleSet:
    """Load and check a rules file (default: the Halland rules shipped with the hub)."""
    path = path or DEFAULT_RULES
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RuleError(f"cannot read rules file {path}: {exc}") from exc
    try:
        ruleset = RuleSet.model_validate(raw)
    except ValidationError as exc:
        raise RuleError(f"rules file {path} is malformed:\n{_describe(raw, exc)}") from exc
    for rule in ruleset.rules:
        check_rule(rule)
    return ruleset


def _describe(raw: object, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = err["loc"]
        where = ".".join(str(p) for p in loc)
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int) and isinstance(raw, dict):
            with contextlib.suppress(KeyError, IndexError, TypeError):
                where = f"rule {raw['rules'][loc[1]]['id']!r}: " + ".".join(str(p) for p in loc[2:])
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


def event_fields(event_type: str) -> set[str]:
    """The projectable field paths of an event type (``envelope.area``, ``payload.category``, ...)."""
    model = all_models().get(event_type)
    if model is None:
        raise KeyError(event_type)
    fields: set[str] = set()
    for top in ("envelope", "payload"):
        sub = model.model_fields[top].annotation
        sub_fields = getattr(sub, "model_fields", {})
        fields.update(f"{top}.{name}" for name in sub_fields)
    return fields


def is_personal_field(path: str) -> bool:
    top, _, name = path.partition(".")
    return (top == "envelope" and name == "subject") or (top == "payload" and name in PERSONAL_PAYLOAD_FIELDS)


def check_rule(rule: Rule) -> None:
    """Raise :class:`RuleError` naming ``rule`` when it would be unlawful or refers to unknown things."""

    def fail(msg: str) -> RuleError:
        return RuleError(f"rule {rule.id!r}: {msg}")

    known = all_models()
    for et in rule.match.event_types:
        if et not in known:
            raise fail(f"unknown event type {et!r}")
    for path in rule.match.fields or {}:
        for et in rule.match.event_types:
            if path not in event_fields(et):
                raise fail(f"match field {path!r} is not a field of event type {et!r}")
    statute = [d for d in rule.deliver if d.basis.startswith("statute:")]
    if statute and len(rule.deliver) > 1:
        raise fail("a statute flow is point-to-point: it must deliver to exactly one receiver, "
                   f"not fan out to {sorted(d.receiver for d in rule.deliver)}")
    for d in rule.deliver:
        receiver = RECEIVERS.get(d.receiver)
        if receiver is None:
            raise fail(f"unknown receiver {d.receiver!r} (known: {', '.join(sorted(RECEIVERS))})")
        try:
            kind = d.basis_kind
        except ValueError:
            raise fail(f"unknown legal basis {d.basis!r}") from None
        if kind in PERSONAL_BASES and not d.basis_arg:
            raise fail(f"basis {d.basis!r} must name its scope or statute, e.g. consent:sig")
        if kind not in receiver.bases:
            raise fail(f"receiver {d.receiver!r} may not receive on basis {kind.value!r} "
                       f"(allowed: {', '.join(sorted(b.value for b in receiver.bases))})")
        if kind is Basis.CONSENT and d.basis_arg not in receiver.consent_scopes:
            raise fail(f"receiver {d.receiver!r} does not accept consent scope {d.basis_arg!r}")
        personal_fields = [f for f in d.fields if is_personal_field(f)]
        if kind not in PERSONAL_BASES and (personal_fields or d.person is not PersonDisclosure.NONE):
            what = ", ".join(personal_fields) or f"person={d.person.value}"
            raise fail(f"would give personal data ({what}) to {d.receiver!r} without a consent or statute basis")
        if d.person is PersonDisclosure.IDENTIFIED and not receiver.may_identify:
            raise fail(f"receiver {d.receiver!r} may never get the personnummer itself")
        if d.municipality_from not in ("envelope.municipality_code", "county") and not any(
            d.municipality_from in event_fields(et) for et in rule.match.event_types
        ):
            raise fail(f"municipality_from {d.municipality_from!r} is not a field of the matched events")
        for et in rule.match.event_types:
            unknown = sorted(set(d.fields) - event_fields(et))
            if unknown:
                raise fail(f"unknown field(s) {', '.join(unknown)} for event type {et!r} "
                           f"(delivery to {d.receiver!r})")

