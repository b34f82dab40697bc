"""The hub's own records: deliveries, area alerts, lägesbild aggregates, dead letters, audit records and
checkpoints."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import AfterValidator, Field, field_validator, model_validator

from hub.contract import personnummer as pnr
from hub.contract.base import ContractRecord
from hub.contract.envelope import OffenceCategory, Personnummer12
from hub.contract.fields import Count, Int32, Int64, MunicipalityCode, UtcMillis

NonEmpty = Annotated[str, Field(min_length=1)]


class Delivery(ContractRecord):
    """``hub.delivery``: what one receiver gets; ``fields`` values are JSON-encoded."""

    EVENT_TYPE: ClassVar[str] = "hub.delivery"
    SCHEMA_NAME: ClassVar[str] = "se.samverkan.hub.Delivery"

    receiver: NonEmpty
    municipality_code: MunicipalityCode
    legal_basis: NonEmpty
    event_id: str
    event_type: str
    person_ref: str | None = None
    personnummer: Personnummer12 | None = None
    fields: dict[str, str]
    occurred_at: UtcMillis
    delivered_at: UtcMillis


class AreaAlert(ContractRecord):
    """``hub.area_alert``: a burglary wave or similar in one area."""

    EVENT_TYPE: ClassVar[str] = "hub.area_alert"
    SCHEMA_NAME: ClassVar[str] = "se.samverkan.hub.AreaAlert"

    alert_id: NonEmpty
    municipality_code: MunicipalityCode
    area: str
    category: OffenceCategory
    count_7d: Count
    trailing_weekly_mean: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    period_start: UtcMillis
    period_end: UtcMillis
    threshold: str


class PeriodKind(StrEnum):
    """``se.samverkan.hub.PeriodKind``."""

    week = "week"
    day = "day"


class LagesbildAggregate(ContractRecord):
    """``hub.lagesbild_aggregate``: a count per municipality, area, period and category; 1–2 suppressed."""

    EVENT_TYPE: ClassVar[str] = "hub.lagesbild_aggregate"
    SCHEMA_NAME: ClassVar[str] = "se.samverkan.hub.LagesbildAggregate"

    municipality_code: MunicipalityCode
    area: str | None = None
    category: NonEmpty
    period_kind: PeriodKind
    period: Annotated[str, Field(pattern=r"^\d{4}-(W\d{2}|\d{2}-\d{2})$")]
    count: Count | None = None
    suppressed: bool
    updated_at: UtcMillis

    @model_validator(mode="after")
    def _suppression(self) -> LagesbildAggregate:
        if self.suppressed != (self.count is None):
            raise ValueError("count must be null exactly when suppressed is true")
        if self.count is not None and self.count in (1, 2):
            raise ValueError("count 1 or 2 must be suppressed")
        weekly = "W" in self.period
        if weekly != (self.period_kind is PeriodKind.week):
            raise ValueError("period does not match period_kind")
        return self


class ReasonCode(StrEnum):
    """``se.samverkan.hub.ReasonCode``."""

    undecodable = "undecodable"
    unknown_fingerprint = "unknown_fingerprint"
    truncated = "truncated"
    invalid_payload = "invalid_payload"
    unknown_event_type = "unknown_event_type"
    no_matching_rule = "no_matching_rule"
    not_allowed_for_agency = "not_allowed_for_agency"


class Deadletter(ContractRecord):
    """``hub.deadletter``: bad input with its reason and original bytes."""

    EVENT_TYPE: ClassVar[str] = "hub.deadletter"
    SCHEMA_NAME: ClassVar[str] = "se.samverkan.hub.Deadletter"

    reason: ReasonCode
    message: str
    source_topic: str
    source_partition: Int32
    source_offset: Int64
    original: bytes
    event_id: str | None = None
    at: UtcMillis

    @field_validator("message")
    @classmethod
    def _no_personnummer(cls, value: str) -> str:
        if pnr.contains_personnummer(value):
            raise ValueError("message must not contain a personnummer")
        return value


class Decision(StrEnum):
    """``se.samverkan.hub.Decision``."""

    delivered = "delivered"
    refused = "refused"
    aggregated = "aggregated"
    recorded = "recorded"
    accessed = "accessed"


class AuditRecord(ContractRecord):
    """``hub.audit_record``: one disclosure or refusal, hash-chained per partition."""

    EVENT_TYPE: ClassVar[str] = "hub.audit_record"
    SCHEMA_NAME: ClassVar[str] = "se.samverkan.hub.AuditRecord"

    seq: Annotated[int, Field(ge=0, le=2**63 - 1)]
    event_id: str
    receiver: NonEmpty
    legal_basis: str
    decision: Decision
    reason: str | None = None
    fields_disclosed: list[str]
    at: UtcMillis
    prev_hash: str
    hash: str
    partition: Annotated[int, Field(ge=0, le=2**31 - 1)]
    source_unit: str | None = None
    """The authenticated source unit (the agency topic the event was read from); v2."""
    credential: str | None = None
    """The gateway credential id that sent the event (never the token); v2."""
    mac: str | None = None
    """HMAC-SHA256 (hex) of ``hash`` under the audit MAC key, which is never in Kafka; v3."""
    subject: str | None = None
    """The person key of the person the event is about (a keyed hash, never the personnummer); v4."""
    event_type: str | None = None
    """The source event's type; v4."""
    municipality_code: str | None = None
    """The municipality of the delivery, refusal or count, or of the inbox read; v4."""
    accessor: str | None = None
    """``accessed``: who read (``web:<user>``, or the CLI's Kafka principal); v4."""
    channel: str | None = None
    """``accessed``: how (``web.inbox``, ``web.stream``, ``web.lagesbild``, ``web.operator``, ``cli.tail``,
    ``cli.audit_subject``); v4."""
    target: str | None = None
    """``accessed``: the topic or page read; v4."""
    phase: str | None = None
    """``accessed``: ``view``, or a session's ``start``, ``progress``, ``end``; v4."""
    session_id: str | None = None
    """``accessed``: the session its ``start``, ``progress`` and ``end`` records share; v4."""
    items: Int64 | None = None
    """``accessed``: how many records were shown; v4."""
    event_ids: list[str] | None = None
    """``accessed``: the event ids of the deliveries shown; v4."""
    revealed: bool | None = None
    """``accessed``: whether identities were shown unmasked; v4."""


class AuditCheckpoint(ContractRecord):
    """``hub.audit_checkpoint``: a signed statement of one audit partition's chain head (Ed25519)."""

    EVENT_TYPE: ClassVar[str] = "hub.audit_checkpoint"
    SCHEMA_NAME: ClassVar[str] = "se.samverkan.hub.AuditCheckpoint"

    partition: Annotated[int, Field(ge=0, le=2**31 - 1)]
    seq: Annotated[int, Field(ge=0, le=2**63 - 1)]
    head: str
    at: UtcMillis
    key_id: str
    signature: str


class AccessChannel(StrEnum):
    """How a person read: the hub's tools that record every read (``hub.access_record``'s ``channel``)."""

    web_inbox = "web.inbox"
    web_stream = "web.stream"
    web_lagesbild = "web.lagesbild"
    web_operator = "web.operator"
    cli_tail = "cli.tail"
    cli_audit_subject = "cli.audit_subject"


class AccessPhase(StrEnum):
    view = "view"
    start = "start"
    progress = "progress"
    end = "end"


def _known(kind: type[StrEnum]) -> AfterValidator:
    def check(value: str) -> str:
        if value not in kind._value2member_map_:
            raise ValueError(f"unknown {kind.__name__}: {value!r} (known: {', '.join(kind._value2member_map_)})")
        return str(value)

    return AfterValidator(check)


class AccessRecord(ContractRecord):
    """``hub.access_record``: one human read, written to ``hub.access`` by the tool that showed it; the worker
    appends it to the audit trail as an ``accessed`` :class:`AuditRecord`."""

    EVENT_TYPE: ClassVar[str] = "hub.access_record"
    SCHEMA_NAME: ClassVar[str] = "se.samverkan.hub.AccessRecord"

    access_id: NonEmpty
    session_id: str | None = None
    accessor: Annotated[str, Field(min_length=1, max_length=200)]
    channel: Annotated[str, _known(AccessChannel)]
    """An :class:`AccessChannel` (a string in the schema: Avro enum symbols cannot hold the dot)."""
    target: Annotated[str, Field(min_length=1, max_length=300)]
    receiver: str | None = None
    municipality_code: MunicipalityCode | None = None
    phase: Annotated[str, _known(AccessPhase)]
    items: Annotated[int, Field(ge=0, le=2**63 - 1)]
    event_ids: Annotated[list[Annotated[str, Field(max_length=100)]], Field(max_length=5000)]
    revealed: bool
    subject: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")] | None = None
    at: UtcMillis
