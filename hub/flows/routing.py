"""Routing: which receivers an event is planned for, by the declarative rules.

The rules are indexed by event type once; matching an event is a dictionary look-up and a few predicate
checks per candidate rule.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from hub.contract.fast import EventView
from hub.rules.model import Delivery, Rule, RuleSet


@dataclass(frozen=True, slots=True)
class Plan:
    """One planned delivery: rule × receiver × receiving municipality."""

    rule_id: str
    receiver: str
    municipality_code: str
    spec: Delivery


def field_value(event: EventView, path: str) -> Any:
    """The value at ``envelope.<name>`` or ``payload.<name>`` of ``event`` (None when absent)."""
    top, _, name = path.partition(".")
    return getattr(getattr(event, top), name, None)


def event_category(event: EventView) -> str | None:
    """The offence category of an event (``payload.category`` or ``payload.offence_category``), if any."""
    payload = event.payload  # type: ignore[attr-defined]
    value = getattr(payload, "category", None) or getattr(payload, "offence_category", None)
    return None if value is None else str(value)


class Router:
    """Plans deliveries for events according to a :class:`RuleSet`."""

    def __init__(self, rules: RuleSet, county_code: str = "13") -> None:
        self.rules = rules
        self.county_code = county_code
        self._by_type: dict[str, list[Rule]] = defaultdict(list)
        for rule in rules.rules:
            for et in rule.match.event_types:
                self._by_type[et].append(rule)

    def matches(self, rule: Rule, event: EventView) -> bool:
        m = rule.match
        env = event.envelope
        if m.categories is not None and event_category(event) not in m.categories:
            return False
        if m.municipalities is not None and env.municipality_code not in m.municipalities:
            return False
        if m.data_classes is not None and env.data_class.value not in m.data_classes:
            return False
        if m.age is not None:
            age = env.age()
            if age is None or not m.age.min <= age <= m.age.max:
                return False
        if m.fields:
            for path, allowed in m.fields.items():
                value = field_value(event, path)
                if value is None or str(value) not in allowed:
                    return False
        return True

    def route(self, event: EventView) -> list[Plan]:
        """Every planned delivery for ``event``; empty when no rule matches."""
        plans: list[Plan] = []
        seen: set[tuple[str, str, str]] = set()
        for rule in self._by_type.get(event.envelope.event_type, ()):
            if not self.matches(rule, event):
                continue
            for spec in rule.deliver:
                municipality = self._municipality(event, spec)
                key = (spec.receiver, municipality, spec.basis)
                if key not in seen:
                    seen.add(key)
                    plans.append(Plan(rule.id, spec.receiver, municipality, spec))
        return plans

    def _municipality(self, event: EventView, spec: Delivery) -> str:
        if spec.municipality_from == "county":
            return self.county_code
        return str(field_value(event, spec.municipality_from))
