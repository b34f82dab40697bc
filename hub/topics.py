"""Topic names: the public contract of where events flow (documented in docs/topics.md).

Every name can carry a namespace prefix (``HUB_TOPIC_NAMESPACE``, e.g. ``test1.``) so several hubs —
or several test runs — can share one cluster without seeing each other's events.

Each source unit has its own agency topic — ``agency.polisen.events``, ``agency.kriminalvarden.events``
and one per municipality, ``agency.kommun.1381.events`` — so the broker's ACLs decide who may publish
what, and the worker knows an event's authenticated source from the topic it was read from.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hub.identity import AGENCIES, PER_MUNICIPALITY, SourceUnit, source_units

__all__ = ["AGENCIES", "Topics"]


@dataclass(frozen=True)
class Topics:
    namespace: str = ""

    def agency(self, agency: str, municipality: str | None = None) -> str:
        """Where a source unit publishes: ``agency.polisen.events``, ``agency.kommun.1381.events``."""
        if agency in PER_MUNICIPALITY:
            if not municipality:
                raise ValueError(f"{agency} publishes per municipality: name the municipality")
            return f"{self.namespace}agency.{agency}.{municipality}.events"
        return f"{self.namespace}agency.{agency}.events"

    def unit(self, unit: SourceUnit) -> str:
        """The topic of one source unit."""
        return self.agency(unit.agency, unit.municipality)

    def sources(self, codes: Iterable[str]) -> list[str]:
        """Every agency topic for the served municipalities."""
        return [self.unit(u) for u in source_units(codes)]

    def unit_of(self, topic: str) -> SourceUnit | None:
        """The source unit whose topic this is (what the broker authenticated), or None."""
        if not topic.startswith(self.namespace):
            return None
        parts = topic[len(self.namespace) :].split(".")
        if parts[0] != "agency" or parts[-1] != "events":
            return None
        if len(parts) == 3 and parts[1] in AGENCIES and parts[1] not in PER_MUNICIPALITY:
            return SourceUnit(parts[1])
        if len(parts) == 4 and parts[1] in PER_MUNICIPALITY and len(parts[2]) == 4 and parts[2].isascii() \
                and parts[2].isdigit():  # a municipality's SCB code (not the county's)
            return SourceUnit(parts[1], parts[2])
        return None

    def agency_of(self, topic: str) -> str | None:
        """The agency whose topic this is, or None."""
        unit = self.unit_of(topic)
        return unit.agency if unit else None

    def deliver(self, receiver: str, municipality_code: str) -> str:
        """What a receiver sees: ``deliver.socialtjanst.1381``; county level is ``deliver.lagesbild.13``."""
        return f"{self.namespace}deliver.{receiver}.{municipality_code}"

    @property
    def deadletter(self) -> str:
        """Bad input with its reason and the original bytes."""
        return f"{self.namespace}hub.deadletter"

    @property
    def audit(self) -> str:
        """Every disclosure and refusal, hash-chained per partition."""
        return f"{self.namespace}hub.audit"

    @property
    def access(self) -> str:
        """Human reads recorded by the hub's tools (web app, ``hub tail``, ``hub audit subject``), which the
        worker appends to the audit trail."""
        return f"{self.namespace}hub.access"

    @property
    def consent(self) -> str:
        """Compacted consent state (person key × scope × municipality), the changelog of the consent table."""
        return f"{self.namespace}hub.consent"

    @property
    def dedup(self) -> str:
        """Internal, compacted: the worker's dedup marks (source unit × event id → first seen where, when)."""
        return f"{self.namespace}hub.dedup"

    @property
    def lagesbild_alerts(self) -> str:
        """Internal, compacted: which areas' burglary wave has been alerted (no personal data)."""
        return f"{self.namespace}hub.lagesbild-alerts"

    @property
    def schemas(self) -> str:
        """Compacted: every schema version, keyed by fingerprint."""
        return f"{self.namespace}hub.schemas"

    @property
    def lagesbild(self) -> str:
        """Internal: count increments keyed by receiver and municipality, summed by the lägesbild stage."""
        return f"{self.namespace}hub.lagesbild"

    @property
    def lagesbild_state(self) -> str:
        """Internal, compacted: the lägesbild stage's count per aggregate key, per ``hub.lagesbild`` partition."""
        return f"{self.namespace}hub.lagesbild-state"
