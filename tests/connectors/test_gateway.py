"""The ingest gateway over real HTTP: auth per source unit, validation, acknowledgement, limits.

Tests marked ``kafka`` run against the real (secured) broker of the session; the others inject a producer
(:class:`RecordingProducer`, :class:`SlowProducer`) and need no broker.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from connectors.gateway import GATEWAY, HEADER_CREDENTIAL, HEADER_SOURCE_UNIT, create_app, hash_token, run
from hub import identity
from hub.contract.envelope import Envelope, Event, Subject
from hub.contract.events import (
    ExtremismConcern,
    ExtremismConcernPayload,
    YouthActivity,
    YouthActivityPayload,
)
from hub.contract.serde import Serde
from hub.kafka import clients
from hub.kafka.admin import TopicSpec, ensure_topics
from hub.kafka.clients import KafkaAccessError
from hub.kafka.local import LocalBroker, free_port
from hub.kafka.pki import Pki
from hub.kafka.provision import apply_acls
from hub.pseudonym import Pseudonymiser
from hub.settings import HubSettings, IngestSettings, KafkaSettings
from hub.topics import Topics
from tests import factories

POLISEN_TOKEN = "polisen-test-token-1"
KOMMUN_TOKEN = "kommun-test-token-1"
"""The token of Laholm (``kommun-1381``)."""
HALMSTAD_TOKEN = "kommun-1380-test-token-1"
"""The token of Halmstad (``kommun-1380``)."""
EXPIRED_TOKEN = "kommun-test-token-expired"
PNR_FORMS = ("19121212-1212", "191212121212", "121212-1212", "1212121212")
NOW = datetime(2026, 8, 14, 12, 0, tzinfo=UTC)

Client = TestClient[web.Request, web.Application]


def settings_for(bootstrap: str, tmp_path: Path, namespace: str, **ingest: Any) -> HubSettings:
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    future = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    tokens = {
        "polisen": [hash_token(POLISEN_TOKEN)],
        "kommun-1381": [f"{hash_token(KOMMUN_TOKEN)}@{future}", f"{hash_token(EXPIRED_TOKEN)}@{past}"],
        "kommun-1380": [hash_token(HALMSTAD_TOKEN)],
    }
    return HubSettings(
        kafka_bootstrap=bootstrap, state_dir=tmp_path, topic_namespace=f"{namespace}.",
        ingest=IngestSettings(tokens=tokens, **ingest),
    )  # fmt: skip


def offline_settings(tmp_path: Path, namespace: str = "off", **ingest: Any) -> HubSettings:
    """Settings for a gateway whose producer is injected: no broker, no Kafka credentials needed."""
    return settings_for("127.0.0.1:1", tmp_path, namespace, **ingest)


def credential_of(unit: str, token: str) -> str:
    """The credential id the gateway records for ``token`` of ``unit``."""
    return f"{unit}:{hash_token(token)[:12]}"


def _envelope(event_type: str, *, subject: str | None = None, agency: str | None = None,
              municipality: str = "1381") -> Envelope:  # fmt: skip
    return Envelope(
        event_id=uuid.uuid4(), event_type=event_type, schema_version=1,
        source_agency=agency or event_type.split(".")[0],
        source_unit="test", municipality_code=municipality, occurred_at=NOW, recorded_at=NOW,
        subject=Subject(personnummer=subject) if subject else None,
        data_class="personal_statutory" if subject else "aggregated",
    )  # fmt: skip


def youth(i: int = 0, municipality: str = "1381") -> dict[str, Any]:
    """A municipality's youth activity (no subject), by default Laholm's (1381)."""
    event = YouthActivity(
        envelope=_envelope("kommun.youth_activity", municipality=municipality),
        payload=YouthActivityPayload(activity_id=f"a-{i}", activity_kind="drop_in", participants=10,
                                     participants_13_17=6, participants_18_24=4),
    )
    return event.model_dump(mode="json")


def minor(pnr: str = "19121212-1212", municipality: str = "1381") -> dict[str, Any]:
    """A police event with a subject (an extremism concern: any age)."""
    event = ExtremismConcern(
        envelope=_envelope("polisen.extremism_concern", subject=pnr, municipality=municipality),
        payload=ExtremismConcernPayload(case_id="5000-K1-26", concern_kind="online",
                                        description="Oro", risk_level="medium"),
    )
    return event.model_dump(mode="json")


def ndjson(*docs: dict[str, Any] | str) -> str:
    return "\n".join(d if isinstance(d, str) else json.dumps(d) for d in docs) + "\n"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def post(client: Client, body: str | bytes, token: str | None, ndjson_body: bool = False) -> ClientResponse:
    headers = bearer(token) if token else {}
    headers["Content-Type"] = "application/x-ndjson" if ndjson_body else "application/json"
    return await client.post("/v1/events", data=body, headers=headers)


async def create_source_topics(settings: HubSettings) -> None:
    """What ``hub topics create`` does for the test's namespace, as ``admin``: the agency topic of every
    source unit (the secured broker creates none by itself) and the namespace's ACLs (``gateway`` may write
    the agency topics)."""
    admin = clients.access_as(settings, identity.ADMIN)
    topics = Topics(settings.topic_namespace).sources(settings.municipality_codes)
    await ensure_topics(admin, [TopicSpec(t, 2) for t in topics])
    await asyncio.to_thread(apply_acls, admin, settings)


async def with_gateway(
    settings: HubSettings,
    body: Callable[[Client, web.Application], Awaitable[None]],
    producer: Any = None,
) -> None:
    """Run ``body`` against a gateway: with ``producer`` injected, else on the real broker (topics made)."""
    if producer is None:
        await create_source_topics(settings)
    app = create_app(settings, producer)
    server = TestServer(app, host="127.0.0.1")
    async with server, TestClient(server) as client:
        async with asyncio.timeout(60):
            while app[GATEWAY].producer is None:  # noqa: ASYNC110 - polling another component
                await asyncio.sleep(0.05)
        await body(client, app)


async def consume_records(settings: HubSettings, topic: str, n: int, timeout_s: float = 30) -> list[Any]:
    """The first ``n`` records of ``topic`` (aiokafka ``ConsumerRecord``), asserting no more arrive."""
    consumer = clients.consumer(clients.access_as(settings, identity.ADMIN), topic, auto_offset_reset="earliest")
    await consumer.start()
    got: list[Any] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(got) < n:
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    got.extend(messages)
        # Nothing more than expected arrives.
        extra = await consumer.getmany(timeout_ms=1000)
        assert not any(extra.values())
    finally:
        await consumer.stop()
    return got


async def consume(settings: HubSettings, topic: str, n: int, timeout_s: float = 30) -> list[tuple[bytes, Event]]:
    """The first ``n`` events of ``topic`` with their keys, asserting no more arrive."""
    serde = Serde()
    got: list[tuple[bytes, Event]] = []
    for record in await consume_records(settings, topic, n, timeout_s):
        event = serde.decode(record.value)
        assert isinstance(event, Event)
        got.append((record.key, event))
    return got


@dataclass
class Sent:
    """One record a :class:`RecordingProducer` was given."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class RecordingProducer:
    """Acknowledges every send at once and keeps what it was sent (the unit tests' broker)."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def flush(self) -> None: ...

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   headers: list[tuple[str, bytes]] | None = None) -> Any:  # fmt: skip
        self.sent.append(Sent(topic, key, value, list(headers or [])))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


# -- authentication and configuration -------------------------------------------------------------------


def test_auth_missing_wrong_expired_and_other_agency(tmp_path: Path) -> None:
    settings = offline_settings(tmp_path)
    producer = RecordingProducer()

    async def body(client: Client, app: web.Application) -> None:
        event = json.dumps(youth())
        r = await post(client, event, None)
        assert r.status == 401
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        r = await post(client, event, "not-a-configured-token")
        assert r.status == 401
        assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
        r = await client.post("/v1/events", data=event,
                              headers={"Authorization": f"Basic {KOMMUN_TOKEN}", "Content-Type": "application/json"})
        assert r.status == 401
        r = await post(client, event, EXPIRED_TOKEN)
        assert r.status == 401
        assert (await r.json())["error"] == "token expired"
        # The police may not publish a municipality's event type.
        r = await post(client, event, POLISEN_TOKEN)
        assert r.status == 403
        out = await r.json()
        assert out["accepted"] == []
        assert out["rejected"][0]["status"] == 403
        assert out["rejected"][0]["errors"][0]["path"] == "envelope.event_type"
        assert out["rejected"][0]["errors"][0]["message"].startswith("credential of polisen may not publish")
        assert producer.sent == []
        # The valid token of the right unit is accepted.
        r = await post(client, event, KOMMUN_TOKEN)
        assert r.status == 202, await r.text()
        assert len(producer.sent) == 1

    asyncio.run(with_gateway(settings, body, producer))


@pytest.mark.parametrize(("key", "message"), [
    ("kommun", "HUB_INGEST__TOKENS key 'kommun': kommun publishes per municipality: use kommun-<code> "
               "(one of kommun-1315, kommun-1380, kommun-1381, kommun-1382, kommun-1383, kommun-1384)"),
    ("kommun-9999", "HUB_INGEST__TOKENS key 'kommun-9999': unknown source unit 'kommun-9999'; units: polisen, "),
    ("region", "HUB_INGEST__TOKENS key 'region': unknown source unit 'region'"),
])  # fmt: skip
def test_a_token_key_that_is_not_a_served_unit_fails_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, message: str
) -> None:
    """Regression (issue #13): tokens were keyed by agency, so one "kommun" token spoke for every municipality."""
    settings = HubSettings(state_dir=tmp_path, ingest=IngestSettings(tokens={key: [hash_token("t")]}))
    with pytest.raises(ValueError, match="HUB_INGEST__TOKENS key") as info:
        create_app(settings, RecordingProducer())
    assert str(info.value).startswith(message)
    # `hub ingest`: one line on stderr and exit code 2, before anything listens or connects.
    assert run(settings, port=0) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"hub ingest: {message}")
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_without_gateway_credentials_the_gateway_does_not_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    no_credentials = KafkaSettings(credentials_dir=tmp_path / "empty")  # no password file for "gateway"
    settings = offline_settings(tmp_path).model_copy(update={"kafka": no_credentials})
    with pytest.raises(KafkaAccessError, match="no Kafka password for principal 'gateway'"):
        create_app(settings)
    assert run(settings, port=0) == 2
    assert "principal 'gateway'" in capsys.readouterr().err


# -- one credential, one source unit ----------------------------------------------------------------------


def test_a_municipality_token_may_not_publish_for_another_municipality(tmp_path: Path) -> None:
    """Regression (issue #13): any municipality's token published events of every municipality."""
    settings = offline_settings(tmp_path)
    producer = RecordingProducer()

    async def body(client: Client, app: web.Application) -> None:
        for code in ("1380", "13"):  # another municipality; the county
            r = await post(client, json.dumps(youth(municipality=code)), KOMMUN_TOKEN)
            assert r.status == 403, await r.text()
            out = await r.json()
            assert out["accepted"] == []
            assert out["rejected"] == [{"line": 1, "status": 403, "errors": [{
                "path": "envelope.municipality_code",
                "message": f"credential of kommun-1381 may not publish for municipality {code}"}]}]  # fmt: skip
        assert producer.sent == []
        # In a batch only that line is refused; the others are published.
        r = await post(client, ndjson(youth(1), youth(2, "1380"), youth(3)), KOMMUN_TOKEN, ndjson_body=True)
        assert r.status == 202, await r.text()
        out = await r.json()
        assert [a["line"] for a in out["accepted"]] == [1, 3]
        assert [(x["line"], x["status"]) for x in out["rejected"]] == [(2, 403)]
        assert [s.topic for s in producer.sent] == ["off.agency.kommun.1381.events"] * 2
        # Halmstad's own token may.
        r = await post(client, json.dumps(youth(4, "1380")), HALMSTAD_TOKEN)
        assert r.status == 202, await r.text()
        assert producer.sent[-1].topic == "off.agency.kommun.1380.events"
        metrics = await (await client.get("/metrics")).text()
        assert 'hub_ingest_events_rejected_total{agency="kommun",status="403",unit="kommun-1381"} 3.0' in metrics

    asyncio.run(with_gateway(settings, body, producer))


@pytest.mark.parametrize("withdraw", [False, True], ids=["consent_given", "consent_withdrawn"])
def test_a_municipality_token_may_not_record_consent_for_another_municipality(tmp_path: Path,
                                                                              withdraw: bool) -> None:  # fmt: skip
    """A consent is state the worker acts on: one from another municipality's credential is refused."""
    settings = offline_settings(tmp_path)
    producer = RecordingProducer()
    foreign = factories.consent("sig", municipality="1380", withdraw=withdraw).model_dump(mode="json")
    own = factories.consent("sig", municipality="1381", withdraw=withdraw).model_dump(mode="json")

    async def body(client: Client, app: web.Application) -> None:
        r = await post(client, json.dumps(foreign), KOMMUN_TOKEN)
        assert r.status == 403, await r.text()
        [rejected] = (await r.json())["rejected"]
        assert rejected["errors"] == [{"path": "envelope.municipality_code",
                                       "message": "credential of kommun-1381 may not publish for municipality 1380"}]
        assert producer.sent == []
        r = await post(client, json.dumps(own), KOMMUN_TOKEN)
        assert r.status == 202, await r.text()
        assert [s.topic for s in producer.sent] == ["off.agency.kommun.1381.events"]

    asyncio.run(with_gateway(settings, body, producer))


def test_each_record_says_which_unit_and_credential_sent_it(tmp_path: Path) -> None:
    settings = offline_settings(tmp_path)
    producer = RecordingProducer()
    doc = youth()
    doc["envelope"]["source_agency"] = "polisen"  # claims to be the police

    async def body(client: Client, app: web.Application) -> None:
        r = await post(client, json.dumps(doc), KOMMUN_TOKEN)
        assert r.status == 202, await r.text()
        r = await post(client, json.dumps(minor(municipality="1384")), POLISEN_TOKEN)  # the police: any municipality
        assert r.status == 202, await r.text()

    asyncio.run(with_gateway(settings, body, producer))
    laholm, police = producer.sent
    assert laholm.topic == "off.agency.kommun.1381.events"
    assert laholm.headers == [(HEADER_SOURCE_UNIT, b"kommun-1381"),
                              (HEADER_CREDENTIAL, credential_of("kommun-1381", KOMMUN_TOKEN).encode())]
    assert laholm.headers[1][1] == f"kommun-1381:{hashlib.sha256(KOMMUN_TOKEN.encode()).hexdigest()[:12]}".encode()
    event = Serde().decode(laholm.value or b"")
    assert isinstance(event, Event)
    assert event.envelope.source_agency == "kommun"
    assert police.topic == "off.agency.polisen.events"
    assert police.headers == [(HEADER_SOURCE_UNIT, b"polisen"),
                              (HEADER_CREDENTIAL, credential_of("polisen", POLISEN_TOKEN).encode())]
    # Neither the token nor its full digest is anywhere in a record.
    for sent, token in ((laholm, KOMMUN_TOKEN), (police, POLISEN_TOKEN)):
        record = b"\0".join([sent.topic.encode(), sent.key or b"", sent.value or b"",
                             *(k.encode() + v for k, v in sent.headers)])  # fmt: skip
        assert token.encode() not in record
        assert hash_token(token).encode() not in record


@pytest.mark.kafka
def test_spoofed_source_agency_is_corrected_and_counted(kafka_bootstrap: str, tmp_path: Path,
                                                         unique: Callable[[str], str]) -> None:  # fmt: skip
    ns = unique("gw")
    settings = settings_for(kafka_bootstrap, tmp_path, ns)
    doc = youth()
    doc["envelope"]["source_agency"] = "polisen"  # claims to be the police

    async def body(client: Client, app: web.Application) -> None:
        r = await post(client, json.dumps(doc), KOMMUN_TOKEN)
        assert r.status == 202, await r.text()
        out = await r.json()
        assert out == {"accepted": [{"line": 1, "event_id": doc["envelope"]["event_id"]}], "rejected": []}
        got = await consume(settings, f"{ns}.agency.kommun.1381.events", 1)
        assert got[0][1].envelope.source_agency == "kommun"
        assert str(got[0][1].envelope.event_id) == doc["envelope"]["event_id"]
        assert got[0][0] == b"1381"  # no subject: keyed by municipality
        metrics = await (await client.get("/metrics")).text()
        assert 'hub_ingest_source_agency_corrected_total{agency="kommun",unit="kommun-1381"} 1.0' in metrics
        assert 'hub_ingest_events_accepted_total{agency="kommun",unit="kommun-1381"} 1.0' in metrics

    asyncio.run(with_gateway(settings, body))


@pytest.mark.kafka
def test_a_municipality_publishes_to_its_own_topic_with_who_sent_it(kafka_bootstrap: str, tmp_path: Path,
                                                                    unique: Callable[[str], str]) -> None:  # fmt: skip
    """On the real broker, as the principal ``gateway``: Laholm's event on Laholm's topic with both headers;
    its event for Halmstad refused and on no topic."""
    ns = unique("gw")
    settings = settings_for(kafka_bootstrap, tmp_path, ns)
    own, foreign = youth(1), youth(2, "1380")

    async def body(client: Client, app: web.Application) -> None:
        r = await post(client, ndjson(own, foreign), KOMMUN_TOKEN, ndjson_body=True)
        assert r.status == 202, await r.text()
        out = await r.json()
        assert [a["event_id"] for a in out["accepted"]] == [own["envelope"]["event_id"]]
        assert [(x["line"], x["status"]) for x in out["rejected"]] == [(2, 403)]
        [record] = await consume_records(settings, f"{ns}.agency.kommun.1381.events", 1)
        assert dict(record.headers) == {HEADER_SOURCE_UNIT: b"kommun-1381",
                                        HEADER_CREDENTIAL: credential_of("kommun-1381", KOMMUN_TOKEN).encode()}
        event = Serde().decode(record.value)
        assert isinstance(event, Event)
        assert str(event.envelope.event_id) == own["envelope"]["event_id"]
        raw = b"\0".join([record.key or b"", record.value, *(v for _, v in record.headers)])
        assert KOMMUN_TOKEN.encode() not in raw
        assert hash_token(KOMMUN_TOKEN).encode() not in raw
        assert await consume_records(settings, f"{ns}.agency.kommun.1380.events", 0) == []

    asyncio.run(with_gateway(settings, body))


# -- batches and validation ----------------------------------------------------------------------------


@pytest.mark.kafka
def test_batch_with_bad_lines_rejects_only_those(kafka_bootstrap: str, tmp_path: Path,
                                                 unique: Callable[[str], str]) -> None:  # fmt: skip
    ns = unique("gw")
    settings = settings_for(kafka_bootstrap, tmp_path, ns)
    good = [youth(i) for i in range(5)]
    bad = youth(99)
    bad["payload"]["participants"] = 1  # fewer than the age groups add up to
    missing = youth(98)
    del missing["payload"]["activity_id"]

    async def body(client: Client, app: web.Application) -> None:
        batch = ndjson(good[0], good[1], bad, "{not json", good[2], "", missing, good[3], good[4])
        r = await post(client, batch, KOMMUN_TOKEN, ndjson_body=True)
        assert r.status == 202, await r.text()
        out = await r.json()
        assert [a["line"] for a in out["accepted"]] == [1, 2, 5, 8, 9]
        assert [a["event_id"] for a in out["accepted"]] == [g["envelope"]["event_id"] for g in good]
        rejected = {x["line"]: x for x in out["rejected"]}
        assert set(rejected) == {3, 4, 7}
        assert rejected[3]["status"] == 422
        assert rejected[3]["errors"][0]["path"] == "payload"
        assert rejected[4]["status"] == 400
        assert rejected[7]["status"] == 422
        assert rejected[7]["errors"][0]["path"] == "payload.activity_id"
        got = await consume(settings, f"{ns}.agency.kommun.1381.events", 5)
        assert sorted(str(e.envelope.event_id) for _, e in got) == sorted(g["envelope"]["event_id"] for g in good)
        # A batch with nothing valid is 422; a single malformed document is 400.
        r = await post(client, ndjson(bad, missing), KOMMUN_TOKEN, ndjson_body=True)
        assert r.status == 422
        r = await post(client, "{broken", KOMMUN_TOKEN)
        assert r.status == 400
        r = await post(client, ndjson(bad, "[1, 2"), KOMMUN_TOKEN, ndjson_body=True)
        assert r.status == 422  # mixed statuses, none accepted

    asyncio.run(with_gateway(settings, body))


@pytest.mark.kafka
def test_subject_events_are_keyed_by_person_key(kafka_bootstrap: str, tmp_path: Path,
                                                unique: Callable[[str], str]) -> None:  # fmt: skip
    ns = unique("gw")
    settings = settings_for(kafka_bootstrap, tmp_path, ns)

    async def body(client: Client, app: web.Application) -> None:
        r = await post(client, json.dumps(minor()), POLISEN_TOKEN)
        assert r.status == 202, await r.text()
        [(key, event)] = await consume(settings, f"{ns}.agency.polisen.events", 1)
        assert key == Pseudonymiser(settings).person_key("191212121212").encode()
        assert event.envelope.subject is not None
        assert event.envelope.subject.personnummer == "191212121212"

    asyncio.run(with_gateway(settings, body))


def test_limits_body_size_nesting_lines_and_content_type(tmp_path: Path) -> None:
    settings = offline_settings(tmp_path, max_body_bytes=4096, max_lines=3)

    async def body(client: Client, app: web.Application) -> None:
        r = await post(client, "x" * 5000, KOMMUN_TOKEN)
        assert r.status == 413
        # Chunked (no Content-Length) oversize body is cut off too.
        async def chunks() -> Any:
            for _ in range(10):
                yield b" " * 1000

        r = await client.post("/v1/events", data=chunks(),
                              headers={**bearer(KOMMUN_TOKEN), "Content-Type": "application/json"})
        assert r.status == 413
        nested = youth()
        nested["payload"]["extra"] = json.loads("[" * 40 + "]" * 40)
        r = await post(client, json.dumps(nested), KOMMUN_TOKEN)
        assert r.status == 400
        assert "nested" in (await r.json())["rejected"][0]["errors"][0]["message"]
        r = await post(client, "[" * 1500 + "]" * 1500, KOMMUN_TOKEN)
        assert r.status == 400
        # Brackets inside strings do not count.
        deep_string = youth()
        deep_string["payload"]["activity_kind"] = "[" * 100
        r = await post(client, json.dumps(deep_string), KOMMUN_TOKEN)
        assert r.status == 202, await r.text()
        r = await post(client, ndjson(youth(1), youth(2), youth(3), youth(4)), KOMMUN_TOKEN, ndjson_body=True)
        assert r.status == 413
        r = await client.post("/v1/events", data="a,b", headers={**bearer(KOMMUN_TOKEN), "Content-Type": "text/csv"})
        assert r.status == 415

    asyncio.run(with_gateway(settings, body, RecordingProducer()))


# -- saturation and acknowledgement ------------------------------------------------------------------------


class SlowProducer:
    """Acknowledges every send after ``delay_s`` (only for the saturation test)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.sent = 0

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def flush(self) -> None: ...

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   headers: list[tuple[str, bytes]] | None = None) -> Any:  # fmt: skip
        self.sent += 1
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(self.delay_s, fut.set_result, None)
        return fut


def test_429_when_saturated(tmp_path: Path) -> None:
    settings = offline_settings(tmp_path, "sat", max_in_flight=1)
    producer = SlowProducer(1.0)

    async def body(client: Client, app: web.Application) -> None:
        first = asyncio.create_task(post(client, json.dumps(youth()), KOMMUN_TOKEN))
        async with asyncio.timeout(5):
            while app[GATEWAY].in_flight == 0:  # noqa: ASYNC110 - polling another component
                await asyncio.sleep(0.01)
        r = await post(client, json.dumps(youth()), KOMMUN_TOKEN)
        assert r.status == 429
        assert r.headers["Retry-After"] == "1"
        assert (await first).status == 202
        r = await post(client, json.dumps(youth()), KOMMUN_TOKEN)
        assert r.status == 202
        assert producer.sent == 2

    asyncio.run(with_gateway(settings, body, producer))

    zero = offline_settings(tmp_path, "sat", max_in_flight=0)

    async def always(client: Client, app: web.Application) -> None:
        r = await post(client, json.dumps(youth()), KOMMUN_TOKEN)
        assert r.status == 429
        assert "Retry-After" in r.headers

    asyncio.run(with_gateway(zero, always, SlowProducer(0.0)))


@pytest.mark.kafka
def test_no_202_when_the_broker_does_not_acknowledge(tmp_path: Path, unique: Callable[[str], str]) -> None:
    broker = LocalBroker(tmp_path / "kafka", port=free_port(), controller_port=free_port(),
                         internal_port=free_port(), start_timeout_s=120)  # fmt: skip
    broker.up()
    try:
        own = KafkaSettings(credentials_dir=broker.pki.users_dir, ca_file=broker.pki.ca_file)  # not the session's
        settings = settings_for(broker.bootstrap, tmp_path, unique("gw"), ack_timeout_s=3.0).model_copy(
            update={"kafka": own})  # fmt: skip

        async def body(client: Client, app: web.Application) -> None:
            r = await post(client, json.dumps(youth()), KOMMUN_TOKEN)
            assert r.status == 202, await r.text()
            assert (await client.get("/ready")).status == 200
            await asyncio.to_thread(broker.down)
            started = time.monotonic()
            r = await post(client, ndjson(youth(1), youth(2)), KOMMUN_TOKEN, ndjson_body=True)
            elapsed = time.monotonic() - started
            assert r.status == 503, await r.text()
            assert "Retry-After" in r.headers
            out = await r.json()
            assert out["accepted"] == []
            assert [(x["line"], x["status"]) for x in out["rejected"]] == [(1, 503), (2, 503)]
            assert 2.5 <= elapsed < 10
            app[GATEWAY]._ready_cache = (0.0, True)
            assert (await client.get("/ready")).status == 503

        asyncio.run(with_gateway(settings, body))
    finally:
        broker.down()


# -- operations endpoints ---------------------------------------------------------------------------------


@pytest.mark.kafka
def test_openapi_health_ready_metrics(kafka_bootstrap: str, tmp_path: Path, unique: Callable[[str], str]) -> None:
    settings = settings_for(kafka_bootstrap, tmp_path, unique("gw"))

    async def body(client: Client, app: web.Application) -> None:
        r = await client.get("/openapi.json")
        assert r.status == 200
        doc = await r.json()
        assert doc["openapi"].startswith("3.1")
        assert set(doc["paths"]) == {"/v1/events", "/health", "/ready", "/metrics", "/openapi.json"}
        assert {"202", "401", "403", "413", "422", "429", "503"} <= set(doc["paths"]["/v1/events"]["post"]["responses"])
        assert (await client.get("/health")).status == 200
        r = await client.get("/ready")
        assert r.status == 200, await r.text()
        assert (await r.json())["ready"] is True
        await post(client, json.dumps(youth()), None)
        text = await (await client.get("/metrics")).text()
        assert 'hub_ingest_requests_total{path="/v1/events",status="401"} 1.0' in text
        assert "hub_ingest_produce_latency_seconds_bucket" in text

    asyncio.run(with_gateway(settings, body))


def test_ready_is_503_before_the_producer_connects(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "security")  # credentials for "gateway", but no broker
    pki.ensure_dirs()
    pki.ensure_ca()
    pki.ensure_password(identity.GATEWAY)
    settings = settings_for(f"127.0.0.1:{free_port()}", tmp_path, "nr").model_copy(
        update={"kafka": KafkaSettings(credentials_dir=pki.users_dir, ca_file=pki.ca_file)})  # fmt: skip

    async def body() -> None:
        app = create_app(settings)
        server = TestServer(app, host="127.0.0.1")
        async with server, TestClient(server) as client:
            assert (await client.get("/health")).status == 200
            r = await client.get("/ready")
            assert r.status == 503
            assert (await r.json())["producer_started"] is False
            r = await post(client, json.dumps(youth()), KOMMUN_TOKEN)
            assert r.status == 503

    asyncio.run(body())


# -- personnummer never logged ------------------------------------------------------------------------------


def test_no_personnummer_in_logs_or_responses(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = offline_settings(tmp_path)
    valid = minor("19121212-1212")
    bad_check = minor("19121212-1212")
    bad_check["envelope"]["subject"]["personnummer"] = "19121212-1213"  # wrong check digit
    extra_key = minor("19121212-1212")
    extra_key["payload"]["191212121212"] = "19121212-1212"  # field name and value are a personnummer
    missing = minor("191212121212")
    del missing["payload"]["case_id"]
    wrong_year = minor("191212121212")
    wrong_year["envelope"]["subject"]["birth_year"] = 1999
    pnr_type = minor("191212121212")
    pnr_type["envelope"]["subject"]["personnummer"] = 191212121212  # a number, not a string
    pnr_event_type = minor()
    pnr_event_type["envelope"]["event_type"] = "polisen.19121212_1212"
    statutory_public = minor()
    statutory_public["envelope"]["data_class"] = "public"
    malformed = '{"envelope": {"subject": {"personnummer": "19121212-1212"}'

    async def body(client: Client, app: web.Application) -> None:
        batch = ndjson(valid, bad_check, extra_key, missing, wrong_year, pnr_type, pnr_event_type,
                       statutory_public, malformed)
        r = await post(client, batch, POLISEN_TOKEN, ndjson_body=True)
        text = await r.text()
        assert r.status == 202, text
        out = json.loads(text)
        assert [a["line"] for a in out["accepted"]] == [1]
        assert [x["line"] for x in out["rejected"]] == [2, 3, 4, 5, 6, 7, 8, 9]
        for form in PNR_FORMS:
            assert form not in text
        # The same invalid events one by one, as JSON.
        for doc in (bad_check, extra_key, missing, wrong_year, pnr_type, statutory_public):
            r = await post(client, json.dumps(doc), POLISEN_TOKEN)
            assert r.status == 422
            single = await r.text()
            for form in PNR_FORMS:
                assert form not in single
        # A municipality's subject event refused for another municipality: no personnummer either.
        foreign = factories.consent("sig", pnr="191212121212", municipality="1380").model_dump(mode="json")
        r = await post(client, json.dumps(foreign), KOMMUN_TOKEN)
        assert r.status == 403
        refused = await r.text()
        for form in PNR_FORMS:
            assert form not in refused

    asyncio.run(with_gateway(settings, body, RecordingProducer()))
    logged = caplog.text + "\n".join(str(rec.args) for rec in caplog.records)
    assert "rejected" in logged  # the rejections were logged ...
    for form in PNR_FORMS:
        assert form not in logged  # ... without the personnummer
    for token in (POLISEN_TOKEN, KOMMUN_TOKEN):
        assert token not in logged
