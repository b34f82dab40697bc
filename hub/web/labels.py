"""Swedish names for what the pages show: municipalities, receivers, categories, legal bases, fields.

Anything without a name here is shown by its code, so a new category or field is never hidden.
"""

from __future__ import annotations

from hub.rules.receivers import RECEIVERS

MUNICIPALITIES = {
    "1315": "Hylte", "1380": "Halmstad", "1381": "Laholm", "1382": "Falkenberg", "1383": "Varberg",
    "1384": "Kungsbacka", "13": "Hallands län",
}  # fmt: skip

CATEGORIES = {
    "residential_burglary": "Bostadsinbrott", "other_burglary": "Övriga inbrott", "theft": "Stöld",
    "robbery": "Rån", "assault": "Misshandel", "threat_harassment": "Hot och trakasserier",
    "shooting_explosion": "Skottlossning och sprängning", "weapons": "Vapenbrott", "drugs": "Narkotikabrott",
    "vandalism": "Skadegörelse", "fraud": "Bedrägeri", "sexual_offence": "Sexualbrott",
    "domestic_violence": "Våld i nära relation", "public_order": "Ordningsstörning", "traffic": "Trafik",
    "fire": "Brand", "missing_person": "Försvunnen person", "summary": "Sammanfattning", "other": "Övrigt",
    "release_scheduled": "Frigivningar", "child_concern": "Oro för barn (polisen)",
    "child_concern_report": "Orosanmälningar", "youth_activity": "Ungdomsaktiviteter",
    "safety_survey_result": "Trygghetsmätningar", "honour_related": "Hedersrelaterat",
}  # fmt: skip

EVENT_TYPES = {
    "polisen.incident_notice": "Polisens händelsenotis", "polisen.incident_report": "Polisanmälan (händelse)",
    "polisen.minor_suspected": "Underrättelse: minderårig misstänkt för brott",
    "polisen.child_concern": "Polisens oro för barn", "polisen.extremism_concern": "Oro för våldsbejakande extremism",
    "polisen.citizen_promise_action": "Medborgarlöfte: polisens åtgärd",
    "kriminalvarden.release_scheduled": "Planerad frigivning", "kriminalvarden.probation_started": "Frivård inledd",
    "kriminalvarden.probation_ended": "Frivård avslutad", "kommun.child_concern_report": "Orosanmälan",
    "kommun.sig_referral": "Remiss till sociala insatsgrupper", "kommun.youth_activity": "Ungdomsaktivitet",
    "kommun.watch_area_registered": "Grannsamverkansområde registrerat",
    "kommun.citizen_promise_action": "Medborgarlöfte: kommunens åtgärd",
    "kommun.safety_survey_result": "Resultat av trygghetsmätning", "kommun.consent_given": "Samtycke lämnat",
    "kommun.consent_withdrawn": "Samtycke återkallat",
}  # fmt: skip

BASES = {
    "public": "Offentlig uppgift", "aggregated": "Aggregerat (inga personuppgifter)",
    "anonymised": "Anonymiserat", "consent": "Samtycke", "statute": "Lagstöd",
}  # fmt: skip

FIELDS = {
    "occurred_at": "Inträffade", "area": "Område", "subject": "Person", "municipality_code": "Kommun",
    "case_id": "Ärendenummer", "category": "Kategori", "offence_category": "Brottskategori",
    "offence_description": "Beskrivning av brottet", "guardian_notified": "Vårdnadshavare underrättad",
    "concern_kind": "Typ av oro", "description": "Beskrivning", "reporter_role": "Anmälarens roll",
    "risk_level": "Risknivå", "planned_release_date": "Planerat frigivningsdatum", "institution": "Anstalt",
    "needs": "Behov", "referred_by": "Remitterad av", "reason": "Skäl", "title": "Rubrik",
    "summary": "Sammanfattning", "url": "Länk", "promise_id": "Medborgarlöfte", "action": "Åtgärd",
    "action_date": "Datum för åtgärden", "status": "Status", "area_id": "Områdes-id", "area_name": "Områdesnamn",
    "households": "Hushåll", "contact_count": "Kontaktpersoner", "registered_on": "Registrerat",
    "participants": "Deltagare", "survey_id": "Mätning", "question": "Fråga",
    "share_feeling_unsafe": "Andel otrygga", "respondents": "Svarande", "year": "År",
    "personnummer": "Personnummer", "person_ref": "Pseudonym",
}  # fmt: skip

DEADLETTER_REASONS = {
    "undecodable": "Kunde inte avkodas", "unknown_fingerprint": "Okänt schema (fingeravtryck)",
    "truncated": "Avkortat meddelande", "invalid_payload": "Ogiltigt innehåll",
    "unknown_event_type": "Okänd händelsetyp", "no_matching_rule": "Ingen regel matchar",
    "not_allowed_for_agency": "Myndigheten får inte publicera händelsetypen",
}  # fmt: skip


def municipality(code: str) -> str:
    name = MUNICIPALITIES.get(code)
    return f"{name} ({code})" if name else code


def receiver(receiver_id: str) -> str:
    r = RECEIVERS.get(receiver_id)
    return r.name if r else receiver_id


def category(code: str) -> str:
    return CATEGORIES.get(code, code)


def event_type(code: str) -> str:
    return EVENT_TYPES.get(code, code)


def basis(code: str) -> str:
    """``statute:LUL-6§`` -> ``Lagstöd (LUL-6§)``; ``consent:sig`` -> ``Samtycke (sig)``."""
    kind, _, detail = code.partition(":")
    name = BASES.get(kind, kind)
    return f"{name} ({detail})" if detail else name


def field(path: str) -> str:
    """``payload.case_id`` -> ``Ärendenummer``."""
    return FIELDS.get(path.rsplit(".", 1)[-1], path)


def deadletter_reason(code: str) -> str:
    return DEADLETTER_REASONS.get(code, code)
