"""One valid example event per agency event type: what the OpenAPI document shows an agency's developer.

Every example is for Laholm (``1381``), so a police, prison-service or Laholm (``kommun-1381``) token gets
202 for its own agency's examples; :func:`example_events` checks each one against its contract model
(as the gateway validates), so an example the contract no longer accepts fails at once.
Personnummer are made like the tests' (a fixed birth date and serial with a computed check digit);
their event ids are fixed (UUID 5 of the event type), so the document is the same on every run.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from functools import cache
from typing import Any

from hub.contract.base import all_models
from hub.contract.envelope import Event, payload_fields_by_version
from hub.contract.fields import municipality_codes
from hub.contract.personnummer import luhn_ok

MUNICIPALITY = "1381"
"""Laholm: the municipality of every example."""
OCCURRED_AT = "2026-08-14T12:00:00.000Z"
RECORDED_AT = "2026-08-14T12:05:00.000Z"
_NAMESPACE = uuid.UUID("6f1c1a52-2f5e-4a39-9d7e-6a1d3b0c5e11")


def _personnummer(birth: str, serial: str = "998") -> str:
    """``YYYYMMDD-NNNN`` with a valid check digit for ``birth`` and the three-digit ``serial``."""
    check = next(d for d in range(10) if luhn_ok(f"{birth[2:]}{serial}{d}"))
    return f"{birth}-{serial}{check}"


MINOR = _personnummer("20110305")
"""15 years old on the examples' date."""
YOUNG = _personnummer("20040620")
"""22 years old on the examples' date."""
ADULT = _personnummer("19800101")

_SOURCE_UNITS = {"polisen": "Polisområde Halland", "kriminalvarden": "Frivården Halmstad",
                 "kommun": "Socialtjänsten Laholm"}

# Per event type: (subject or None, data class, payload).
_EXAMPLES: dict[str, tuple[str | None, str, dict[str, Any]]] = {
    "polisen.incident_notice": (None, "public", {
        "police_id": 600123, "police_type": "Inbrott", "category": "residential_burglary",
        "title": "14 augusti 13.05, Inbrott, Laholm", "summary": "Inbrott i villa i centrala Laholm.",
        "url": "https://polisen.se/aktuellt/handelser/2026/augusti/14/14-augusti-13.05-inbrott-laholm/",
        "location_name": "Laholm", "gps": "56.512425,13.043768", "published_at": "2026-08-14T11:30:00.000Z",
        "county_level": False,
    }),
    "polisen.incident_report": (None, "aggregated", {
        "report_id": "5000-K12345-26", "category": "vandalism", "area": "Centrum", "offence_code": "1201",
        "description": "Skadegörelse på skola",
    }),
    "polisen.minor_suspected": (MINOR, "personal_statutory", {
        "case_id": "5000-K1-26", "offence_category": "theft", "offence_description": "Snatteri i butik",
        "guardian_notified": True,
    }),
    "polisen.child_concern": (MINOR, "personal_statutory", {
        "case_id": "5000-K2-26", "concern_kind": "violence_in_home", "description": "Oro efter larm till hemmet",
    }),
    "polisen.extremism_concern": (YOUNG, "personal_statutory", {
        "case_id": "5000-K3-26", "concern_kind": "online", "description": "Oro efter inlägg i forum",
        "risk_level": "medium",
    }),
    "polisen.citizen_promise_action": (None, "public", {
        "promise_id": "mbl-1381-2026", "action": "Trygghetsvandring i centrum", "category": "public_order",
        "action_date": "2026-08-13", "status": "done",
    }),
    "kriminalvarden.release_scheduled": (ADULT, "personal_consent", {
        "case_id": "KV-2026-0042", "home_municipality_code": MUNICIPALITY, "planned_release_date": "2026-09-30",
        "institution": "Anstalten Skogome", "needs": ["bostad", "sysselsättning"],
    }),
    "kriminalvarden.probation_started": (ADULT, "personal_statutory", {
        "case_id": "KV-2026-0043", "start_date": "2026-08-14", "end_date": "2027-08-13",
        "supervision_unit": "Frivården Halmstad",
    }),
    "kriminalvarden.probation_ended": (ADULT, "personal_statutory", {
        "case_id": "KV-2025-0101", "end_date": "2026-08-14", "reason": "completed",
    }),
    "kommun.child_concern_report": (MINOR, "personal_statutory", {
        "case_id": "SOC-1381-2026-17", "reporter_role": "school", "concern_kind": "neglect",
        "description": "Eleven har ofta ingen matsäck och är trött",
    }),
    "kommun.sig_referral": (YOUNG, "personal_consent", {
        "case_id": "SIG-1381-2026-3", "referred_by": "socialtjanst", "reason": "Risk för kriminalitet",
    }),
    "kommun.consent_given": (YOUNG, "personal_consent", {
        "consent_id": "SAM-1381-2026-9", "scope": "sig", "signed_by": "subject", "guardian_consent": False,
        "valid_from": "2026-08-14", "valid_until": "2027-08-14",
    }),
    "kommun.consent_withdrawn": (YOUNG, "personal_consent", {
        "consent_id": "SAM-1381-2026-9", "scope": "sig", "withdrawn_at": "2026-08-14T12:00:00.000Z",
        "reason": "Vill inte längre delta",
    }),
    "kommun.youth_activity": (None, "aggregated", {
        "activity_id": "fritid-1381-2026-33", "activity_kind": "drop_in", "participants": 24,
        "participants_13_17": 15, "participants_18_24": 9, "leader_hours": 6.5, "participants_girls": 11,
    }),
    "kommun.watch_area_registered": (None, "public", {
        "area_id": "gs-1381-12", "area_name": "Mellbystrand norra", "households": 120, "contact_count": 3,
        "registered_on": "2026-08-01",
    }),
    "kommun.citizen_promise_action": (None, "public", {
        "promise_id": "mbl-1381-2026", "action": "Fler vuxna på stan fredagskvällar", "category": "public_order",
        "action_date": "2026-08-14", "status": "in_progress",
    }),
    "kommun.safety_survey_result": (None, "aggregated", {
        "survey_id": "tu-1381-2025", "question": "Känner du dig otrygg ute sent på kvällen?",
        "share_feeling_unsafe": 0.23, "respondents": 812, "year": 2025,
    }),
}


def agency_event_models() -> dict[str, type[Event]]:
    """Every agency event type the gateway takes (not the hub's own outputs), sorted by event type."""
    models = {t: m for t, m in all_models().items() if issubclass(m, Event)}
    return {t: models[t] for t in sorted(models)}


def example_event(event_type: str, schema_version: int = 1) -> dict[str, Any]:
    """The example of one event type as JSON data; KeyError for a type without one."""
    subject, data_class, payload = _EXAMPLES[event_type]
    envelope: dict[str, Any] = {
        "event_id": str(uuid.uuid5(_NAMESPACE, event_type)),
        "event_type": event_type,
        "schema_version": schema_version,
        "source_agency": event_type.split(".", 1)[0],
        "source_unit": _SOURCE_UNITS[event_type.split(".", 1)[0]],
        "municipality_code": MUNICIPALITY,
        "area": "Centrum",
        "occurred_at": OCCURRED_AT,
        "recorded_at": RECORDED_AT,
        "subject": {"personnummer": subject} if subject is not None else None,
        "data_class": data_class,
    }
    return {"envelope": envelope, "payload": dict(payload)}


def schema_versions(model: type[Event]) -> list[int]:
    """The schema versions of an event type (its ``schemas/<agency>/<event>/vN.avsc``), oldest first."""
    return sorted(payload_fields_by_version(model.SCHEMA_NAME)) or [1]


@cache
def example_events() -> dict[str, dict[str, Any]]:
    """The example of every agency event type in its latest schema version, each checked against its
    model. ValueError when a type has no example, or its example is not valid under the contract."""
    out: dict[str, dict[str, Any]] = {}
    for event_type, model in agency_event_models().items():
        if event_type not in _EXAMPLES:
            raise ValueError(f"no example event for {event_type} (connectors/gateway/examples.py)")
        doc = example_event(event_type, schema_versions(model)[-1])
        _check(model, doc, [MUNICIPALITY])
        out[event_type] = doc
    return out


def _check(model: type[Event], doc: dict[str, Any], codes: Iterable[str]) -> None:
    with municipality_codes(codes):
        try:
            model.model_validate(json.loads(json.dumps(doc)))
        except ValueError as exc:
            raise ValueError(f"the example of {model.EVENT_TYPE} is not valid: {exc}") from None
