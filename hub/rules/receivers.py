"""The receivers of DESIGN.md and what each may lawfully receive.

This table is the law as the hub enforces it; routing rules are checked against it when they are loaded,
so a rule that would disclose personal data without a basis cannot be loaded at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Basis(StrEnum):
    """Kinds of legal basis a delivery can rest on (the part before ``:`` in ``consent:sig``)."""

    PUBLIC = "public"
    """Already published (the police's open events feed)."""
    AGGREGATED = "aggregated"
    """Counted into the lägesbild only; the event itself is not passed on."""
    ANONYMISED = "anonymised"
    """The event without any person data or free text that could identify a person."""
    CONSENT = "consent"
    """The person's written consent for a named scope (and a guardian's under 18)."""
    STATUTE = "statute"
    """A statute obliges the sender (e.g. LUL 6 §); point-to-point to one authority only."""


PERSONAL_BASES = frozenset({Basis.CONSENT, Basis.STATUTE})


class PersonDisclosure(StrEnum):
    """How a delivery refers to the person the event is about."""

    NONE = "none"
    PSEUDONYM = "pseudonym"
    """A keyed HMAC of the personnummer, different for every receiver."""
    IDENTIFIED = "identified"
    """The personnummer itself."""


@dataclass(frozen=True)
class Receiver:
    id: str
    name: str
    bases: frozenset[Basis]
    """Bases a delivery to this receiver may rest on."""
    consent_scopes: frozenset[str] = frozenset()
    """Consent scopes accepted (for ``consent:<scope>``)."""
    may_identify: bool = False
    """May get the real personnummer under a personal basis."""


RECEIVERS: dict[str, Receiver] = {
    r.id: r
    for r in (
        Receiver(
            "sig", "Sociala insatsgrupper", frozenset({Basis.CONSENT}),
            consent_scopes=frozenset({"sig"}), may_identify=True,
        ),
        Receiver(
            "socialtjanst", "Socialtjänsten (socialnämnden)", frozenset({Basis.STATUTE, Basis.CONSENT}),
            consent_scopes=frozenset({"release_planning", "socialtjanst_info_sharing"}), may_identify=True,
        ),
        Receiver("ungdom", "Brottsförebyggande arbete med unga 13–24", frozenset({Basis.AGGREGATED})),
        Receiver("vbe", "Våldsbejakande extremism", frozenset({Basis.AGGREGATED, Basis.ANONYMISED})),
        Receiver("hrv", "Hedersrelaterat våld och förtryck", frozenset({Basis.AGGREGATED, Basis.ANONYMISED})),
        Receiver(
            "medborgarloften", "Medborgarlöften",
            frozenset({Basis.PUBLIC, Basis.AGGREGATED, Basis.ANONYMISED}),
        ),
        Receiver(
            "grannsamverkan", "Grannsamverkan",
            frozenset({Basis.PUBLIC, Basis.AGGREGATED, Basis.ANONYMISED}),
        ),
        Receiver("lagesbild", "Lägesbild (samverkansmöte, Länsstyrelsen)", frozenset({Basis.AGGREGATED})),
    )
}  # fmt: skip
