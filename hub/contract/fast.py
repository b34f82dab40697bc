"""Fast validation of agency events for the worker's hot path: msgspec Structs plus hand-written checks.

The pydantic models (:mod:`hub.contract.events`) stay the contract at the edges (gateway, file drop, encoding
of hub records); this module gives the *same* accept/reject decision, the same reason code and the same field
values for the records :meth:`hub.contract.serde.Serde.decode_record` returns, several times faster::

    fast = FastValidator()
    name, record = serde.decode_record(data)     # or: fast.decode(data, serde)
    event = fast.validate(name, record)          # a FastEvent, or ContractError like serde.decode + intake

How it decides:

1. ``msgspec.convert`` into the event's Struct checks the *shape*: closed records (no unknown keys), required
   fields, the Python types fastavro produces (``str``, ``int`` not ``bool``, ``float``, ``bool``, list of
   ``str``, ``datetime`` with a timezone), enum symbols, and the plain ranges and lengths (strict ints,
   ``Count``, ``Int64``, years, ``min_length=1``). Datetime, date and UUID fields must moreover hold instances
   of exactly those types (checked apart: msgspec would also parse them from text).
2. Input that fails step 1 is handed to pydantic unchanged (:func:`hub.contract.serde.validate`): only
   pydantic knows its own lax coercions (``bytes`` as text, ISO text as a datetime, a zero-time ``datetime``
   as a date, a tuple as a list, a model instance, ...). fastavro never produces such input, so this costs
   nothing on real traffic and keeps the decision identical by construction.
3. What the pydantic validators do beyond types is re-implemented here (see :class:`FastEvent` and the
   ``_validated`` methods): personnummer form, date and check digit and its normal form; birth year agreeing
   with it; municipality codes the hub serves (the ``ContextVar`` is read on every call, nothing is cached
   across calls); SCB codes; UTC normalisation, the 1900–2200 range and millisecond truncation of
   timestamps; finite floats; the subject rule, a personal data class with a subject, the event type, the
   schema version and version-only payload fields; the age rules of ``MinorSuspected`` and
   ``ConsentGiven``; the ordering and sum rules of the payloads.
4. A refusal by step 3 is, by default (``confirm_rejections=True``), confirmed by pydantic: the
   :class:`~hub.contract.errors.ContractError` then carries pydantic's own message and path, and a check
   here that refused too much could never drop a valid event. Refusals are the rare path (dead letters);
   ``confirm_rejections=False`` answers them here too, with messages of the same form.

The objects are frozen msgspec Structs with the attribute interface the flows use (``event.envelope.*``,
``envelope.subject.personnummer``, ``envelope.age()``, ``event.payload.*``; enum fields are the contract's
StrEnum members). Tell event types apart by ``event.envelope.event_type`` (or the Struct class, e.g.
:data:`CONSENT_EVENT_TYPES`, :func:`is_consent`). :func:`to_model` gives the pydantic model (cold path),
:func:`from_model` the other way round.

Known difference: a ``str`` subclass (e.g. a StrEnum member) put into a plain ``str`` field of a record is kept
as that subclass here, while pydantic makes it an exact ``str``; the values are equal (``==``, hash, ``str()``
and JSON), and fastavro never produces one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Final, Protocol, TypeVar, Union, cast, get_args, get_origin
from uuid import UUID

import msgspec
from pydantic import BaseModel

from hub.contract.base import model_for_schema_name
from hub.contract.envelope import (
    Agency,
    ConsentScope,
    DataClass,
    Event,
    OffenceCategory,
    SubjectRule,
    payload_fields_by_version,
)
from hub.contract.errors import ContractError
from hub.contract.events import ChildConcernKind, RiskLevel
from hub.contract.fields import EARLIEST, INT32_MAX, INT64_MAX, INT64_MIN, LATEST
from hub.contract.fields import _allowed as _allowed_codes  # the ContextVar behind allowed_municipality_codes()
from hub.contract.personnummer import normalise as _normalise_pnr
from hub.contract.serde import validate as _pydantic_validate

if TYPE_CHECKING:
    from hub.contract.envelope import Envelope, Subject
    from hub.contract.serde import Serde
    from hub.settings import HubSettings

__all__ = [
    "CONSENT_EVENT_TYPES",
    "EVENT_STRUCTS",
    "EnvelopeView",
    "EventView",
    "FastChildConcern",
    "FastChildConcernPayload",
    "FastChildConcernReport",
    "FastChildConcernReportPayload",
    "FastCitizenPromiseActionPayload",
    "FastConsentGiven",
    "FastConsentGivenPayload",
    "FastConsentWithdrawn",
    "FastConsentWithdrawnPayload",
    "FastEnvelope",
    "FastEvent",
    "FastExtremismConcern",
    "FastExtremismConcernPayload",
    "FastIncidentNotice",
    "FastIncidentNoticePayload",
    "FastIncidentReport",
    "FastIncidentReportPayload",
    "FastKommunCitizenPromiseAction",
    "FastMinorSuspected",
    "FastMinorSuspectedPayload",
    "FastPayload",
    "FastPolisenCitizenPromiseAction",
    "FastProbationEnded",
    "FastProbationEndedPayload",
    "FastProbationStarted",
    "FastProbationStartedPayload",
    "FastReleaseScheduled",
    "FastReleaseScheduledPayload",
    "FastSafetySurveyResult",
    "FastSafetySurveyResultPayload",
    "FastSigReferral",
    "FastSigReferralPayload",
    "FastSubject",
    "FastValidator",
    "FastWatchAreaRegistered",
    "FastWatchAreaRegisteredPayload",
    "FastYouthActivity",
    "FastYouthActivityPayload",
    "SubjectView",
    "as_dict",
    "fast_validate",
    "from_model",
    "is_consent",
    "mirror_problems",
    "to_model",
]

# -- field types (the shape msgspec checks) ---------------------------------------------------------------

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
Count = Annotated[int, msgspec.Meta(ge=0, le=INT32_MAX)]
Int64 = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]
SchemaVersion = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
BirthYear = Annotated[int, msgspec.Meta(ge=1800, le=2200)]
SurveyYear = Annotated[int, msgspec.Meta(ge=1900, le=2200)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Share = Annotated[float, msgspec.Meta(ge=0, le=1)]

_SCB: Final = re.compile(r"^\d{4}$", re.ASCII)  # as hub.contract.fields._SCB (Python re: "$" allows a final \n)
_DIGIT: Final = (0,) * 48 + tuple(range(10))
"""Digit value by ASCII code ("0" is 48)."""
_DOUBLED: Final = (0,) * 48 + tuple((2 * d - 9 if 2 * d > 9 else 2 * d) for d in range(10))
"""Luhn value of a doubled digit by ASCII code."""
_S = TypeVar("_S", bound=msgspec.Struct)


class _Refused(Exception):
    """A check here refused the record: the field path and what is wrong (never the value)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(path, message)
        self.path = path
        self.message = message


def _replace(obj: _S, changes: dict[str, Any]) -> _S:
    return msgspec.structs.replace(obj, **changes) if changes else obj


def _shape(annotation: Any, metadata: list[Any]) -> tuple[Any, bool, dict[str, Any]]:
    """(base type, optional, constraints and validators) of a pydantic or msgspec field type."""
    optional = False
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        optional, annotation = True, args[0]
    found: dict[str, Any] = {"validators": set()}
    meta = list(metadata)
    if get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        meta += extra
    for m in meta:
        meta += getattr(m, "metadata", [])  # a FieldInfo inside Annotated
        if callable(getattr(m, "func", None)):
            found["validators"].add(m.func.__name__)
        for attr in ("ge", "le", "min_length", "pattern", "strict", "allow_inf_nan", "tz"):
            value = getattr(m, attr, None)
            if value is not None and not isinstance(m, type):
                found[attr] = value
    return annotation, optional, found


def _utc_millis(value: datetime, path: str) -> datetime:
    """:func:`hub.contract.fields._utc_millis`: UTC, within 1900..2200, truncated to milliseconds."""
    if value.tzinfo is UTC and not value.microsecond % 1000:  # what fastavro gives: nothing to change
        if 1900 <= value.year <= 2200:  # == EARLIEST <= value <= LATEST for a UTC, whole-millisecond value
            return value
        raise _Refused(path, "timestamp outside 1900-01-01 .. 2200-12-31")
    value = value.astimezone(UTC)
    if not EARLIEST <= value <= LATEST:
        raise _Refused(path, "timestamp outside 1900-01-01 .. 2200-12-31")
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


def _utf8(value: str) -> bool:
    """Whether pydantic-core takes ``value`` as a constrained ``str`` (``min_length``): it reads it as UTF-8, so
    a lone surrogate is refused (a plain ``str`` field keeps it)."""
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


_NOT_UTF8: Final = "Input should be a valid string, unable to parse raw data as a unicode string"


def _finite(value: float | None, path: str) -> None:
    if value is not None and not math.isfinite(value):
        raise _Refused(path, "Input should be a finite number")


def _personnummer(text: str) -> str:
    """:func:`hub.contract.personnummer.normalise`, with a fast path for the 12-digit normal form."""
    if len(text) == 12 and text.isascii() and text.isdigit():
        ymd = int(text[:8])
        year, md = divmod(ymd, 10000)
        month, day = divmod(md, 100)
        try:
            date(year, month, day - 60 if day > 60 else day)
        except ValueError:
            raise _Refused("envelope.subject.personnummer", "personnummer has an invalid date") from None
        if year < 1800:
            raise _Refused("envelope.subject.personnummer", "personnummer has an invalid date")
        b = text.encode()
        d, v = _DOUBLED, _DIGIT  # Luhn over the 10-digit form (text[2:]): every other digit doubled
        if (d[b[2]] + v[b[3]] + d[b[4]] + v[b[5]] + d[b[6]] + v[b[7]] + d[b[8]] + v[b[9]] + d[b[10]]
                + v[b[11]]) % 10:  # fmt: skip
            raise _Refused("envelope.subject.personnummer", "personnummer has an invalid check digit")
        return text
    try:
        return _normalise_pnr(text)  # the other accepted forms: exactly the contract's parser
    except ValueError as exc:
        raise _Refused("envelope.subject.personnummer", str(exc)) from None


def _age_on(personnummer: str, on: date) -> int:
    """:func:`hub.contract.personnummer.age_on` for a valid 12-digit personnummer."""
    year, md = divmod(int(personnummer[:8]), 10000)
    if md % 100 > 60:  # samordningsnummer: day + 60
        md -= 60
    return on.year - year - (on.month * 100 + on.day < md)


_settings: Callable[[], HubSettings] | None = None


def _served(code: str) -> bool:
    """``code in allowed_municipality_codes()``, read afresh on every call, without building a set."""
    codes = _allowed_codes.get()
    if codes is not None:
        return code in codes
    global _settings  # imported on first use, as hub.contract.fields does
    if _settings is None:
        from hub.settings import get_settings

        _settings = get_settings
    settings = _settings()
    return code == settings.county_code or code in settings.municipality_codes


# -- envelope ---------------------------------------------------------------------------------------------

class _Frozen(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Immutable and closed, like :class:`hub.contract.base.ContractModel` (subclasses inherit both)."""


class FastSubject(_Frozen, frozen=True, kw_only=True):
    """:class:`hub.contract.envelope.Subject`. ``repr`` masks the personnummer."""

    personnummer: str
    birth_year: BirthYear | None = None

    def __repr__(self) -> str:
        return f"FastSubject(personnummer='************', birth_year={self.birth_year!r})"

    def age_on_date(self, on: datetime) -> int:
        """Age in whole years at a moment (its UTC date)."""
        return _age_on(self.personnummer, on.date())

    def _validated(self) -> FastSubject:
        pnr = _personnummer(self.personnummer)
        if self.birth_year is not None and self.birth_year != int(pnr[:4]):
            raise _Refused("envelope.subject", "subject.birth_year does not agree with subject.personnummer")
        return self if pnr is self.personnummer else msgspec.structs.replace(self, personnummer=pnr)


class FastEnvelope(_Frozen, frozen=True, kw_only=True):
    """:class:`hub.contract.envelope.Envelope`."""

    event_id: UUID
    event_type: str
    schema_version: SchemaVersion
    source_agency: Agency
    source_unit: NonEmpty
    municipality_code: str
    area: str | None = None
    occurred_at: AwareDatetime
    recorded_at: AwareDatetime
    subject: FastSubject | None = None
    data_class: DataClass

    def age(self) -> int | None:
        """The subject's age in whole years when the event occurred, or None without a subject."""
        return None if self.subject is None else _age_on(self.subject.personnummer, self.occurred_at.date())

    def _validated(self) -> FastEnvelope:
        changes: dict[str, Any] = {}
        if self.subject is not None:
            subject = self.subject._validated()
            if subject is not self.subject:
                changes["subject"] = subject
        if not _utf8(self.source_unit):
            raise _Refused("envelope.source_unit", _NOT_UTF8)
        if not _served(self.municipality_code):
            raise _Refused("envelope.municipality_code", "municipality code is not one this hub serves")
        occurred_at = _utc_millis(self.occurred_at, "envelope.occurred_at")
        if occurred_at is not self.occurred_at:
            changes["occurred_at"] = occurred_at
        recorded_at = _utc_millis(self.recorded_at, "envelope.recorded_at")
        if recorded_at is not self.recorded_at:
            changes["recorded_at"] = recorded_at
        return _replace(self, changes)


_INSTANCE_TYPES: Final = (datetime, date, UUID)


def _instance_fields(struct: type[msgspec.Struct]) -> tuple[tuple[str, type], ...]:
    """The fields that must hold a datetime, date or UUID instance (msgspec would also parse text)."""
    shapes = [(f.name, _shape(f.type, [])[0]) for f in msgspec.structs.fields(struct)]
    return tuple((name, kind) for name, kind in shapes if kind in _INSTANCE_TYPES)


_ENVELOPE_INSTANCES: Final = _instance_fields(FastEnvelope)


# -- payloads ---------------------------------------------------------------------------------------------


class FastPayload(_Frozen, frozen=True, kw_only=True):
    """Base of the payload Structs; ``_validated`` runs what the payload model's validators run."""

    _CONSTRAINED_TEXT: ClassVar[tuple[str, ...]] = ()
    """The text fields with a ``min_length`` (set by :func:`_bind`): pydantic-core refuses a lone surrogate in
    them."""

    def _validated(self) -> FastPayload:
        return self


class FastIncidentNoticePayload(FastPayload, frozen=True, kw_only=True):
    police_id: Int64
    police_type: str
    category: OffenceCategory
    title: str
    summary: str
    url: str
    location_name: str
    gps: str | None = None
    published_at: AwareDatetime
    county_level: bool

    def _validated(self) -> FastIncidentNoticePayload:
        at = _utc_millis(self.published_at, "payload.published_at")
        return self if at is self.published_at else msgspec.structs.replace(self, published_at=at)


class FastIncidentReportPayload(FastPayload, frozen=True, kw_only=True):
    report_id: NonEmpty
    category: OffenceCategory
    area: str
    offence_code: str | None = None
    description: str | None = None


class FastMinorSuspectedPayload(FastPayload, frozen=True, kw_only=True):
    case_id: NonEmpty
    offence_category: OffenceCategory
    offence_description: str
    guardian_notified: bool


class FastChildConcernPayload(FastPayload, frozen=True, kw_only=True):
    case_id: NonEmpty
    concern_kind: ChildConcernKind
    description: str


class FastExtremismConcernPayload(FastPayload, frozen=True, kw_only=True):
    case_id: NonEmpty
    concern_kind: str
    description: str
    risk_level: RiskLevel


class FastCitizenPromiseActionPayload(FastPayload, frozen=True, kw_only=True):
    promise_id: NonEmpty
    action: str
    category: OffenceCategory
    action_date: date
    status: str


class FastReleaseScheduledPayload(FastPayload, frozen=True, kw_only=True):
    case_id: NonEmpty
    home_municipality_code: str
    planned_release_date: date
    institution: str
    needs: list[str]

    def _validated(self) -> FastReleaseScheduledPayload:
        if not _SCB.match(self.home_municipality_code):
            raise _Refused("payload.home_municipality_code", "municipality code must be 4 digits (SCB)")
        return self


class FastProbationStartedPayload(FastPayload, frozen=True, kw_only=True):
    case_id: NonEmpty
    start_date: date
    end_date: date | None = None
    supervision_unit: str

    def _validated(self) -> FastProbationStartedPayload:
        if self.end_date is not None and self.end_date < self.start_date:
            raise _Refused("payload", "payload.end_date is before payload.start_date")
        return self


class FastProbationEndedPayload(FastPayload, frozen=True, kw_only=True):
    case_id: NonEmpty
    end_date: date
    reason: str


class FastChildConcernReportPayload(FastPayload, frozen=True, kw_only=True):
    case_id: NonEmpty
    reporter_role: str
    concern_kind: str
    description: str


class FastSigReferralPayload(FastPayload, frozen=True, kw_only=True):
    case_id: NonEmpty
    referred_by: str
    reason: str


class FastConsentGivenPayload(FastPayload, frozen=True, kw_only=True):
    consent_id: NonEmpty
    scope: ConsentScope
    signed_by: str
    guardian_consent: bool
    valid_from: date
    valid_until: date | None = None

    def _validated(self) -> FastConsentGivenPayload:
        if self.valid_until is not None and self.valid_until < self.valid_from:
            raise _Refused("payload", "payload.valid_until is before payload.valid_from")
        return self


class FastConsentWithdrawnPayload(FastPayload, frozen=True, kw_only=True):
    consent_id: NonEmpty
    scope: ConsentScope
    withdrawn_at: AwareDatetime
    reason: str | None = None

    def _validated(self) -> FastConsentWithdrawnPayload:
        at = _utc_millis(self.withdrawn_at, "payload.withdrawn_at")
        return self if at is self.withdrawn_at else msgspec.structs.replace(self, withdrawn_at=at)


class FastYouthActivityPayload(FastPayload, frozen=True, kw_only=True):
    activity_id: NonEmpty
    activity_kind: str
    participants: Count
    participants_13_17: Count
    participants_18_24: Count
    leader_hours: NonNegative | None = None
    participants_girls: Count | None = None

    def _validated(self) -> FastYouthActivityPayload:
        _finite(self.leader_hours, "payload.leader_hours")
        if self.participants_13_17 + self.participants_18_24 > self.participants:
            raise _Refused("payload", "payload.participants_13_17 + payload.participants_18_24 exceed "
                                      "payload.participants")  # fmt: skip
        if self.participants_girls is not None and self.participants_girls > self.participants:
            raise _Refused("payload", "payload.participants_girls exceeds payload.participants")
        return self


class FastWatchAreaRegisteredPayload(FastPayload, frozen=True, kw_only=True):
    area_id: NonEmpty
    area_name: str
    households: Count | None = None
    contact_count: Count
    registered_on: date


class FastSafetySurveyResultPayload(FastPayload, frozen=True, kw_only=True):
    survey_id: NonEmpty
    question: str
    share_feeling_unsafe: Share  # ge=0, le=1 also refuses inf and nan
    respondents: Count
    year: SurveyYear


# -- events -----------------------------------------------------------------------------------------------


class FastEvent(_Frozen, frozen=True, kw_only=True):
    """An agency event: :class:`FastEnvelope` plus the event's payload Struct (declared by each subclass).

    ``MODEL`` is the pydantic model it mirrors; ``EVENT_TYPE``, ``SCHEMA_NAME`` and ``SUBJECT_RULE`` are the
    model's.
    """

    MODEL: ClassVar[type[Event]]
    EVENT_TYPE: ClassVar[str]
    SCHEMA_NAME: ClassVar[str]
    SUBJECT_RULE: ClassVar[SubjectRule]
    payload_instances: ClassVar[tuple[tuple[str, type], ...]] = ()
    """The payload's datetime, date and UUID fields and their types (set by :func:`_bind`)."""

    envelope: FastEnvelope
    payload: FastPayload
    """Each subclass narrows it to its own payload Struct."""

    def _event_rules(self) -> None:
        """What the event model's own ``model_validator``s add (age rules)."""

    def _validated(self, raw_payload: Any) -> FastEvent:
        """The checks of ``Event._envelope_agrees`` and of every field and payload validator; normalised."""
        envelope = self.envelope._validated()
        payload = self.payload._validated()
        for name in payload._CONSTRAINED_TEXT:
            value = getattr(payload, name)
            if value is not None and not _utf8(value):
                raise _Refused(f"payload.{name}", _NOT_UTF8)
        event_type = self.EVENT_TYPE
        if envelope.event_type != event_type:
            raise _Refused("envelope.event_type", f"envelope.event_type must be {event_type!r} for this record")
        subject = envelope.subject
        rule = self.SUBJECT_RULE
        if subject is None:
            if rule == "required":
                raise _Refused("envelope.subject", f"envelope.subject is required for {event_type}")
        else:
            if rule == "forbidden":
                raise _Refused("envelope.subject", f"envelope.subject must be null for {event_type}")
            data_class = envelope.data_class
            if data_class is not DataClass.personal_statutory and data_class is not DataClass.personal_consent:
                raise _Refused("envelope.data_class",
                               "envelope.data_class must be personal_consent or personal_statutory with a subject")
        _version_agrees(self, envelope.schema_version, payload, raw_payload)
        event = self
        if envelope is not self.envelope or payload is not self.payload:
            event = msgspec.structs.replace(self, envelope=envelope, payload=payload)
        event._event_rules()
        return event


def _version_agrees(event: FastEvent, version: int, payload: FastPayload, raw_payload: Any) -> None:
    """``Event._version_agrees``: a version of the event type, and no field that version does not have."""
    versions = payload_fields_by_version(event.SCHEMA_NAME)
    if not versions:
        return
    if version not in versions:
        known = ", ".join(str(v) for v in sorted(versions))
        raise _Refused("envelope.schema_version", f"envelope.schema_version {version} is not a version of "
                                                  f"{event.EVENT_TYPE} (versions: {known})")  # fmt: skip
    for name, default in _not_in_version(event, versions, version):
        if name in raw_payload and getattr(payload, name) != default:  # model_fields_set: the keys given
            raise _Refused(f"payload.{name}",
                           f"payload.{name} is not a field of {event.EVENT_TYPE} version {version}")


_NOT_IN_VERSION: dict[tuple[str, int], tuple[dict[int, frozenset[str]], tuple[tuple[str, Any], ...]]] = {}
"""By (schema, version): the ``payload_fields_by_version`` answer it was computed from, and the fields."""


def _not_in_version(event: FastEvent, versions: dict[int, frozenset[str]], version: int
                    ) -> tuple[tuple[str, Any], ...]:  # fmt: skip
    """The payload model's fields (with their defaults) that ``version`` of the schema does not have."""
    key = (event.SCHEMA_NAME, version)
    cached = _NOT_IN_VERSION.get(key)
    if cached is not None and cached[0] is versions:
        return cached[1]
    payload_model = _payload_model(type(event))
    extra = tuple((n, info.default) for n, info in payload_model.model_fields.items() if n not in versions[version])
    _NOT_IN_VERSION[key] = (versions, extra)
    return extra


class FastIncidentNotice(FastEvent, frozen=True, kw_only=True):
    payload: FastIncidentNoticePayload


class FastIncidentReport(FastEvent, frozen=True, kw_only=True):
    payload: FastIncidentReportPayload


class FastMinorSuspected(FastEvent, frozen=True, kw_only=True):
    payload: FastMinorSuspectedPayload

    def _event_rules(self) -> None:
        age = self.envelope.age()
        if age is not None and age >= 18:
            raise _Refused("envelope.subject", "envelope.subject must be under 18 for a notice under LUL 6 §")


class FastChildConcern(FastEvent, frozen=True, kw_only=True):
    payload: FastChildConcernPayload


class FastExtremismConcern(FastEvent, frozen=True, kw_only=True):
    payload: FastExtremismConcernPayload


class FastPolisenCitizenPromiseAction(FastEvent, frozen=True, kw_only=True):
    payload: FastCitizenPromiseActionPayload


class FastReleaseScheduled(FastEvent, frozen=True, kw_only=True):
    payload: FastReleaseScheduledPayload


class FastProbationStarted(FastEvent, frozen=True, kw_only=True):
    payload: FastProbationStartedPayload


class FastProbationEnded(FastEvent, frozen=True, kw_only=True):
    payload: FastProbationEndedPayload


class FastChildConcernReport(FastEvent, frozen=True, kw_only=True):
    payload: FastChildConcernReportPayload


class FastSigReferral(FastEvent, frozen=True, kw_only=True):
    payload: FastSigReferralPayload


class FastConsentGiven(FastEvent, frozen=True, kw_only=True):
    payload: FastConsentGivenPayload

    def _event_rules(self) -> None:
        age = self.envelope.age()
        if age is not None and age < 18 and not self.payload.guardian_consent:
            raise _Refused("payload.guardian_consent",
                           "payload.guardian_consent must be true when the subject is under 18")


class FastConsentWithdrawn(FastEvent, frozen=True, kw_only=True):
    payload: FastConsentWithdrawnPayload


class FastYouthActivity(FastEvent, frozen=True, kw_only=True):
    payload: FastYouthActivityPayload


class FastWatchAreaRegistered(FastEvent, frozen=True, kw_only=True):
    payload: FastWatchAreaRegisteredPayload


class FastKommunCitizenPromiseAction(FastEvent, frozen=True, kw_only=True):
    payload: FastCitizenPromiseActionPayload


class FastSafetySurveyResult(FastEvent, frozen=True, kw_only=True):
    payload: FastSafetySurveyResultPayload


def _payload_model(struct: type[FastEvent]) -> type[BaseModel]:
    annotation = struct.MODEL.model_fields["payload"].annotation
    if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):  # pragma: no cover
        raise TypeError(f"{struct.MODEL.__name__}.payload is not a model")
    return annotation


def _bind() -> dict[str, type[FastEvent]]:
    """Each Struct to its pydantic model (by the model's class name): the registry by Avro schema name."""
    from hub.contract import events

    out: dict[str, type[FastEvent]] = {}
    structs: list[type[FastEvent]] = [
        FastIncidentNotice, FastIncidentReport, FastMinorSuspected, FastChildConcern, FastExtremismConcern,
        FastPolisenCitizenPromiseAction, FastReleaseScheduled, FastProbationStarted, FastProbationEnded,
        FastChildConcernReport, FastSigReferral, FastConsentGiven, FastConsentWithdrawn, FastYouthActivity,
        FastWatchAreaRegistered, FastKommunCitizenPromiseAction, FastSafetySurveyResult,
    ]  # fmt: skip
    for struct in structs:
        model: type[Event] = getattr(events, struct.__name__.removeprefix("Fast"))
        struct.MODEL = model
        struct.EVENT_TYPE = model.EVENT_TYPE
        struct.SCHEMA_NAME = model.SCHEMA_NAME
        struct.SUBJECT_RULE = model.SUBJECT_RULE
        payload_struct = msgspec.structs.fields(struct)[1].type
        payload_fields = msgspec.structs.fields(payload_struct)
        constrained = (f.name for f in payload_fields if "min_length" in _shape(f.type, [])[2])
        payload_struct._CONSTRAINED_TEXT = tuple(constrained)
        struct.payload_instances = _instance_fields(payload_struct)
        out[model.SCHEMA_NAME] = struct
    return out


EVENT_STRUCTS: Final[Mapping[str, type[FastEvent]]] = _bind()
"""The fast Struct of every agency event, by Avro record full name."""
CONSENT_EVENT_TYPES: Final = frozenset({FastConsentGiven.EVENT_TYPE, FastConsentWithdrawn.EVENT_TYPE})
"""The event types the pipeline applies to the consent state (``isinstance(event, ConsentGiven |
ConsentWithdrawn)`` for the pydantic models)."""


def is_consent(event: FastEvent) -> bool:
    """True for ``kommun.consent_given`` and ``kommun.consent_withdrawn``."""
    return type(event) is FastConsentGiven or type(event) is FastConsentWithdrawn


# -- the validator ----------------------------------------------------------------------------------------


class FastValidator:
    """Validates ``(schema name, record)`` pairs of :meth:`Serde.decode_record` into :class:`FastEvent`\\ s.

    Same accept/reject decision, reason code and field values as ``Serde.decode`` followed by the worker's
    intake check (a record that is not an agency event is ``unknown_event_type``). Keeps no state between
    events (but :attr:`overruled`); cheap to make, one per worker is enough.
    """

    def __init__(self, *, confirm_rejections: bool = True) -> None:
        self.confirm_rejections = confirm_rejections
        self.overruled = 0
        """How often pydantic accepted what a check here refused (with ``confirm_rejections``): a bug here,
        worth an alert; the event was accepted, as the contract says."""
        self._structs = EVENT_STRUCTS
        self._convert: Callable[..., Any] = msgspec.convert

    def validate(self, schema_name: str, record: Any) -> FastEvent:
        """The event, or :class:`ContractError` (``invalid_payload``, ``unknown_event_type``)."""
        struct = self._structs.get(schema_name)
        if struct is None:
            raise _not_an_agency_event(schema_name, record)
        try:
            shaped: FastEvent = self._convert(record, struct)
        except msgspec.ValidationError:  # not what fastavro produces: pydantic's lax rules decide
            return _by_pydantic(struct, record)
        try:
            raw_payload = record["payload"]
            as_fastavro_gives = _as_fastavro_gives(struct, record["envelope"], raw_payload)
        except Exception:  # pragma: no cover - a mapping msgspec read but that cannot be read again
            as_fastavro_gives = False
        if not as_fastavro_gives:  # e.g. text that msgspec parsed as a datetime, date or UUID
            return _by_pydantic(struct, record)
        try:
            return shaped._validated(raw_payload)
        except Exception as exc:  # _Refused, or anything a value made a check raise (as serde.validate)
            if self.confirm_rejections:
                event = _by_pydantic(struct, record)  # raises the contract's own ContractError
                self.overruled += 1
                return event
            if isinstance(exc, _Refused):
                raise ContractError("invalid_payload", f"{struct.EVENT_TYPE}: {exc.path}: {exc.message}",
                                    exc.path) from None
            raise ContractError("invalid_payload", f"{struct.EVENT_TYPE}: {type(exc).__name__}") from None

    def decode(self, data: bytes, serde: Serde) -> FastEvent:
        """``serde.decode_record(data)`` then :meth:`validate`."""
        name, record = serde.decode_record(data)
        return self.validate(name, record)


def _as_fastavro_gives(struct: type[FastEvent], envelope: Any, payload: Any) -> bool:
    """Whether the datetime, date and UUID fields hold instances of exactly those types, as fastavro gives them.

    ``msgspec.convert`` also parses them from text (its ``builtin_types`` option would refuse that, but costs
    more than this check); pydantic parses text by other rules, so such input is left to pydantic.
    """
    for name, kind in _ENVELOPE_INSTANCES:
        if type(envelope[name]) is not kind:
            return False
    for field, of in struct.payload_instances:
        value = payload.get(field)
        if value is not None and type(value) is not of:
            return False
    return True


_DEFAULT: Final = FastValidator()


def fast_validate(schema_name: str, record: Any) -> FastEvent:
    """:meth:`FastValidator.validate` with the default validator (pydantic confirms refusals)."""
    return _DEFAULT.validate(schema_name, record)


def _not_an_agency_event(schema_name: str, record: Any) -> ContractError:
    """As ``Serde.decode`` + the pipeline's intake: no model, or a valid hub record (cold path)."""
    model = model_for_schema_name(schema_name)
    if model is None:
        return ContractError("unknown_event_type", f"no model for record {schema_name}")
    _pydantic_validate(model, record)  # an invalid hub record is invalid_payload, as Serde.decode says
    return ContractError("unknown_event_type", f"{model.SCHEMA_NAME} is not an agency event")


def _by_pydantic(struct: type[FastEvent], record: Any) -> FastEvent:
    model = _pydantic_validate(struct.MODEL, record)
    return from_model(cast(Event, model))  # the model of an agency event is an Event


# -- conversions (cold path) ------------------------------------------------------------------------------


def from_model(event: Event) -> FastEvent:
    """The :class:`FastEvent` of a (valid) pydantic event model."""
    struct = EVENT_STRUCTS[type(event).SCHEMA_NAME]
    result: FastEvent = msgspec.convert(event.model_dump(mode="python"), struct)
    return result


def as_dict(obj: Any) -> Any:
    """The Struct as plain data in the shape of the pydantic model's ``model_dump()`` (enums stay members)."""
    if isinstance(obj, msgspec.Struct):
        return {f: as_dict(getattr(obj, f)) for f in obj.__struct_fields__}
    if isinstance(obj, list):
        return [as_dict(v) for v in obj]
    return obj


def to_model(event: FastEvent) -> Event:
    """The pydantic model of a :class:`FastEvent` (for the cold paths that need the model)."""
    return type(event).MODEL.model_validate(as_dict(event))


_REPLICATED_FIELD_VALIDATORS: Final = {
    "_canonical_uuid": "a UUID instance only (text goes to pydantic)",
    "_served": "_served()",
    "normalise": "_personnummer()",
    "_no_number": "datetime/date instances only (anything else goes to pydantic)",
    "_utc_millis": "_utc_millis()",
    "_scb": "_SCB in FastReleaseScheduledPayload._validated",
}
"""The field validators of the models and what replicates them here."""
_REPLICATED_MODEL_VALIDATORS: Final = {
    "Subject": {"_birth_year_agrees"},
    "Event": {"_envelope_agrees"},
    "MinorSuspected": {"_envelope_agrees", "_is_a_minor"},
    "ConsentGiven": {"_envelope_agrees", "_guardian_if_minor"},
    "ProbationStartedPayload": {"_ordered"},
    "ConsentGivenPayload": {"_ordered"},
    "YouthActivityPayload": {"_parts_fit"},
}
"""The ``model_validator``\\ s of the models, by class (every other model has none beyond ``Event``'s)."""


def mirror_problems() -> list[str]:
    """Where the Structs do not mirror the pydantic models: [] when they do. Compared: field names and order,
    required fields and defaults, types, optionality, ``ge``/``le``/``min_length`` bounds, and that every field
    and model validator of the models is one replicated here. The differential test asserts it, so a model
    change cannot go unnoticed."""
    from pydantic_core import PydanticUndefined

    from hub.contract.envelope import Envelope, Subject

    problems: list[str] = []
    aware = (datetime, True)

    def compare(struct: type[msgspec.Struct], model: type[BaseModel], where: str) -> None:
        ours = {f.name: f for f in msgspec.structs.fields(struct)}
        theirs = model.model_fields
        if list(ours) != list(theirs):
            problems.append(f"{where}: fields {list(ours)} != {list(theirs)}")
            return
        for name, info in theirs.items():
            mine, at = ours[name], f"{where}.{name}"
            if (info.default is PydanticUndefined) != (mine.default is msgspec.NODEFAULT) or (
                info.default is not PydanticUndefined and info.default != mine.default
            ):
                problems.append(f"{at}: default {mine.default!r} != {info.default!r}")
            m_type, m_opt, m_meta = _shape(mine.type, [])
            p_type, p_opt, p_meta = _shape(info.annotation, info.metadata)
            if p_type.__name__ == "AwareDatetime":
                p_type = datetime
                if (m_type, m_meta.get("tz")) != aware:
                    problems.append(f"{at}: not a timezone-aware datetime")
            if isinstance(p_type, type) and issubclass(p_type, BaseModel):
                continue  # nested models are compared on their own
            if (m_type, m_opt) != (p_type, p_opt):
                problems.append(f"{at}: type {mine.type!r} != {info.annotation!r}")
            for bound in ("ge", "le", "min_length"):
                if m_meta.get(bound) != p_meta.get(bound):
                    problems.append(f"{at}: {bound} {m_meta.get(bound)!r} != {p_meta.get(bound)!r}")
            if p_type in (int, float, bool) and not p_meta.get("strict"):
                problems.append(f"{at}: a lax {p_type.__name__} (msgspec takes no coercions): not replicated")
            if p_type is float and p_meta.get("allow_inf_nan") is not False:
                problems.append(f"{at}: a float that allows inf/nan: not replicated")
            if "pattern" in p_meta and at != "envelope.event_type":
                problems.append(f"{at}: pattern {p_meta['pattern']!r} not replicated")
            for validator in sorted(p_meta["validators"] - set(_REPLICATED_FIELD_VALIDATORS)):
                problems.append(f"{at}: validator {validator} not replicated")
        validators = set(model.__pydantic_decorators__.model_validators)
        if validators != _REPLICATED_MODEL_VALIDATORS.get(model.__name__, set()) and not (
            issubclass(model, Event) and model.__name__ not in _REPLICATED_MODEL_VALIDATORS
            and validators == _REPLICATED_MODEL_VALIDATORS["Event"]
        ):  # fmt: skip
            problems.append(f"{where}: model validators {sorted(validators)} are not the replicated ones")

    compare(FastEnvelope, Envelope, "envelope")
    compare(FastSubject, Subject, "envelope.subject")
    for name, struct in EVENT_STRUCTS.items():
        payload_struct = msgspec.structs.fields(struct)[1].type
        compare(struct, struct.MODEL, name)
        compare(payload_struct, _payload_model(struct), f"{name}.payload")
        own_rules = bool(_REPLICATED_MODEL_VALIDATORS.get(struct.MODEL.__name__, set()) - {"_envelope_agrees"})
        if (struct._event_rules is not FastEvent._event_rules) != own_rules:
            problems.append(f"{name}: _event_rules here and the model's own validators do not go together")
        payload_rules = bool(_payload_model(struct).__pydantic_decorators__.model_validators)
        if payload_rules and payload_struct._validated is FastPayload._validated:
            problems.append(f"{name}.payload: the model's validators have no _validated here")
    registered = {m.SCHEMA_NAME for m in _agency_models()}
    if registered != set(EVENT_STRUCTS):
        problems.append(f"agency events without a Struct: {sorted(registered - set(EVENT_STRUCTS))}")
    return problems


def _agency_models() -> list[type[Event]]:
    from hub.contract.base import all_models

    return [m for m in all_models().values() if issubclass(m, Event)]


# -- what the flows need of an event, for both kinds --------------------------------------------------------


class SubjectView(Protocol):
    """What the flows read of a subject (:class:`Subject` and :class:`FastSubject` both are one)."""

    @property
    def personnummer(self) -> str: ...
    @property
    def birth_year(self) -> int | None: ...
    def age_on_date(self, on: datetime) -> int: ...


class EnvelopeView(Protocol):
    """What the flows read of an envelope (:class:`Envelope` and :class:`FastEnvelope` both are one)."""

    @property
    def event_id(self) -> UUID: ...
    @property
    def event_type(self) -> str: ...
    @property
    def schema_version(self) -> int: ...
    @property
    def source_agency(self) -> Agency: ...
    @property
    def source_unit(self) -> str: ...
    @property
    def municipality_code(self) -> str: ...
    @property
    def area(self) -> str | None: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def recorded_at(self) -> datetime: ...
    @property
    def subject(self) -> SubjectView | None: ...
    @property
    def data_class(self) -> DataClass: ...
    def age(self) -> int | None: ...


class EventView(Protocol):
    """An agency event as the flows use it (a pydantic :class:`Event` or a :class:`FastEvent`); the payload
    is read with ``getattr(event, "payload")`` (the pydantic base class declares none)."""

    @property
    def envelope(self) -> EnvelopeView: ...


if TYPE_CHECKING:  # mypy proves both kinds fit the views

    def _conforms(a: Subject, b: FastSubject, c: Envelope, d: FastEnvelope, e: Event, f: FastEvent
                  ) -> tuple[SubjectView, SubjectView, EnvelopeView, EnvelopeView, EventView, EventView]:  # fmt: skip
        return a, b, c, d, e, f
