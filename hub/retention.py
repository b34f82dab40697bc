"""Retention by purpose: how long each topic keeps what it holds, following from its data class.

Personal data is kept only as long as its purpose needs (DESIGN.md, GDPR art. 5(1)(e)); the audit trail,
which holds no personnummer, is kept for good; bad input only as long as an operator needs to repair it.
Every figure is a setting (``HUB_RETENTION__*``), and ``hub topics show`` prints each topic's class,
retention and the reason. Nothing here talks to Kafka.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hub.rules.receivers import RECEIVERS, Basis
from hub.settings import RetentionSettings

DataClass = Literal["personal", "aggregated", "trail", "bad-input", "internal", "state"]
DAY_MS = 24 * 3600 * 1000
FOREVER = -1


@dataclass(frozen=True)
class Retention:
    data_class: DataClass
    retention_ms: int
    """-1: kept for good (or, for a compacted topic, the latest record per key for as long as it is current)."""
    why: str
    compacted: bool = False

    @property
    def config(self) -> dict[str, str]:
        """The topic configuration that enforces it."""
        if self.compacted:
            return {"cleanup.policy": "compact"}
        return {"cleanup.policy": "delete", "retention.ms": str(self.retention_ms)}

    @property
    def shown(self) -> str:
        if self.compacted:
            return "compacted (latest per key)"
        if self.retention_ms == FOREVER:
            return "forever"
        days = self.retention_ms / DAY_MS
        return f"{days:g} days"


def _days(days: float) -> int:
    return round(days * DAY_MS)


def personal_receiver(receiver: str) -> bool:
    """A receiver that may be sent personal data (on consent or statute)."""
    return bool(RECEIVERS[receiver].bases & {Basis.CONSENT, Basis.STATUTE})


def agency(policy: RetentionSettings) -> Retention:
    return Retention("personal", _days(policy.agency_days),
                     "source events, personnummer included: kept as long as they may have to be processed again "
                     "(hub reconcile --repair, hub lagesbild --rebuild after a fixed bug)")


def delivery(policy: RetentionSettings, receiver: str) -> Retention:
    if personal_receiver(receiver):
        return Retention("personal", _days(policy.personal_delivery_days),
                         "personal data disclosed to the receiver, who takes what it acts on into its own case "
                         "records; the inbox is not an archive")
    return Retention("aggregated", _days(policy.aggregate_delivery_days),
                     "aggregates and public notices only (no person recognisable): kept for the lägesbild's "
                     "comparisons over the years")


def audit() -> Retention:
    return Retention("trail", FOREVER, "every disclosure and refusal; holds no personnummer (person keys are keyed "
                                       "hashes): the hub's proof, kept for good")


def access(policy: RetentionSettings) -> Retention:
    return Retention("internal", _days(policy.increment_days),
                     "human reads on their way into the audit trail (who read what, no personnummer); they live "
                     "on in hub.audit")


def deadletter(policy: RetentionSettings) -> Retention:
    return Retention("bad-input", _days(policy.deadletter_days),
                     "the original bytes of bad input may hold personal data: kept only as long as an operator "
                     "needs to repair and re-send")


def increments(policy: RetentionSettings) -> Retention:
    return Retention("internal", _days(policy.increment_days),
                     "count increments between the worker's stages (no personal data); the counts live on in "
                     "the lägesbild state")


def state(what: str) -> Retention:
    return Retention("state", FOREVER, f"{what}: the latest record per key, for as long as it is current",
                     compacted=True)
