"""The routing core end to end: a real `hub worker` process on the real broker, events through topics."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.contract.outputs import AuditRecord, Deadletter, Delivery
from hub.deadline import Deadline
from tests import factories as f
from tests.hub.support import REPO, SERDE, HubUnderTest, running_hub

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def hub(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubUnderTest]:
    with running_hub(kafka_bootstrap, tmp_path_factory.mktemp("hub"), "e2e") as h:
        yield h


def delivered(hub: HubUnderTest, topics: list[str], event_ids: set[str], expect: int) -> dict[str, list[Delivery]]:
    def enough(got: dict[str, list[object]]) -> bool:
        n = sum(1 for recs in got.values() for r in recs if isinstance(r, Delivery) and r.event_id in event_ids)
        return n >= expect

    got = hub.read(topics, until=enough)
    return {t: [r for r in recs if isinstance(r, Delivery) and r.event_id in event_ids] for t, recs in got.items()}


def every_delivery_topic(hub: HubUnderTest) -> list[str]:
    from hub.kafka.admin import hub_topics

    return [s.name for s in hub_topics(hub.settings()) if s.name.startswith(hub.namespace + "deliver.")]


def test_rule_families_reach_exactly_the_right_receivers(hub: HubUnderTest) -> None:
    burglary = f.incident_notice("residential_burglary", "1382")
    minor = f.minor_suspected(municipality="1381")
    extremism = f.extremism("1380")
    honour = f.honour_concern("1383")
    hub.publish([burglary, minor, extremism, honour])
    ids = {str(e.envelope.event_id) for e in (burglary, minor, extremism, honour)}
    got = delivered(hub, every_delivery_topic(hub), ids, expect=6)
    t = hub.topics
    non_empty = {topic: [(d.event_id, d.legal_basis) for d in ds] for topic, ds in got.items() if ds}
    assert non_empty == {
        t.deliver("grannsamverkan", "1382"): [(str(burglary.envelope.event_id), "public")],
        t.deliver("socialtjanst", "1381"): [(str(minor.envelope.event_id), "statute:LUL-6§")],
        t.deliver("vbe", "1380"): [(str(extremism.envelope.event_id), "anonymised")],
        t.deliver("socialtjanst", "1380"): [(str(extremism.envelope.event_id), "statute:SoL-14-kap-1§")],
        t.deliver("hrv", "1383"): [(str(honour.envelope.event_id), "anonymised")],
        t.deliver("socialtjanst", "1383"): [(str(honour.envelope.event_id), "statute:SoL-14-kap-1§")],
    }
    (watch,) = got[t.deliver("grannsamverkan", "1382")]
    assert watch.personnummer is None
    assert watch.person_ref is None
    assert set(watch.fields) == {"envelope.occurred_at", "envelope.area", "payload.category", "payload.title",
                                 "payload.summary", "payload.url"}  # fmt: skip
    (social,) = got[t.deliver("socialtjanst", "1381")]
    assert social.personnummer == f.MINOR
    (vbe,) = got[t.deliver("vbe", "1380")]
    assert vbe.personnummer is None
    assert vbe.person_ref is None
    assert set(vbe.fields) == {"envelope.occurred_at", "envelope.municipality_code", "payload.concern_kind",
                               "payload.risk_level"}  # fmt: skip


def audited(hub: HubUnderTest, event_ids: set[str]) -> list[AuditRecord]:
    """Audit records of these events, once every one of them has at least one."""
    t = hub.topics

    def mine(got: dict[str, list[object]]) -> list[AuditRecord]:
        return [r for r in got[t.audit] if isinstance(r, AuditRecord) and r.event_id in event_ids]

    got = hub.read([t.audit], until=lambda g: {r.event_id for r in mine(g)} >= event_ids, quiet_s=0.5)
    return mine(got)


def test_consent_given_delivers_and_withdrawal_refuses_with_audit(hub: HubUnderTest) -> None:
    pnr = f.make_pnr("20050505", "997")  # 21: SIG age
    t = hub.topics

    def publish_and_wait(*events: f.Event) -> None:
        # Consent (kommun topic) and releases (kriminalvarden topic) are ordered by processing, and Kafka
        # orders only within a partition: wait until each step is processed before the next.
        hub.publish(events)
        audited(hub, {str(e.envelope.event_id) for e in events})

    before = f.release(home="1384", pnr=pnr)
    publish_and_wait(before)
    publish_and_wait(f.consent("release_planning", pnr, "1384"), f.consent("sig", pnr, "1384"))
    with_consent = f.release(home="1384", pnr=pnr)
    publish_and_wait(with_consent)
    publish_and_wait(f.consent("sig", pnr, "1384", withdraw=True, occurred_at=f.NOW.replace(hour=13)))
    after = f.release(home="1384", pnr=pnr)
    publish_and_wait(after)

    ids = {str(e.envelope.event_id) for e in (before, with_consent, after)}
    got = delivered(hub, [t.deliver("socialtjanst", "1384"), t.deliver("sig", "1384")], ids, expect=3)
    by_topic = {topic: sorted(d.event_id for d in ds) for topic, ds in got.items()}
    assert by_topic[t.deliver("sig", "1384")] == [str(with_consent.envelope.event_id)]
    assert sorted(by_topic[t.deliver("socialtjanst", "1384")]) == sorted(
        [str(with_consent.envelope.event_id), str(after.envelope.event_id)]
    )
    audit = audited(hub, ids)
    refusals = {(r.event_id, r.receiver): r.reason for r in audit if r.decision == "refused"}
    assert refusals[(str(after.envelope.event_id), "sig")] == "consent for scope sig was withdrawn"
    assert refusals[(str(before.envelope.event_id), "sig")] == "no consent recorded for scope sig"


def test_bad_inputs_are_dead_lettered_while_good_events_around_them_are_delivered(hub: HubUnderTest) -> None:
    t = hub.topics
    good1, good2 = f.minor_suspected(municipality="1315"), f.minor_suspected(municipality="1315")
    valid = f.minor_suspected()
    adult = type(valid).model_construct(envelope=f.envelope("polisen.minor_suspected", subject=f.ADULT),
                                        payload=valid.payload)  # fmt: skip
    unknown_fp = b"\xc3\x01" + b"\x11" * 8 + b"\x00\x00"
    hub.publish([good1])
    hub.publish([b"not avro at all", unknown_fp], agency="polisen")
    hub.publish([SERDE.encode(adult)], agency="polisen")
    hub.publish([SERDE.encode(f.youth_activity())], agency="polisen")  # a kommun event on the police topic
    hub.publish([good2])

    got = hub.read([t.deadletter], until=lambda g: len(g[t.deadletter]) >= 4)[t.deadletter]
    letters = [d for d in got if isinstance(d, Deadletter)]
    reasons = [d.reason.value for d in letters]
    for reason in ("undecodable", "unknown_fingerprint", "invalid_payload", "not_allowed_for_agency"):
        assert reason in reasons
    assert all(f.ADULT not in d.message for d in letters)
    assert any(d.original == b"not avro at all" for d in letters)
    ids = {str(good1.envelope.event_id), str(good2.envelope.event_id)}
    social = t.deliver("socialtjanst", "1315")
    assert len(delivered(hub, [social], ids, expect=2)[social]) == 2


def test_resent_event_is_delivered_once(hub: HubUnderTest) -> None:
    event = f.minor_suspected(municipality="1382")
    hub.publish([event])
    hub.publish([event])
    topic = hub.topics.deliver("socialtjanst", "1382")
    got = delivered(hub, [topic], {str(event.envelope.event_id)}, expect=1)  # then 3 s quiet for a duplicate
    assert len(got[topic]) == 1


def _hub_cli(hub: HubUnderTest, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], cwd=REPO, env=hub.env, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip


def test_audit_verify_passes_then_catches_a_forged_record(hub: HubUnderTest, tmp_path: Path) -> None:
    hub.publish([f.minor_suspected(municipality="1383")])
    t = hub.topics
    records = hub.read([t.audit], until=lambda g: len(g[t.audit]) > 0)[t.audit]
    ok = _hub_cli(hub, "audit", "verify", "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["ok"] is True

    # Someone appends a record claiming a delivery that never happened, with a made-up chain link.
    genuine = records[-1]
    assert isinstance(genuine, AuditRecord)
    forged = genuine.model_copy(update={"seq": genuine.seq + 1, "receiver": "sig", "prev_hash": "f" * 64})
    import asyncio

    from hub.kafka import clients

    async def append() -> None:
        p = clients.producer(hub.admin)
        await p.start()
        try:
            await p.send_and_wait(t.audit, SERDE.encode(forged), partition=genuine.partition)
        finally:
            await p.stop()

    asyncio.run(append())
    broken = _hub_cli(hub, "audit", "verify")
    assert broken.returncode == 1
    assert f"BROKEN at partition {genuine.partition}" in broken.stdout


def test_worker_metrics_expose_the_core_counters(hub: HubUnderTest) -> None:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    hub.publish([f.minor_suspected(municipality="1384")])
    topic = hub.topics.deliver("socialtjanst", "1384")
    hub.read([topic], until=lambda g: len(g[topic]) >= 1, quiet_s=1)
    with urllib.request.urlopen(f"http://127.0.0.1:{hub.web_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    families = list(text_string_to_metric_families(text))
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for fam in families for s in fam.samples}
    assert samples[("hub_deliveries_total", (("receiver", "socialtjanst"),))] >= 1
    assert samples[("hub_aggregated_total", (("receiver", "lagesbild"),))] >= 1
    assert any(name == "hub_events_received_total" for name, _ in samples)
    assert any(name == "hub_processing_seconds_count" and v >= 1 for (name, _), v in samples.items())
    # where a batch's time goes: the hub's own work, its transaction's commit, the step after it
    for phase in ("process", "commit", "after_commit"):
        assert samples[("hub_batch_phase_seconds_count", (("phase", phase),))] >= 1
    assert samples[("hub_batch_messages_sum", ())] >= 1
    names = {fam.name for fam in families}
    assert {"hub_refusals", "hub_deadletters", "hub_duplicates"} <= names
    # consumer lag per assigned source partition: every agency topic, the lägesbild stage's and the reads'
    lag = {(s.labels["topic"], s.labels["partition"]): s.value for fam in families for s in fam.samples
           if s.name == "hub_consumer_lag"}  # fmt: skip
    sources = {*hub.topics.sources(hub.settings().municipality_codes), hub.topics.lagesbild, hub.topics.access}
    assert {t for t, _ in lag} == sources
    assert len(lag) == len(sources) * hub.settings().topic_partitions


def test_consumer_lag_counts_what_the_worker_has_not_processed(hub: HubUnderTest) -> None:
    """A backlog the worker cannot have processed yet shows as lag; it falls to 0 once processed."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    def kommun_lag() -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{hub.web_port}/metrics", timeout=5) as r:
            families = text_string_to_metric_families(r.read().decode())
        kommun = hub.topics.agency("kommun", "1315")
        return sum(s.value for fam in families for s in fam.samples
                   if s.name == "hub_consumer_lag" and s.labels["topic"] == kommun)  # fmt: skip

    hub.publish([f.youth_activity("1315") for _ in range(3000)])
    seen_lag = 0.0
    deadline = Deadline(120, "the kommun backlog to be processed")
    while (lag := kommun_lag()) > 0 or seen_lag == 0:
        seen_lag = max(seen_lag, lag)
        deadline.check()
        time.sleep(0.05)
    assert seen_lag > 0
