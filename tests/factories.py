"""Valid contract events for tests, with only what a test cares about as arguments.

Personnummer are from the test series (born 2008–2012 and 1990s with valid check digits); none is a real
person's number as far as the series documentation goes.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hub.contract import events as ev
from hub.contract.envelope import Envelope, Event, Subject
from hub.contract.personnummer import luhn_ok

NOW = datetime(2026, 8, 14, 12, 0, tzinfo=UTC)


def make_pnr(birth: str, serial: str = "998") -> str:
    """A 12-digit personnummer with a valid check digit: ``birth`` YYYYMMDD, serial 3 digits."""
    for check in range(10):
        candidate = f"{birth}{serial}{check}"
        if luhn_ok(candidate[2:]):
            return candidate
    raise AssertionError("no check digit")  # pragma: no cover


MINOR = make_pnr("20110305")  # 15 years old on NOW
YOUNG = make_pnr("20040620")  # 22
ADULT = make_pnr("19800101")  # 46


def envelope(event_type: str, municipality: str = "1381", *, subject: str | None = None,
             area: str | None = None, occurred_at: datetime = NOW, event_id: str | None = None,
             data_class: str | None = None) -> Envelope:  # fmt: skip
    agency = event_type.split(".")[0]
    return Envelope(
        event_id=uuid.UUID(event_id) if event_id else uuid.uuid4(),
        event_type=event_type,
        schema_version=1,
        source_agency=agency,  # type: ignore[arg-type]
        source_unit=f"test {agency}",
        municipality_code=municipality,
        area=area,
        occurred_at=occurred_at,
        recorded_at=occurred_at + timedelta(minutes=5),
        subject=Subject(personnummer=subject) if subject else None,
        data_class=data_class or ("personal_statutory" if subject else "public"),  # type: ignore[arg-type]
    )


def incident_notice(category: str = "residential_burglary", municipality: str = "1381",
                    area: str | None = "Centrum", **kw: Any) -> ev.IncidentNotice:  # fmt: skip
    return ev.IncidentNotice(
        envelope=envelope("polisen.incident_notice", municipality, area=area, **kw),
        payload=ev.IncidentNoticePayload(
            police_id=600000, police_type="Inbrott", category=category,  # type: ignore[arg-type]
            title="14 augusti 13.05, Inbrott, Laholm", summary="Inbrott i villa.",
            url="https://polisen.se/aktuellt/handelser/x", location_name="Laholm", gps=None,
            published_at=NOW, county_level=False,
        ),
    )  # fmt: skip


def minor_suspected(municipality: str = "1381", pnr: str = MINOR, **kw: Any) -> ev.MinorSuspected:
    return ev.MinorSuspected(
        envelope=envelope("polisen.minor_suspected", municipality, subject=pnr, **kw),
        payload=ev.MinorSuspectedPayload(
            case_id="5000-K123-26", offence_category="theft",  # type: ignore[arg-type]
            offence_description="Snatteri i butik", guardian_notified=True,
        ),
    )


def release(home: str = "1381", pnr: str = YOUNG, **kw: Any) -> ev.ReleaseScheduled:
    return ev.ReleaseScheduled(
        envelope=envelope("kriminalvarden.release_scheduled", home, subject=pnr,
                          data_class="personal_consent", **kw),
        payload=ev.ReleaseScheduledPayload(
            case_id="KV-2026-0042", home_municipality_code=home, planned_release_date=date(2026, 9, 1),
            institution="Anstalten Skogome", needs=["bostad", "arbete"],
        ),
    )  # fmt: skip


def sig_referral(pnr: str, municipality: str = "1381") -> ev.SigReferral:
    """A referral to the social intervention group (SIG): delivered only on the person's SIG consent."""
    return ev.SigReferral(
        envelope=envelope("kommun.sig_referral", municipality, subject=pnr, data_class="personal_consent"),
        payload=ev.SigReferralPayload(case_id=f"SIG-{municipality}-7", referred_by="socialtjänsten",
                                      reason="Risk för fortsatt brottslighet"),
    )  # fmt: skip


def consent(scope: str, pnr: str = YOUNG, municipality: str = "1381", *, withdraw: bool = False,
            occurred_at: datetime = NOW) -> Event:  # fmt: skip
    if withdraw:
        return ev.ConsentWithdrawn(
            envelope=envelope("kommun.consent_withdrawn", municipality, subject=pnr,
                              data_class="personal_consent", occurred_at=occurred_at),
            payload=ev.ConsentWithdrawnPayload(consent_id=f"c-{scope}", scope=scope,  # type: ignore[arg-type]
                                               withdrawn_at=occurred_at, reason=None),
        )  # fmt: skip
    return ev.ConsentGiven(
        envelope=envelope("kommun.consent_given", municipality, subject=pnr, data_class="personal_consent",
                          occurred_at=occurred_at),
        payload=ev.ConsentGivenPayload(
            consent_id=f"c-{scope}", scope=scope, signed_by="den unge",  # type: ignore[arg-type]
            guardian_consent=True, valid_from=date(2026, 1, 1), valid_until=None,
        ),
    )  # fmt: skip


def extremism(municipality: str = "1380", pnr: str = MINOR) -> ev.ExtremismConcern:
    return ev.ExtremismConcern(
        envelope=envelope("polisen.extremism_concern", municipality, subject=pnr),
        payload=ev.ExtremismConcernPayload(case_id="VBE-7", concern_kind="våldsbejakande propaganda",
                                           description="Delar propaganda i skolan", risk_level="medium"),  # type: ignore[arg-type]
    )  # fmt: skip


def honour_concern(municipality: str = "1383", pnr: str = MINOR) -> ev.ChildConcernReport:
    return ev.ChildConcernReport(
        envelope=envelope("kommun.child_concern_report", municipality, subject=pnr),
        payload=ev.ChildConcernReportPayload(case_id="OA-99", reporter_role="skolkurator",
                                             concern_kind="honour_related", description="Kontrollerad av familjen"),  # type: ignore[arg-type]
    )  # fmt: skip


def youth_activity(municipality: str = "1315", participants: int = 25) -> ev.YouthActivity:
    return ev.YouthActivity(
        envelope=envelope("kommun.youth_activity", municipality, data_class="aggregated"),
        payload=ev.YouthActivityPayload(activity_id="fritid-1", activity_kind="nattvandring",
                                        participants=participants, participants_13_17=participants - 5,
                                        participants_18_24=5, leader_hours=4.0),
    )  # fmt: skip


def mixed_events(n: int, seed: int = 7) -> Iterator[Event]:
    """``n`` realistic events of five kinds in turn (minor suspected, incident, youth activity, release,
    extremism concern) over the six municipalities, reproducible by ``seed``: the stream the crash, fault
    and benchmark runs send."""
    rng = random.Random(seed)
    codes = ["1315", "1380", "1381", "1382", "1383", "1384"]
    for i in range(n):
        code = rng.choice(codes)
        kind = i % 5
        if kind == 0:
            yield minor_suspected(municipality=code, pnr=make_pnr(f"2010{rng.randint(1, 12):02d}15", "998"))
        elif kind == 1:
            yield incident_notice(rng.choice(["residential_burglary", "theft", "assault"]), code)
        elif kind == 2:
            yield youth_activity(code, participants=rng.randint(5, 40))
        elif kind == 3:
            yield release(home=code, pnr=make_pnr(f"1990{rng.randint(1, 12):02d}1{rng.randint(0, 9)}", "997"))
        else:
            yield extremism(code, pnr=make_pnr(f"2009{rng.randint(1, 12):02d}2{rng.randint(0, 8)}", "996"))
