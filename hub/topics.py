"""Topic names: the public contract of where events flow (documented in docs/topics.md).

Every name can carry a namespace prefix (``HUB_TOPIC_NAMESPACE``, e.g. ``test1.``) so several hubs —
or several test runs — can share one cluster without seeing each other's events.
"""

from __future__ import annotations

from dataclasses import dataclass

AGENCIES = ("polisen", "kriminalvarden", "kommun")
"""Agencies that publish events onto ``agency.<agency>.events``."""


@dataclass(frozen=True)
class Topics:
    namespace: str = ""

    def agency(self, agency: str) -> str:
        """Where an agency's connectors publish: ``agency.polisen.events``."""
        return f"{self.namespace}agency.{agency}.events"

    def agency_of(self, topic: str) -> str | None:
        """The agency whose topic this is, or None."""
        if not topic.startswith(self.namespace):
            return None
        parts = topic[len(self.namespace) :].split(".")
        if len(parts) == 3 and parts[0] == "agency" and parts[2] == "events":
            return parts[1]
        return None

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
    def consent(self) -> str:
        """Compacted consent state (person key × scope), the changelog of the consent table."""
        return f"{self.namespace}hub.consent"

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
        """Internal, compacted: the lägesbild stage's counted events, per ``hub.lagesbild`` partition."""
        return f"{self.namespace}hub.lagesbild-state"
