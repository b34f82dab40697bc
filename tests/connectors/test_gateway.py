"""The ingest gateway over real HTTP against the real broker: auth, validation, acknowledgement, limits."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer

from connectors.gateway import GATEWAY, create_app, hash_token
from hub.contract.envelope import Envelope, Event, Subject
from hub.contract.events import (
    ExtremismConcern,
    ExtremismConcernPayload,
    YouthActivity,
    YouthActivityPayload,
)
from hub.contract.serde import Serde
from hub.kafka.local import LocalBroker, free_port
from hub.pseudonym import Pseudonymiser
from hub.settings import HubSettings, IngestSettings

pytestmark = pytest.mark.kafka

POLISEN_TOKEN = "polisen-test-token-1"
KOMMUN_TOKEN = "kommun-test-token-1"
EXPIRED_TOKEN = "kommun-test-token-expired"
PNR_FORMS = ("19121212-1212", "191212121212", "121212-1212", "1212121212")
NOW = datetime(2026, 8, 14, 12, 0, tzinfo=UTC)

Client = TestClient[web.Request, web.Application]


def settings_for(bootstrap: str, tmp_path: Path, namespace: str, **ingest: Any) -> HubSettings:
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    future = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    tokens = {
        "polisen": [hash_token(POLISEN_TOKEN)],
        "kommun": [f"{hash_token(KOMMUN_TOKEN)}@{future}", f"{hash_token(EXPIRED_TOKEN)}@{past}"],
    }
    return HubSettings(
        kafka_bootstrap=bootstrap, state_dir=tmp_path, topic_namespace=f"{namespace}.",
        ingest=IngestSettings(tokens=tokens, **ingest),
    )  # fmt: skip


def _envelope(event_type: str, *, subject: str | None = None, agency: str | None = None) -> Envelope:
    return Envelope(
        event_id=uuid.uuid4(), event_type=event_type, schema_version=1,
        source_agency=agency or event_type.split(".")[0],  # type: ignore[arg-type]
        source_unit="test", municipality_code="1381", occurred_at=NOW, recorded_at=NOW,
        subject=Subject(personnummer=subject) if subject else None,
        data_class="personal_statutory" if subject else "aggregated",  # type: ignore[arg-type]
    )  # fmt: skip


def youth(i: int = 0) -> dict[str, Any]:
    event = YouthActivity(
        envelope=_envelope("kommun.youth_activity"),
        payload=YouthActivityPayload(activity_id=f"a-{i}", activity_kind="drop_in", participants=10,
                                     participants_13_17=6, participants_18_24=4),
    )
    return event.model_dump(mode="json")


def minor(pnr: str = "19121212-1212") -> dict[str, Any]:
    """A police event with a subject (an extremism concern: any age)."""
    event = ExtremismConcern(
        envelope=_envelope("polisen.extremism_concern", subject=pnr),
        payload=ExtremismConcernPayload(case_id="5000-K1-26", concern_kind="online",
                                        description="Oro", risk_level="medium"),  # type: ignore[arg-type]
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


async def with_gateway(
    settings: HubSettings,
    body: Callable[[Client, web.Application], Awaitable[None]],
    producer: Any = None,
) -> None:
    app = create_app(settings, producer)
    async with TestServer(app, host="127.0.0.1") as server, TestClient(server) as client:
        async with asyncio.timeout(60):
            while app[GATEWAY].producer is None:  # noqa: ASYNC110 - polling another component
                await asyncio.sleep(0.05)
        await body(client, app)


async def consume(bootstrap: str, topic: str, n: int, timeout_s: float = 30) -> list[tuple[bytes, Event]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    got: list[tuple[bytes, Event]] = []
    serde = Serde()
    try:
        async with asyncio.timeout(timeout_s):
            while len(got) < n:
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    for m in messages:
                        event = serde.decode(m.value)
                        assert isinstance(event, Event)
                        got.append((m.key, event))
        # Nothing more than expected arrives.
        extra = await consumer.getmany(timeout_ms=1000)
        assert not any(extra.values())
    finally:
        await consumer.stop()
    return got


# -- authentication ------------------------------------------------------------------------------------


def test_auth_missing_wrong_expired_and_other_agency(kafka_bootstrap: str, tmp_path: Path,
                                                     unique: Callable[[str], str]) -> None:  # fmt: skip
    settings = settings_for(kafka_bootstrap, tmp_path, unique("gw"))

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
        # The valid token of the right agency is accepted.
        r = await post(client, event, KOMMUN_TOKEN)
        assert r.status == 202, await r.text()

    asyncio.run(with_gateway(settings, body))


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
        got = await consume(kafka_bootstrap, f"{ns}.agency.kommun.events", 1)
        assert got[0][1].envelope.source_agency == "kommun"
        assert str(got[0][1].envelope.event_id) == doc["envelope"]["event_id"]
        assert got[0][0] == b"1381"  # no subject: keyed by municipality
        metrics = await (await client.get("/metrics")).text()
        assert 'hub_ingest_source_agency_corrected_total{agency="kommun"} 1.0' in metrics
        assert 'hub_ingest_events_accepted_total{agency="kommun"} 1.0' in metrics

    asyncio.run(with_gateway(settings, body))


# -- batches and validation ----------------------------------------------------------------------------


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
        got = await consume(kafka_bootstrap, f"{ns}.agency.kommun.events", 5)
        assert sorted(str(e.envelope.event_id) for _, e in got) == sorted(g["envelope"]["event_id"] for g in good)
        # A batch with nothing valid is 422; a single malformed document is 400.
        r = await post(client, ndjson(bad, missing), KOMMUN_TOKEN, ndjson_body=True)
        assert r.status == 422
        r = await post(client, "{broken", KOMMUN_TOKEN)
        assert r.status == 400
        r = await post(client, ndjson(bad, "[1, 2"), KOMMUN_TOKEN, ndjson_body=True)
        assert r.status == 422  # mixed statuses, none accepted

    asyncio.run(with_gateway(settings, body))


def test_subject_events_are_keyed_by_person_key(kafka_bootstrap: str, tmp_path: Path,
                                                unique: Callable[[str], str]) -> None:  # fmt: skip
    ns = unique("gw")
    settings = settings_for(kafka_bootstrap, tmp_path, ns)

    async def body(client: Client, app: web.Application) -> None:
        r = await post(client, json.dumps(minor()), POLISEN_TOKEN)
        assert r.status == 202, await r.text()
        [(key, event)] = await consume(kafka_bootstrap, f"{ns}.agency.polisen.events", 1)
        assert key == Pseudonymiser(settings).person_key("191212121212").encode()
        assert event.envelope.subject is not None
        assert event.envelope.subject.personnummer == "191212121212"

    asyncio.run(with_gateway(settings, body))


def test_limits_body_size_nesting_lines_and_content_type(kafka_bootstrap: str, tmp_path: Path,
                                                         unique: Callable[[str], str]) -> None:  # fmt: skip
    settings = settings_for(kafka_bootstrap, tmp_path, unique("gw"), max_body_bytes=4096, max_lines=3)

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

    asyncio.run(with_gateway(settings, body))


# -- saturation and acknowledgement ------------------------------------------------------------------------


class SlowProducer:
    """Acknowledges every send after ``delay_s`` (only for the saturation test)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.sent = 0

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def flush(self) -> None: ...

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any:
        self.sent += 1
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(self.delay_s, fut.set_result, None)
        return fut


def test_429_when_saturated(tmp_path: Path) -> None:
    settings = settings_for("127.0.0.1:1", tmp_path, "sat", max_in_flight=1)
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

    zero = settings_for("127.0.0.1:1", tmp_path, "sat", max_in_flight=0)

    async def always(client: Client, app: web.Application) -> None:
        r = await post(client, json.dumps(youth()), KOMMUN_TOKEN)
        assert r.status == 429
        assert "Retry-After" in r.headers

    asyncio.run(with_gateway(zero, always, SlowProducer(0.0)))


def test_no_202_when_the_broker_does_not_acknowledge(tmp_path: Path, unique: Callable[[str], str]) -> None:
    broker = LocalBroker(tmp_path / "kafka", port=free_port(), controller_port=free_port(), start_timeout_s=120)
    broker.up()
    try:
        settings = settings_for(broker.bootstrap, tmp_path, unique("gw"), ack_timeout_s=3.0)

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
    settings = settings_for(f"127.0.0.1:{free_port()}", tmp_path, "nr")

    async def body() -> None:
        app = create_app(settings)
        async with TestServer(app, host="127.0.0.1") as server, TestClient(server) as client:
            assert (await client.get("/health")).status == 200
            r = await client.get("/ready")
            assert r.status == 503
            assert (await r.json())["producer_started"] is False
            r = await post(client, json.dumps(youth()), KOMMUN_TOKEN)
            assert r.status == 503

    asyncio.run(body())


# -- personnummer never logged ------------------------------------------------------------------------------


def test_no_personnummer_in_logs_or_responses(kafka_bootstrap: str, tmp_path: Path, unique: Callable[[str], str],
                                              caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    settings = settings_for(kafka_bootstrap, tmp_path, unique("gw"))
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

    asyncio.run(with_gateway(settings, body))
    logged = caplog.text + "\n".join(str(rec.args) for rec in caplog.records)
    assert "rejected" in logged  # the rejections were logged ...
    for form in PNR_FORMS:
        assert form not in logged  # ... without the personnummer
