"""The lawful-sharing gate: a planned delivery is made only on a basis that holds when it is processed.

- ``public``, ``aggregated``, ``anonymised``: hold by construction (the rules loader already refused any
  projection of personal data on these bases).
- ``statute:<name>``: holds; the rules loader guaranteed it is point-to-point to one authority.
- ``consent:<scope>``: holds only if the person's consent for that scope is active at processing time.
  Consent is state: the latest consent event per person, scope and recording municipality, kept in a table
  whose changelog is the compacted ``hub.consent`` topic. A withdrawal applies to every event processed after
  it. A consent counts only for deliveries to the receivers of the municipality that recorded it.

A refusal is not an error: it is returned with its reason and audited.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from hub.contract.events import ConsentGiven, ConsentGivenPayload, ConsentWithdrawn
from hub.contract.fast import EventView, FastConsentGiven, FastConsentGivenPayload, FastConsentWithdrawn
from hub.flows.routing import Plan
from hub.rules.receivers import Basis

ConsentTable = MutableMapping[str, dict[str, Any]]


def consent_key(person_key: str, scope: str, municipality: str) -> str:
    """Consent is kept per person, scope and the municipality that recorded it: Laholm's consent releases
    nothing to Halmstad's receivers."""
    return f"{person_key}|{scope}|{municipality}"


ConsentEvent = ConsentGiven | ConsentWithdrawn | FastConsentGiven | FastConsentWithdrawn
"""A consent event as a model (the edges) or as the worker's hot path reads it (:mod:`hub.contract.fast`)."""


def record_consent(table: ConsentTable, person_key: str, event: ConsentEvent, municipality: str) -> None:
    """Apply a consent event recorded by ``municipality`` to the consent state (the latest event per person,
    scope and municipality wins)."""
    p = event.payload
    key = consent_key(person_key, str(p.scope), municipality)
    at = int(event.envelope.occurred_at.timestamp() * 1000)
    previous = table.get(key)
    if previous is not None and previous["at"] > at:
        return  # an older event arriving late never overrides a newer decision
    if isinstance(p, ConsentGivenPayload | FastConsentGivenPayload):
        table[key] = {
            "active": True, "consent_id": p.consent_id, "at": at,
            "valid_from": p.valid_from.isoformat(),
            "valid_until": p.valid_until.isoformat() if p.valid_until else None,
        }  # fmt: skip
    else:
        table[key] = {"active": False, "consent_id": p.consent_id, "at": at}


def consent_active(table: ConsentTable, person_key: str, scope: str, municipality: str, today: date) -> str | None:
    """None when consent for ``scope`` recorded by ``municipality`` is active today; otherwise why not."""
    state = table.get(consent_key(person_key, scope, municipality))
    if state is None:
        return f"no consent recorded for scope {scope}"
    if not state["active"]:
        return f"consent for scope {scope} was withdrawn"
    if today < date.fromisoformat(state["valid_from"]):
        return f"consent for scope {scope} is not yet valid"
    if state["valid_until"] and today > date.fromisoformat(state["valid_until"]):
        return f"consent for scope {scope} has expired"
    return None


@dataclass(frozen=True, slots=True)
class Verdict:
    plan: Plan
    allowed: bool
    reason: str | None = None


def decide(plan: Plan, event: EventView, consents: ConsentTable, person_key: str | None, now: datetime) -> Verdict:
    """Whether ``plan`` may be delivered now."""
    kind = plan.spec.basis_kind
    if kind is Basis.CONSENT:
        scope = plan.spec.basis_arg or ""
        if person_key is None:
            return Verdict(plan, False, f"consent:{scope} needs a subject, the event has none")
        # Only the consent of the municipality whose receiver gets the delivery counts.
        reason = consent_active(consents, person_key, scope, plan.municipality_code, now.date())
        return Verdict(plan, reason is None, reason)
    if kind is Basis.STATUTE and event.envelope.subject is None:
        return Verdict(plan, False, f"{plan.spec.basis} needs a subject, the event has none")
    return Verdict(plan, True)
