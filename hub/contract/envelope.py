"""The envelope every agency event carries, its subject, and the shared enums.

Avro enum symbols cannot contain ``-``: the design's data classes ``personal-consent`` and
``personal-statutory`` are the symbols ``personal_consent`` and ``personal_statutory``
(:meth:`DataClass.design_name`, :meth:`DataClass.from_design`).
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import AfterValidator, BeforeValidator, Field, Strict, model_validator

from hub.contract import personnummer as pnr
from hub.contract.base import ContractModel, ContractRecord
from hub.contract.fields import MunicipalityCode, UtcMillis

if TYPE_CHECKING:
    from hub.contract.registry import SchemaRegistry


class Agency(StrEnum):
    """``se.samverkan.common.Agency``."""

    polisen = "polisen"
    kriminalvarden = "kriminalvarden"
    kommun = "kommun"
    region = "region"
    lansstyrelsen = "lansstyrelsen"
    hub = "hub"


class DataClass(StrEnum):
    """``se.samverkan.common.DataClass``."""

    public = "public"
    aggregated = "aggregated"
    personal_consent = "personal_consent"
    personal_statutory = "personal_statutory"

    @property
    def design_name(self) -> str:
        """The design's spelling (``personal-consent``)."""
        return self.value.replace("_", "-")

    @classmethod
    def from_design(cls, name: str) -> DataClass:
        """Parse the design's spelling (``personal-statutory``) or the symbol."""
        return cls(name.replace("-", "_"))

    @property
    def is_personal(self) -> bool:
        """True for the two personal data classes."""
        return self in (DataClass.personal_consent, DataClass.personal_statutory)


class OffenceCategory(StrEnum):
    """``se.samverkan.common.OffenceCategory``: the hub's closed offence vocabulary."""

    residential_burglary = "residential_burglary"
    other_burglary = "other_burglary"
    theft = "theft"
    robbery = "robbery"
    assault = "assault"
    threat_harassment = "threat_harassment"
    shooting_explosion = "shooting_explosion"
    weapons = "weapons"
    drugs = "drugs"
    vandalism = "vandalism"
    fraud = "fraud"
    sexual_offence = "sexual_offence"
    domestic_violence = "domestic_violence"
    public_order = "public_order"
    traffic = "traffic"
    fire = "fire"
    missing_person = "missing_person"
    summary = "summary"
    other = "other"


class ConsentScope(StrEnum):
    """``se.samverkan.common.ConsentScope``: what a consent covers."""

    sig = "sig"
    release_planning = "release_planning"
    socialtjanst_info_sharing = "socialtjanst_info_sharing"


Personnummer12 = Annotated[str, AfterValidator(pnr.normalise)]
"""A personnummer in any accepted form, normalised to 12 digits."""
_EVENT_TYPE = re.compile(r"^[a-z][a-z_]*\.[a-z][a-z_0-9]*$")
_UUID_TEXT = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _canonical_uuid(value: object) -> object:
    """An event id is written in the canonical 8-4-4-4-12 form (no other spelling that UUID() would take)."""
    if isinstance(value, str) and not _UUID_TEXT.match(value):
        raise ValueError("must be a UUID written as 8-4-4-4-12 hexadecimal digits")
    return value


EventId = Annotated[UUID, BeforeValidator(_canonical_uuid)]


@cache
def payload_fields_by_version(schema_name: str) -> dict[int, frozenset[str]]:
    """The payload field names of every local version of an event schema (``{1: {...}, 2: {...}}``)."""
    out: dict[int, frozenset[str]] = {}
    for sv in _registry().versions(schema_name):
        payload = next((f for f in sv.schema.get("fields", []) if f.get("name") == "payload"), None)
        if sv.version is not None and payload is not None and isinstance(payload.get("type"), dict):
            out[sv.version] = frozenset(f["name"] for f in payload["type"].get("fields", []))
    return out


@lru_cache(maxsize=1)
def _registry() -> SchemaRegistry:
    from hub.contract.registry import SchemaRegistry

    return SchemaRegistry()


class Subject(ContractModel):
    """``se.samverkan.common.Subject``: the person an individual event is about."""

    personnummer: Personnummer12
    birth_year: Annotated[int, Strict(), Field(ge=1800, le=2200)] | None = None

    @model_validator(mode="after")
    def _birth_year_agrees(self) -> Subject:
        if self.birth_year is not None and self.birth_year != int(self.personnummer[:4]):
            raise ValueError("subject.birth_year does not agree with subject.personnummer")
        return self

    def age_on_date(self, on: datetime) -> int:
        """Age in whole years at a moment (its UTC date)."""
        return pnr.age_on(self.personnummer, on.date())


class Envelope(ContractModel):
    """``se.samverkan.common.Envelope``."""

    event_id: EventId
    event_type: Annotated[str, Field(pattern=_EVENT_TYPE.pattern)]
    schema_version: Annotated[int, Strict(), Field(ge=1, le=2**31 - 1)]
    """One of the event type's schema versions; the payload holds only that version's fields."""
    source_agency: Agency
    source_unit: Annotated[str, Field(min_length=1)]
    municipality_code: MunicipalityCode
    area: str | None = None
    occurred_at: UtcMillis
    recorded_at: UtcMillis
    subject: Subject | None = None
    data_class: DataClass

    def age(self) -> int | None:
        """The subject's age in whole years when the event occurred, or None without a subject."""
        return None if self.subject is None else self.subject.age_on_date(self.occurred_at)


SubjectRule = Literal["required", "forbidden", "optional"]


class Event(ContractRecord):
    """An agency event: ``envelope`` plus an event-specific ``payload`` (declared by each subclass).

    ``SUBJECT_RULE`` says whether the envelope's subject is required (individual events), forbidden
    (public and aggregate events) or optional. A subject always needs a personal data class.
    """

    SUBJECT_RULE: ClassVar[SubjectRule] = "optional"
    envelope: Envelope

    @model_validator(mode="after")
    def _envelope_agrees(self) -> Event:
        env = self.envelope
        if env.event_type != self.EVENT_TYPE:
            raise ValueError(f"envelope.event_type must be {self.EVENT_TYPE!r} for this record")
        if self.SUBJECT_RULE == "required" and env.subject is None:
            raise ValueError(f"envelope.subject is required for {self.EVENT_TYPE}")
        if self.SUBJECT_RULE == "forbidden" and env.subject is not None:
            raise ValueError(f"envelope.subject must be null for {self.EVENT_TYPE}")
        if env.subject is not None and not env.data_class.is_personal:
            raise ValueError("envelope.data_class must be personal_consent or personal_statutory with a subject")
        self._version_agrees()
        return self

    def _version_agrees(self) -> None:
        """``schema_version`` names a version of this event type, and the payload uses no field that version
        does not have (a v1 event carrying a v2-only field is refused, not silently reinterpreted)."""
        versions = payload_fields_by_version(self.SCHEMA_NAME)
        if not versions:
            return
        env = self.envelope
        if env.schema_version not in versions:
            known = ", ".join(str(v) for v in sorted(versions))
            raise ValueError(f"envelope.schema_version {env.schema_version} is not a version of {self.EVENT_TYPE} "
                             f"(versions: {known})")
        payload = getattr(self, "payload", None)
        if payload is None:
            return
        fields = type(payload).model_fields
        for name in sorted(payload.model_fields_set - versions[env.schema_version]):
            if name in fields and getattr(payload, name) != fields[name].default:
                raise ValueError(f"payload.{name} is not a field of {self.EVENT_TYPE} version {env.schema_version}")
