"""The agency events: one ``<Name>Payload`` and one ``<Name>`` event model per schema.

Each event model is registered under its event type and Avro record name (:mod:`hub.contract.base`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field, Strict, model_validator

from hub.contract.base import ContractModel
from hub.contract.envelope import ConsentScope, Event, OffenceCategory, SubjectRule
from hub.contract.fields import Count, Int64, IsoDate, ScbCode, StrictFlag, UtcMillis

NonEmpty = Annotated[str, Field(min_length=1)]

# -- polisen ------------------------------------------------------------------------------------------


class IncidentNoticePayload(ContractModel):
    """A notice from the police's public events API."""

    police_id: Int64
    police_type: str
    category: OffenceCategory
    title: str
    summary: str
    url: str
    location_name: str
    gps: str | None = None
    published_at: UtcMillis
    county_level: StrictFlag


class IncidentNotice(Event):
    """``polisen.incident_notice`` (public)."""

    EVENT_TYPE: ClassVar[str] = "polisen.incident_notice"
    SCHEMA_NAME: ClassVar[str] = "se.samverkan.polisen.IncidentNotice"
    SUBJECT_RULE: ClassVar[SubjectRule] = "forbidden"
    payload: IncidentNoticePayload


class IncidentReportPayload(ContractModel):
    """An internal incident report by area."""

    report_id: NonEmpty
    category: OffenceCategory
    area: str
    offence_code: str | None = None
    description: str | None = None


class IncidentReport(Event):
    """``polisen.incident_report``."""

    EVENT_TYPE: ClassVar[str] = "polisen.incident_report"
    SCHEMA_NAME: ClassVar[str] = "se.samverkan.polisen.IncidentReport"
    SUBJECT_RULE: ClassVar[SubjectRule] = "forbidden"
    payload: IncidentReportPayload


class MinorSuspectedPayload(ContractModel):
    """LUL 6 § notice that a minor is suspected of a crime."""

    case_id: NonEmpty
    offence_category: OffenceCategory
    offence_description: str
    guardian_notified: StrictFlag


class MinorSuspected(Event):
    """``polisen.minor_suspected`` (statutory; subject required)."""

    EVENT_TYPE: ClassVar[str] = "polisen.minor_suspected"
    SCHEMA_NAME: ClassVar[str] = "se.samverkan.polisen.MinorSuspected"
    SUBJECT_RULE: ClassVar[SubjectRule] = "required"
    payload: MinorSuspectedPayload

    @model_validator(mode="after")
    def _is_a_minor(self) -> MinorSuspected:
        age = self.envelope.age()
        if age is not None and age >= 18:
            raise ValueError("envelope.subject must be under 18 for a notice under LUL 6 §")
        return self


class ChildConcernKind(StrEnum):
    """``se.samverkan.polisen.ChildConcernKind``."""

    violence_in_home = "violence_in_home"
    neglect = "neglect"
    own_behaviour = "own_behaviour"
    honour_related = "honour_related"
    exploitation = "exploitation"
    other = "other"


class ChildConcernPayload(ContractModel):
    """The police's report of concern for a child."""

    case_id: NonEmpty
    concern_kind: ChildConcernKind
    description: str


class ChildConcern(Event):
    """``polisen.child_concern`` (statutory; subject required)."""

    EVENT_TYPE: ClassVar[str] = "polisen.child_concern"
    SCHEMA_NAME: ClassVar[str] = "se.samverkan.polisen.ChildConcern"
    SUBJECT_RULE: ClassVar[SubjectRule] = "required"
    payload: ChildConcernPayload


class RiskLevel(StrEnum):
    """``se.samverkan.polisen.RiskLevel``."""

    low = "low"
    medium = "medium"
    high = "high"


class ExtremismConcernPayload(ContractModel):
    """The police's concern that a person is at risk of violent extremism."""

    case_id: NonEmpty
    concern_kind: str
    description: str
    risk_level: RiskLevel


class ExtremismConcern(Event):
    """``polisen.extremism_concern`` (subject required)."""

    EVENT_TYPE: ClassVar[str] = "polisen.extremism_concern"
    SCHEMA_NAME: ClassVar[str] = "se.samverkan.polisen.ExtremismConcern"
    SUBJECT_RULE: ClassVar[SubjectRule] = "required"
    payload: ExtremismConcernPayload


class CitizenPromiseActionPayload(ContractModel):
    """An action taken under a citizen promise (medborgarlöfte); same shape for police and municipality."""

    promise_id: NonEmpty
    action: str
    category: OffenceCategory
    action_date: IsoDate
    status: str


class PolisenCitizenPromiseAction(Event):
    """``polisen.citizen_promise_action``."""

    EVENT_TYPE: ClassVar[str] = "polisen.citizen_promise_action"
    SCHEMA_NAME: ClassVar[str] = "se.samverkan.polisen.CitizenPromiseAction"
    SUBJECT_RULE: ClassVar[SubjectRule] = "forbidden"
    payload: CitizenPromiseActionPayload


# -- kriminalvarden -----------------------------------------------------------------------------------


class ReleaseScheduledPayload(ContractModel):
    """A scheduled release from prison."""

    case_id: NonEmpty
    home_municipality_code: ScbCode
    planned_release_date: IsoDate
    institution: str
    needs: list[str]


class ReleaseScheduled(Event):
    """``kriminalvarden.release_scheduled`` (subject required)."""

    EVENT_TYPE: ClassVar[str] = "kriminalvarden.release_scheduled"
    SCHEMA_NAME: ClassVar[str] = "se.samverkan.kriminalvarden.ReleaseScheduled"
    SUBJECT_RULE: ClassVar[SubjectRule] = "required"
    payload: ReleaseScheduledPayload


class ProbationStartedPayload(ContractModel):
    """Probation supervision started."""

    case_id: NonEmpty
    start_date: IsoDate
    end_date: IsoDate | None = None
    supervision_unit: str

    @model_validator(mode="after")
    def _ordered(self) -> ProbationStartedPayload:
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError("payload.end_date is before payload.start_date")
        return self


class ProbationStarted(Event):
    """``kriminalvarden.probation_started`` (subject required)."""

    EVENT_TYPE: ClassVar[str] = "kriminalvarden.probation_started"
    SCHEMA_NAME: ClassVar[str] = "se.samverkan.kriminalvarden.ProbationStarted"
    SUBJECT_RULE: ClassVar[SubjectRule] = "required"
    payload: ProbationStartedPayload


class ProbationEndedPayload(ContractModel):
    """Probation supervision ended."""

    case_id: NonEmpty
    end_date: IsoDate
    reason: str


class ProbationEnded(Event):
    """``kriminalvarden.probation_ended`` (subject required)."""

    EVENT_TYPE: ClassVar[str] = "kriminalvarden.probation_ended"
    SCHEMA_NAME: ClassVar[str] = "se.samverkan.kriminalvarden.ProbationEnded"
    SUBJECT_RULE: ClassVar[SubjectRule] = "required"
    payload: ProbationEndedPayload


# -- kommun -------------------------------------------------------------------------------------------


class ChildConcernReportPayload(ContractModel):
    """A report of concern for a child (orosanmälan)."""

    case_id: NonEmpty
    reporter_role: str
    concern_kind: str
    description: str


class ChildConcernReport(Event):
    """``kommun.child_concern_report`` (subject required)."""

    EVENT_TYPE: ClassVar[str] = "kommun.child_concern_report"
    SCHEMA_NAME: ClassVar[str] = "se.samverkan.kommun.ChildConcernReport"
    SUBJECT_RULE: ClassVar[SubjectRule] = "required"
    payload: ChildConcernReportPayload


class SigReferralPayload(ContractModel):
    """A referral to Sociala insatsgrupper."""

    case_id: NonEmpty
    referred_by: str
    reason: str


class SigReferral(Event):
    """``kommun.sig_referral`` (subject required)."""

    EVENT_TYPE: ClassVar[str] = "kommun.sig_referral"
    SCHEMA_NAME: ClassVar[str] = "se.samverkan.kommun.SigReferral"
    SUBJECT_RULE: ClassVar[SubjectRule] = "required"
    payload: SigReferralPayload


class ConsentGivenPayload(ContractModel):
    """Written consent to information sharing."""

    consent_id: NonEmpty
    scope: ConsentScope
    signed_by: str
    guardian_consent: StrictFlag
    valid_from: IsoDate
    valid_until: IsoDate | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ConsentGivenPayload:
        if self.valid_until is not None and self.valid_until < self.valid_from:
            raise ValueError("payload.valid_until is before payload.valid_from")
        return self


class ConsentGiven(Event):
    """``kommun.consent_given`` (subject required; a guardian's consent too when under 18)."""

    EVENT_TYPE: ClassVar[str] = "kommun.consent_given"
    SCHEMA_NAME: ClassVar[str] = "se.samverkan.kommun.ConsentGiven"
    SUBJECT_RULE: ClassVar[SubjectRule] = "required"
    payload: ConsentGivenPayload

    @model_validator(mode="after")
    def _guardian_if_minor(self) -> ConsentGiven:
        age = self.envelope.age()
        if age is not None and age < 18 and not self.payload.guardian_consent:
            raise ValueError("payload.guardian_consent must be true when the subject is under 18")
        return self


class ConsentWithdrawnPayload(ContractModel):
    """Withdrawal of a consent."""

    consent_id: NonEmpty
    scope: ConsentScope
    withdrawn_at: UtcMillis
    reason: str | None = None


class ConsentWithdrawn(Event):
    """``kommun.consent_withdrawn`` (subject required)."""

    EVENT_TYPE: ClassVar[str] = "kommun.consent_withdrawn"
    SCHEMA_NAME: ClassVar[str] = "se.samverkan.kommun.ConsentWithdrawn"
    SUBJECT_RULE: ClassVar[SubjectRule] = "required"
    payload: ConsentWithdrawnPayload


class YouthActivityPayload(ContractModel):
    """A youth activity held (v2 added ``participants_girls``)."""

    activity_id: NonEmpty
    activity_kind: str
    participants: Count
    participants_13_17: Count
    participants_18_24: Count
    leader_hours: Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)] | None = None
    participants_girls: Count | None = None

    @model_validator(mode="after")
    def _parts_fit(self) -> YouthActivityPayload:
        if self.participants_13_17 + self.participants_18_24 > self.participants:
            raise ValueError("payload.participants_13_17 + payload.participants_18_24 exceed payload.participants")
        if self.participants_girls is not None and self.participants_girls > self.participants:
            raise ValueError("payload.participants_girls exceeds payload.participants")
        return self


class YouthActivity(Event):
    """``kommun.youth_activity`` (aggregate)."""

    EVENT_TYPE: ClassVar[str] = "kommun.youth_activity"
    SCHEMA_NAME: ClassVar[str] = "se.samverkan.kommun.YouthActivity"
    SUBJECT_RULE: ClassVar[SubjectRule] = "forbidden"
    payload: YouthActivityPayload


class WatchAreaRegisteredPayload(ContractModel):
    """A registered neighbourhood-watch area."""

    area_id: NonEmpty
    area_name: str
    households: Count | None = None
    contact_count: Count
    registered_on: IsoDate


class WatchAreaRegistered(Event):
    """``kommun.watch_area_registered``."""

    EVENT_TYPE: ClassVar[str] = "kommun.watch_area_registered"
    SCHEMA_NAME: ClassVar[str] = "se.samverkan.kommun.WatchAreaRegistered"
    SUBJECT_RULE: ClassVar[SubjectRule] = "forbidden"
    payload: WatchAreaRegisteredPayload


class KommunCitizenPromiseAction(Event):
    """``kommun.citizen_promise_action``."""

    EVENT_TYPE: ClassVar[str] = "kommun.citizen_promise_action"
    SCHEMA_NAME: ClassVar[str] = "se.samverkan.kommun.CitizenPromiseAction"
    SUBJECT_RULE: ClassVar[SubjectRule] = "forbidden"
    payload: CitizenPromiseActionPayload


class SafetySurveyResultPayload(ContractModel):
    """One question's result from a safety survey."""

    survey_id: NonEmpty
    question: str
    share_feeling_unsafe: Annotated[float, Strict(), Field(ge=0, le=1, allow_inf_nan=False)]
    respondents: Count
    year: Annotated[int, Strict(), Field(ge=1900, le=2200)]


class SafetySurveyResult(Event):
    """``kommun.safety_survey_result`` (aggregate)."""

    EVENT_TYPE: ClassVar[str] = "kommun.safety_survey_result"
    SCHEMA_NAME: ClassVar[str] = "se.samverkan.kommun.SafetySurveyResult"
    SUBJECT_RULE: ClassVar[SubjectRule] = "forbidden"
    payload: SafetySurveyResultPayload
