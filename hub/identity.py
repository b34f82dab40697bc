"""Who is who: the source units that publish events and the Kafka principals of every party.

One declarative source (the agencies, the served municipalities and the receiver catalogue) gives every
identity the broker knows, as X-Road gives one to every member and subsystem:

- **source units**: ``polisen``, ``kriminalvarden`` and each municipality separately (``kommun-1381``, …):
  six municipalities are six authorities, not one "kommun";
- **principals** (SCRAM user names): the administrator, the hub's own services (``worker``, ``gateway``,
  ``web``), operators, every source unit, every connector, and every receiver inbox per municipality
  (``sig-1381``, ``socialtjanst-1380``, ``lagesbild-13``).

What each principal may do on the broker is derived from this catalogue in :mod:`hub.kafka.acls`.
Nothing here reads settings or talks to Kafka.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from hub.rules.receivers import RECEIVERS

AGENCIES = ("polisen", "kriminalvarden", "kommun")
"""Agencies that publish events. ``kommun`` publishes per municipality (one source unit each)."""

PER_MUNICIPALITY = frozenset({"kommun"})
"""Agencies whose every municipality is its own authority, with its own topic and credentials."""

ADMIN = "admin"
WORKER = "worker"
GATEWAY = "gateway"
WEB = "web"
OPERATOR = "operator"
REGISTRAR = "registrar"
SIMULATOR = "connector-simulator"
POLISEN_FEED = "connector-polisen-feed"

HEADER_SOURCE_UNIT = "hub-source-unit"
"""Record header the gateway sets: the source unit whose credential sent the event (UTF-8)."""
HEADER_CREDENTIAL = "hub-credential"
"""Record header the gateway sets: which credential (``<unit>:<12 hex of the token's SHA-256>``), never the token;
the worker copies it into the audit record."""

Kind = Literal["admin", "service", "operator", "agency", "connector", "receiver"]


@dataclass(frozen=True, order=True)
class SourceUnit:
    """One party that may publish events: an agency, or one municipality of a per-municipality agency."""

    agency: str
    municipality: str | None = None

    @property
    def name(self) -> str:
        """``polisen``, ``kriminalvarden``, ``kommun-1381``: the unit's principal and credential owner."""
        return self.agency if self.municipality is None else f"{self.agency}-{self.municipality}"

    def __str__(self) -> str:
        return self.name


def source_units(codes: Iterable[str]) -> list[SourceUnit]:
    """Every source unit for the served municipalities, in a stable order."""
    units: list[SourceUnit] = []
    for agency in AGENCIES:
        if agency in PER_MUNICIPALITY:
            units.extend(SourceUnit(agency, code) for code in codes)
        else:
            units.append(SourceUnit(agency))
    return units


def parse_unit(name: str, codes: Iterable[str]) -> SourceUnit:
    """The source unit called ``name`` (``polisen``, ``kommun-1381``); ValueError naming the choices."""
    units = {u.name: u for u in source_units(codes)}
    if name in units:
        return units[name]
    if name in PER_MUNICIPALITY:
        raise ValueError(f"{name} publishes per municipality: use {name}-<code> (one of "
                         f"{', '.join(u.name for u in units.values() if u.agency == name)})")
    raise ValueError(f"unknown source unit {name!r}; units: {', '.join(units)}")


@dataclass(frozen=True, order=True)
class Principal:
    """One identity the broker authenticates (a SCRAM user name)."""

    name: str
    kind: Kind
    description: str
    unit: SourceUnit | None = None
    """For an agency unit or a connector: the source unit whose topic it writes (None: several or none)."""
    receiver: str | None = None
    """For a receiver inbox: the receiver id (``sig``)."""
    municipality: str | None = None
    """For a receiver inbox: the municipality (or county) code it belongs to."""


def receiver_principal(receiver: str, code: str) -> str:
    """The principal of one receiver inbox: ``sig-1381``, ``lagesbild-13``."""
    return f"{receiver}-{code}"


def filedrop_principal(unit: SourceUnit) -> str:
    """The principal of the file-drop connector a source unit runs: ``connector-filedrop-kommun-1381``."""
    return f"connector-filedrop-{unit.name}"


def principals(codes: Iterable[str], county_code: str) -> list[Principal]:
    """Every principal of the hub for the served municipalities (and the county)."""
    codes = list(codes)
    units = source_units(codes)
    out = [
        Principal(ADMIN, "admin", "super user: creates topics, applies ACLs, repairs; operators' scripts only"),
        Principal(WORKER, "service", "the routing worker: reads agency topics, writes deliveries and trails"),
        Principal(GATEWAY, "service", "the HTTP ingest gateway: writes each source unit's topic for the "
                                      "credential the request authenticated with"),
        Principal(WEB, "service", "the web app's operations page: reads the trails"),
        Principal(OPERATOR, "operator", "people in operations: read every hub topic (reconcile, audit verify)"),
        Principal(REGISTRAR, "operator", "the registrar: register extracts (hub audit subject) from the audit trail"),
        Principal(SIMULATOR, "connector", "the traffic simulator (test series only): writes agency topics"),
        Principal(POLISEN_FEED, "connector", "the police open-feed connector", unit=SourceUnit("polisen")),
    ]
    for unit in units:
        out.append(Principal(unit.name, "agency", f"{unit.name}'s own systems", unit=unit))
        if unit.agency != "polisen":
            out.append(Principal(filedrop_principal(unit), "connector", f"file drop of {unit.name}", unit=unit))
    for receiver in RECEIVERS:
        for code in [*codes, county_code]:
            out.append(Principal(receiver_principal(receiver, code), "receiver",
                                 f"the {receiver} inbox of {code}", receiver=receiver, municipality=code))
    return out
