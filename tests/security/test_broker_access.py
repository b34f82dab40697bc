"""The trust boundary, attacked as someone on the same network would — with no credentials, with a wrong
password, and above all with the valid credentials of the *wrong* principal — against the real, secured
session broker and a running worker.

Each attack first shows its positive control (the right principal can), so a refusal is the ACLs' doing and
not a broken setup.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from pydantic import SecretStr

from hub import identity
from hub.contract.envelope import Event
from hub.contract.outputs import AccessRecord, AuditRecord, Deadletter, Delivery
from hub.kafka import clients
from hub.kafka.clients import KafkaAccess
from tests import factories as f
from tests.hub.support import REPO, SERDE, HubUnderTest, running_hub
from tests.kafka_env import security_env

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def hub(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubUnderTest]:
    with running_hub(kafka_bootstrap, tmp_path_factory.mktemp("trust"), "trust") as h:
        yield h


def _produce(kafka: KafkaAccess, topic: str, value: bytes) -> None:
    async def go() -> None:
        producer = clients.producer(kafka, acks="all", request_timeout_ms=10000)
        try:
            await producer.start()
            await producer.send_and_wait(topic, value)
        finally:
            await producer.stop()

    asyncio.run(go())


def _read_one(kafka: KafkaAccess, topic: str) -> int:
    """How many records ``topic`` holds, read from the start as ``kafka``'s principal."""

    async def go() -> int:
        consumer = clients.consumer(kafka, topic, auto_offset_reset="earliest", request_timeout_ms=10000)
        try:
            await consumer.start()
            batch = await consumer.getmany(timeout_ms=3000)
            return sum(len(v) for v in batch.values())
        finally:
            await consumer.stop()

    return asyncio.run(go())


def _list_topics(kafka: KafkaAccess) -> list[str]:
    async def go() -> list[str]:
        admin = clients.admin(kafka, request_timeout_ms=5000)
        try:
            await admin.start()
            return list(await admin.list_topics())
        finally:
            await admin.close()

    return asyncio.run(go())


def _event_value(event: Event) -> bytes:
    return SERDE.encode(event)


# -- no credentials, wrong password ----------------------------------------------------------------------------


def test_a_plaintext_or_anonymous_client_cannot_list_read_or_write(hub: HubUnderTest) -> None:
    assert hub.topics.agency("polisen") in _list_topics(hub.admin)  # control: the super user sees the topic
    plaintext = KafkaAccess(hub.bootstrap, security_protocol="PLAINTEXT")
    tls_no_sasl = KafkaAccess(hub.bootstrap, security_protocol="SSL", ca_file=hub.admin.ca_file)
    for anonymous in (plaintext, tls_no_sasl):
        with pytest.raises(KafkaError):
            _list_topics(anonymous)
        with pytest.raises(KafkaError):
            _produce(anonymous, hub.topics.agency("polisen"), _event_value(f.incident_notice()))
        with pytest.raises(KafkaError):
            _read_one(anonymous, hub.topics.deliver("socialtjanst", "1381"))


def test_a_wrong_password_fails_authentication(hub: HubUnderTest) -> None:
    police = hub.kafka_as("polisen")
    _produce(police, hub.topics.agency("polisen"), _event_value(f.incident_notice()))  # control
    wrong = police.as_principal("polisen", SecretStr("not-the-password-of-polisen-0123456789"))
    with pytest.raises(KafkaError):
        _produce(wrong, hub.topics.agency("polisen"), _event_value(f.incident_notice()))


def test_the_broker_certificate_is_checked_against_the_clusters_own_ca(hub: HubUnderTest, tmp_path: Path) -> None:
    """A client that trusts only the system CAs does not talk to the broker (no silent trust of any cert)."""
    system_ca_only = replace(hub.kafka_as("polisen"), ca_file=None)
    with pytest.raises((KafkaError, OSError)):
        _produce(system_ca_only, hub.topics.agency("polisen"), _event_value(f.incident_notice()))


# -- valid credentials of the wrong principal ------------------------------------------------------------------


def test_a_municipality_writes_only_its_own_topic(hub: HubUnderTest) -> None:
    laholm = hub.kafka_as("kommun-1381")
    _produce(laholm, hub.topics.agency("kommun", "1381"), _event_value(f.youth_activity("1381")))  # control
    with pytest.raises(TopicAuthorizationFailedError):
        _produce(laholm, hub.topics.agency("polisen"), _event_value(f.minor_suspected("1381")))
    with pytest.raises(TopicAuthorizationFailedError):
        _produce(laholm, hub.topics.agency("kommun", "1380"), _event_value(f.youth_activity("1380")))


def test_nobody_but_the_worker_writes_deliveries_or_the_audit_trail(hub: HubUnderTest) -> None:
    forged = _event_value(f.incident_notice())
    for principal in ("kommun-1381", "socialtjanst-1381", identity.GATEWAY, identity.OPERATOR, identity.WEB):
        for topic in (hub.topics.deliver("socialtjanst", "1381"), hub.topics.audit, hub.topics.consent):
            with pytest.raises(TopicAuthorizationFailedError):
                _produce(hub.kafka_as(principal), topic, forged)


def test_only_the_tools_that_show_data_to_people_write_their_reads_and_no_agency_does(hub: HubUnderTest) -> None:
    """Reads reach the trail through ``hub.access``; the tools' principals may write it (the control), a source
    unit, the gateway or a connector may not — nor may a reader write the trail itself (above)."""
    read = SERDE.encode(AccessRecord(access_id=str(uuid.uuid4()), accessor="sig-1381", channel="cli.tail",
                                     target=hub.topics.deliver("sig", "1381"), phase="view", items=0, event_ids=[],
                                     revealed=False, at=f.NOW))  # fmt: skip
    for principal in ("sig-1381", identity.WEB, identity.REGISTRAR):
        _produce(hub.kafka_as(principal), hub.topics.access, read)
    for principal in ("kommun-1381", "polisen", identity.GATEWAY, identity.SIMULATOR, "connector-polisen-feed",
                      identity.OPERATOR):  # operators stay read-only
        with pytest.raises(TopicAuthorizationFailedError):
            _produce(hub.kafka_as(principal), hub.topics.access, read)
    # The registrar reads the trail for an extract, and no inbox.
    assert _read_one(hub.kafka_as(identity.REGISTRAR), hub.topics.audit) >= 0
    with pytest.raises(TopicAuthorizationFailedError):
        _read_one(hub.kafka_as(identity.REGISTRAR), hub.topics.deliver("sig", "1381"))


def test_a_forged_police_notice_from_a_municipality_is_never_delivered(hub: HubUnderTest) -> None:
    """kommun-1381 cannot write the police topic (above); what it can write — a police event type on its own
    topic — is refused by the worker as a dead letter, never delivered as LUL 6 §."""
    forged = f.minor_suspected("1381")
    _produce(hub.kafka_as("kommun-1381"), hub.topics.agency("kommun", "1381"), _event_value(forged))
    genuine = f.minor_suspected("1381")
    hub.publish([genuine])  # a real police notice after it, to know the worker got that far
    event_ids = {str(forged.envelope.event_id), str(genuine.envelope.event_id)}
    t = hub.topics

    def both_seen(got: dict[str, list[object]]) -> bool:
        dead = {r.event_id for r in got[t.deadletter] if isinstance(r, Deadletter)}
        audited = {r.event_id for r in got[t.audit] if isinstance(r, AuditRecord)}
        return str(forged.envelope.event_id) in dead and str(genuine.envelope.event_id) in audited

    got = hub.read([t.deadletter, t.audit, t.deliver("socialtjanst", "1381")], until=both_seen)
    dead = [r for r in got[t.deadletter] if isinstance(r, Deadletter) and r.event_id in event_ids]
    assert [(d.event_id, d.reason.value) for d in dead] == [(str(forged.envelope.event_id), "not_allowed_for_agency")]
    delivered = {r.event_id for r in got[t.deliver("socialtjanst", "1381")] if isinstance(r, Delivery)}
    assert str(genuine.envelope.event_id) in delivered
    assert str(forged.envelope.event_id) not in delivered
    audited = [r for r in got[t.audit] if isinstance(r, AuditRecord) and r.event_id == str(genuine.envelope.event_id)]
    assert {r.source_unit for r in audited} == {"polisen"}


def test_an_event_about_another_municipality_is_refused_even_on_the_senders_own_topic(hub: HubUnderTest) -> None:
    about_halmstad = f.youth_activity("1380")
    _produce(hub.kafka_as("kommun-1381"), hub.topics.agency("kommun", "1381"), _event_value(about_halmstad))
    t = hub.topics
    eid = str(about_halmstad.envelope.event_id)
    got = hub.read([t.deadletter], until=lambda g: any(getattr(r, "event_id", None) == eid for r in g[t.deadletter]),
                   quiet_s=0.2)
    [dead] = [r for r in got[t.deadletter] if isinstance(r, Deadletter) and r.event_id == eid]
    assert dead.reason.value == "not_allowed_for_agency"
    assert "1380" in dead.message
    assert "kommun-1381" in dead.message


def test_a_receiver_reads_only_its_own_inbox(hub: HubUnderTest) -> None:
    hub.publish([f.minor_suspected("1380")])
    t = hub.topics
    hub.read([t.deliver("socialtjanst", "1380")], until=lambda g: len(g[t.deliver("socialtjanst", "1380")]) > 0,
             quiet_s=0)
    assert _read_one(hub.kafka_as("socialtjanst-1380"), t.deliver("socialtjanst", "1380")) > 0  # control
    for principal in ("socialtjanst-1381", "sig-1380", "lagesbild-13", identity.GATEWAY, "kommun-1380"):
        with pytest.raises(TopicAuthorizationFailedError):
            _read_one(hub.kafka_as(principal), t.deliver("socialtjanst", "1380"))


def _password(principal: str) -> str:
    return (Path(os.environ["HUB_KAFKA__CREDENTIALS_DIR"]) / f"{principal}.password").read_text().strip()


def test_hub_tail_as_laholm_cannot_read_halmstad(hub: HubUnderTest) -> None:
    """A Laholm coordinator with Laholm's own credentials: the broker refuses Halmstad's inbox, and the CLI
    says so in one line, without a traceback."""
    hub.publish([f.minor_suspected("1380")])
    env = {**hub.env, **security_env(), "HUB_KAFKA__USERNAME": "socialtjanst-1381",
           "HUB_KAFKA__PASSWORD": _password("socialtjanst-1381"), "HUB_KAFKA__CREDENTIALS_DIR": "/nonexistent"}
    own = subprocess.run([sys.executable, "-m", "hub.cli", "tail", "socialtjanst", "--from-beginning", "--json",
                          "--timeout", "3"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
                         check=False)  # fmt: skip
    assert own.returncode == 0, own.stderr  # its own inbox (the municipality comes from the principal)
    other = subprocess.run([sys.executable, "-m", "hub.cli", "tail", "socialtjanst", "-m", "1380", "--from-beginning",
                            "--reveal", "--timeout", "10"], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=120, check=False)  # fmt: skip
    assert other.returncode == 1
    assert other.stdout == ""
    errors = [line for line in other.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: the broker refused access: this principal may not read or write that topic "
                      "(TopicAuthorizationFailedError)"], other.stderr
    assert "Traceback" not in other.stderr


def _tail_as(hub: HubUnderTest, principal: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**hub.env, **security_env(), "HUB_KAFKA__USERNAME": principal, "HUB_KAFKA__PASSWORD": _password(principal),
           "HUB_KAFKA__CREDENTIALS_DIR": "/nonexistent"}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "hub.cli", "tail", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip


def test_hub_tail_reveals_identities_only_to_the_inbox_coordinators_of_a_receiver_that_may_have_them(
    hub: HubUnderTest,
) -> None:
    """Valid credentials of the wrong principal: ``admin`` (whom the broker lets read everything), the
    lägesbild reader and the youth receiver are refused ``--reveal`` before anything is read; socialtjänst's
    own Halmstad principal sees the personnummer unmasked, and masked without ``--reveal``."""
    event = f.minor_suspected("1380")
    hub.publish([event])
    t = hub.topics
    inbox = t.deliver("socialtjanst", "1380")
    hub.read([inbox], until=lambda g: len(g[inbox]) > 0, quiet_s=0)
    pnr = event.envelope.subject.personnummer
    for principal, args, why in [
        ("admin", ("socialtjanst", "-m", "1380"), "admin is not a receiver inbox's principal"),
        ("lagesbild-13", ("socialtjanst", "-m", "1380"), "lagesbild never receives identities"),
        ("ungdom-1380", ("ungdom", "-m", "1380"), "ungdom never receives identities"),
        ("sig-1380", ("socialtjanst", "-m", "1380"), "sig-1380 may see identities in sig's inbox only"),
    ]:
        refused = _tail_as(hub, principal, *args, "--from-beginning", "--json", "--reveal", "--timeout", "3")
        assert refused.returncode == 2, (principal, refused.stderr)
        assert refused.stdout == ""
        assert refused.stderr.startswith("error: --reveal is refused: "), refused.stderr
        assert why in refused.stderr, refused.stderr
        leaked = pnr in refused.stderr  # a bool: a failing assertion must not print the number itself
        assert not leaked
    shown = _tail_as(hub, "socialtjanst-1380", "socialtjanst", "--from-beginning", "--json", "--reveal",
                     "--timeout", "3")  # fmt: skip
    masked = _tail_as(hub, "socialtjanst-1380", "socialtjanst", "--from-beginning", "--json", "--timeout", "3")
    assert shown.returncode == 0, shown.stderr
    assert masked.returncode == 0, masked.stderr
    unmasked = pnr in [json.loads(line)["personnummer"] for line in shown.stdout.splitlines()]
    assert unmasked, "the inbox's own socialtjänst principal is shown the personnummer with --reveal"
    hidden = pnr not in masked.stdout and f"{pnr[:8]}-****" in masked.stdout
    assert hidden, "masked without --reveal"


# -- deduplication per sender, consent per municipality --------------------------------------------------------


def test_an_event_id_used_first_by_another_unit_does_not_suppress_the_police_notice(hub: HubUnderTest) -> None:
    stolen_id = str(uuid.uuid4())  # a police feed id is predictable: here the kommun client "guesses" it first
    squatter = f.youth_activity("1381")
    squatter = squatter.model_copy(update={"envelope": squatter.envelope.model_copy(
        update={"event_id": uuid.UUID(stolen_id)})})
    hub.publish([squatter], agency="kommun-1381")
    notice = f.minor_suspected("1381", event_id=stolen_id)
    hub.publish([notice])
    t = hub.topics

    def both(got: dict[str, list[object]]) -> bool:
        units = {r.source_unit for r in got[t.audit] if isinstance(r, AuditRecord) and r.event_id == stolen_id}
        return {"kommun-1381", "polisen"} <= units

    got = hub.read([t.audit, t.deliver("socialtjanst", "1381")], until=both)
    delivered = [r for r in got[t.deliver("socialtjanst", "1381")] if isinstance(r, Delivery)
                 and r.event_id == stolen_id]  # fmt: skip
    assert len(delivered) == 1
    assert delivered[0].legal_basis == "statute:LUL-6§"
    code, report = hub.reconcile_cli()
    assert code == 0, report
    assert report["lost"] == 0, report


def _publish_and_wait(hub: HubUnderTest, event: Event, agency: str | None = None) -> None:
    """Publish and wait for its audit record: consent and releases are on different topics, ordered only by
    processing."""
    hub.publish([event], agency=agency)
    eid, t = str(event.envelope.event_id), hub.topics
    hub.read([t.audit], until=lambda g: any(getattr(r, "event_id", None) == eid for r in g[t.audit]), quiet_s=0)


def test_another_municipalitys_consent_does_not_release_a_delivery(hub: HubUnderTest) -> None:
    pnr = f.make_pnr("20040620", "917")
    t = hub.topics
    _publish_and_wait(hub, f.consent("sig", pnr, "1380"), agency="kommun-1380")  # Halmstad's consent ...
    released = f.release(home="1381", pnr=pnr)  # ... for a release home to Laholm
    hub.publish([released])
    eid = str(released.envelope.event_id)

    def decided(got: dict[str, list[object]]) -> bool:
        return any(isinstance(r, AuditRecord) and r.event_id == eid and r.receiver == "sig" for r in got[t.audit])

    got = hub.read([t.audit, t.deliver("sig", "1381")], until=decided, quiet_s=1.0)
    [sig] = [r for r in got[t.audit] if isinstance(r, AuditRecord) and r.event_id == eid and r.receiver == "sig"]
    assert sig.decision.value == "refused"
    assert not [r for r in got[t.deliver("sig", "1381")] if isinstance(r, Delivery) and r.event_id == eid]

    _publish_and_wait(hub, f.consent("sig", pnr, "1381"), agency="kommun-1381")  # control: Laholm's own releases
    again = f.release(home="1381", pnr=pnr)
    hub.publish([again])
    eid2 = str(again.envelope.event_id)
    got = hub.read([t.deliver("sig", "1381")], until=lambda g: any(getattr(r, "event_id", None) == eid2
                                                                    for r in g[t.deliver("sig", "1381")]))
    assert any(isinstance(r, Delivery) and r.event_id == eid2 for r in got[t.deliver("sig", "1381")])
