"""Human reads in the trail and the register extract, without Kafka: ``hub.access`` records become chained
``accessed`` audit records; the extract lists one person's decisions and the reads of their deliveries."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from hub.audit import AuditChain, record_hash, verify
from hub.contract.outputs import AccessRecord, AuditRecord, Deadletter
from hub.contract.serde import Serde
from hub.flows.routing import Router
from hub.pipeline import Message, Pipeline, Result
from hub.pseudonym import Pseudonymiser
from hub.register_extract import as_html, as_json, as_table, build
from hub.rules.model import load_rules
from hub.settings import HubSettings
from tests import factories as f
from tests.hub.test_pipeline import audits, feed

SERDE = Serde()
ACCESS = "hub.access"


@pytest.fixture
def pipeline() -> Pipeline:
    return Pipeline(Router(load_rules()), SERDE, Pseudonymiser(HubSettings()), seen={}, consents={},
                    chain=AuditChain())  # fmt: skip


def access(**kw: object) -> AccessRecord:
    data: dict[str, object] = {
        "access_id": "a-1", "accessor": "web:laholm-sig", "channel": "web.inbox", "target": "deliver.sig.1381",
        "receiver": "sig", "municipality_code": "1381", "phase": "view", "items": 1, "event_ids": [],
        "revealed": False, "at": f.NOW,
    }  # fmt: skip
    data.update(kw)
    return AccessRecord.model_validate(data)


def read_in(p: Pipeline, value: bytes | None, offset: int = 0) -> Result:
    return p.record_access(Message(ACCESS, 0, offset, None, value), now=f.NOW + timedelta(minutes=1))



def test_a_read_becomes_an_accessed_record_in_the_chain_and_editing_it_breaks_the_chain(pipeline: Pipeline) -> None:
    delivered = audits(feed(pipeline, f.minor_suspected(municipality="1381")))
    event_id = delivered[0].event_id
    got = audits(read_in(pipeline, SERDE.encode(access(accessor="web:Åsa", event_ids=[event_id], items=3))))
    assert len(got) == 1
    rec = got[0]
    assert (rec.decision.value, rec.accessor, rec.channel, rec.target, rec.receiver, rec.municipality_code) == \
        ("accessed", "web:Åsa", "web.inbox", "deliver.sig.1381", "sig", "1381")  # fmt: skip
    assert (rec.items, rec.event_ids, rec.revealed, rec.phase) == (3, [event_id], False, "view")
    assert rec.prev_hash == delivered[-1].hash  # the same chain as the decisions
    trail = [(0, i, r) for i, r in enumerate([*delivered, rec])]
    assert verify(trail).ok
    # Who read, and what, are hashed: a rewritten reader or a dropped event id is a break at that record.
    for change in ({"accessor": "web:someone-else"}, {"event_ids": []}, {"items": 0}, {"revealed": True}):
        forged = rec.model_copy(update=change)
        result = verify([*trail[:-1], (0, len(delivered), forged)])
        assert result.first_break is not None, change
        assert result.first_break.offset == len(delivered), change
    assert record_hash(rec) == rec.hash


def test_what_is_not_an_access_record_on_hub_access_is_a_dead_letter(pipeline: Pipeline) -> None:
    cases = {b"garbage": "undecodable", None: "undecodable",
             SERDE.encode(f.minor_suspected()): "unknown_event_type"}  # fmt: skip
    for offset, (value, reason) in enumerate(cases.items()):
        result = read_in(pipeline, value, offset)
        assert audits(result) == []
        dead = [SERDE.decode(o.value) for o in result.outputs if o.topic == "hub.deadletter"]
        assert len(dead) == 1
        assert isinstance(dead[0], Deadletter)
        assert (dead[0].reason.value, dead[0].source_topic, dead[0].source_offset) == (reason, ACCESS, offset)


def test_decisions_about_a_person_carry_the_person_key_not_the_number(pipeline: Pipeline) -> None:
    records = audits(feed(pipeline, f.minor_suspected(municipality="1381")))
    key = Pseudonymiser(HubSettings()).person_key(f.MINOR)
    assert {r.subject for r in records} == {key}
    leaked = any(f.MINOR in r.model_dump_json() for r in records)
    assert not leaked
    assert {(r.receiver, r.municipality_code, r.event_type) for r in records} == {
        ("socialtjanst", "1381", "polisen.minor_suspected"), ("ungdom", "1381", "polisen.minor_suspected"),
        ("lagesbild", "1381", "polisen.minor_suspected")}  # fmt: skip
    assert all(r.subject is None for r in audits(feed(pipeline, f.incident_notice())))


def test_the_register_extract_lists_exactly_one_persons_decisions_and_the_reads_of_their_deliveries(
    pipeline: Pipeline,
) -> None:
    person, other = f.MINOR, f.make_pnr("20060222", "992")
    consent = f.consent("sig", person, "1381")
    laholm, halmstad = f.sig_referral(person, "1381"), f.sig_referral(person, "1380")  # no consent in Halmstad
    minor, others = f.minor_suspected(municipality="1381", pnr=person), f.sig_referral(other, "1381")
    trail: list[AuditRecord] = []
    for e in (consent, laholm, halmstad, minor, f.consent("sig", other, "1381"), others):
        trail += audits(feed(pipeline, e))
    eid = {name: str(e.envelope.event_id) for name, e in
           {"consent": consent, "laholm": laholm, "halmstad": halmstad, "minor": minor, "others": others}.items()}
    reads = [
        access(access_id="r1", event_ids=[eid["laholm"], eid["others"]]),  # Laholm SIG's inbox: read
        access(access_id="r2", channel="cli.tail", accessor="socialtjanst-1381", target="deliver.socialtjanst.1381",
               receiver="socialtjanst", event_ids=[eid["minor"]], revealed=True, phase="progress"),
        access(access_id="r3", receiver="socialtjanst", event_ids=[eid["laholm"]]),  # not a delivery it had
        access(access_id="r4", channel="web.operator", accessor="web:drift", target="hub.deadletter", receiver=None,
               municipality_code=None),
    ]  # fmt: skip
    for i, r in enumerate(reads):
        trail += audits(read_in(pipeline, SERDE.encode(r), i))

    key = Pseudonymiser(HubSettings()).person_key(person)
    x = build(trail, key)
    got = {(e.event_id, d.decision, d.receiver, d.municipality_code, d.legal_basis)
           for e in x.events for d in e.decisions}  # fmt: skip
    assert got == {
        (eid["consent"], "recorded", "consent", "1381", "sig"),
        (eid["laholm"], "delivered", "sig", "1381", "consent:sig"),
        (eid["halmstad"], "refused", "sig", "1380", "consent:sig"),
        (eid["minor"], "delivered", "socialtjanst", "1381", "statute:LUL-6§"),
        (eid["minor"], "aggregated", "ungdom", "1381", "aggregated"),
        (eid["minor"], "aggregated", "lagesbild", "1381", "aggregated"),
    }
    by_event = {e.event_id: e for e in x.events}
    assert [d.reason for d in by_event[eid["halmstad"]].decisions] == ["no consent recorded for scope sig"]
    assert "payload.reason" in by_event[eid["laholm"]].decisions[0].fields_disclosed
    assert [(r.accessor, r.channel, r.revealed) for r in by_event[eid["laholm"]].reads] == \
        [("web:laholm-sig", "web.inbox", False)]  # fmt: skip
    assert [(r.accessor, r.channel, r.revealed) for r in by_event[eid["minor"]].reads] == \
        [("socialtjanst-1381", "cli.tail", True)]  # fmt: skip
    assert by_event[eid["halmstad"]].reads == []
    assert x.counts == {"events": 4, "delivered": 2, "refused": 1, "aggregated": 2, "recorded": 1, "reads": 2,
                        "earlier_extracts": 0}  # fmt: skip

    data = as_json(x)
    text = json.dumps(data) + as_table(x) + as_html(x)
    leaked = person in text or other in text
    assert not leaked
    assert eid["others"] not in text
    assert {e["event_id"] for e in data["events"]} == {eid["consent"], eid["laholm"], eid["halmstad"], eid["minor"]}
    # An extract is itself a recorded read: the next extract for the person lists it.
    trail += audits(read_in(pipeline, SERDE.encode(access(
        access_id="x1", channel="cli.audit_subject", accessor="registrar", target="hub.audit", receiver=None,
        municipality_code=None, subject=key, items=4)), 9))  # fmt: skip
    assert [(r.accessor, r.channel) for r in build(trail, key).extracts] == [("registrar", "cli.audit_subject")]
    assert build(trail, Pseudonymiser(HubSettings()).person_key(other)).extracts == []
