"""The ingest gateway at its edges (issue #20): linear-time parsing, the generated OpenAPI document, quiet
malformed HTTP, fair in-flight limits per source unit, token lifetime and credentials reloaded from a file.

None of these needs a broker: the producer is injected (:class:`tests.connectors.test_gateway.RecordingProducer`,
:class:`~tests.connectors.test_gateway.SlowProducer`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from connectors.gateway import GATEWAY, Authenticator, create_app, hash_token, new_token
from connectors.gateway.auth import DEFAULT_TOKEN_LIFETIME
from connectors.gateway.examples import agency_event_models, example_events
from connectors.gateway.openapi import NDJSON_MEDIA_TYPES, default_document, is_up_to_date, write_openapi
from connectors.gateway.parsing import MAX_CONTAINERS, nesting_depth, split_body
from hub.settings import HubSettings, IngestSettings
from tests.connectors.test_gateway import (
    KOMMUN_TOKEN,
    POLISEN_TOKEN,
    Client,
    RecordingProducer,
    SlowProducer,
    bearer,
    minor,
    ndjson,
    offline_settings,
    post,
    youth,
)

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024


async def run_gateway(settings: HubSettings, body: Callable[[Client, web.Application], Awaitable[None]],
                      producer: Any, **options: Any) -> None:  # fmt: skip
    """Run ``body`` against a gateway with ``producer`` injected, on a real local socket."""
    app = create_app(settings, producer, **options)
    async with TestServer(app, host="127.0.0.1") as server, TestClient(server) as client:
        await body(client, app)


# -- linear-time parsing -----------------------------------------------------------------------------------


def pathological(size: int) -> bytes:
    """An unterminated run of ``\\"`` inside a string, ``size`` bytes long: what made the old regex quadratic."""
    return (b'{"envelope": {"event_type": "' + b'\\"' * size)[:size]


def median_seconds(work: Callable[[], object], runs: int = 3, repeat: int = 5) -> float:
    """Median over ``runs`` of the time ``repeat`` calls of ``work`` take, per call."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        for _ in range(repeat):
            work()
        samples.append((time.perf_counter() - started) / repeat)
    return statistics.median(samples)


def test_nesting_depth_is_exact_and_ignores_strings_and_escapes() -> None:
    cases = {b"1": 0, b"[]": 1, b"{}": 1, b'{"a": [1, {"b": []}]}': 4, b'["[[[", "]]"]': 1,
             b'["\\\\", [["\\"]]"]]]': 3, b'{"a": "\\\\\\"[[[["}': 1, b"[[], [[]], []]": 3}  # fmt: skip
    for raw, depth in cases.items():
        assert nesting_depth(raw, 32) == depth, raw
        assert json.loads(raw) is not None or depth == 0
    assert nesting_depth(b"[" * 40 + b"]" * 40, 32) == 33  # counting stops above the limit


def test_the_pathological_body_is_parsed_in_linear_time() -> None:
    """An unterminated run of ``\\"`` at the 1 MiB limit: one parse well under a second (about 10–20 ms here),
    and 8× the size costs < 20× the time (a quadratic parse costs 64×)."""
    small, large = pathological(MIB // 8), pathological(MIB)
    for body in (small, large):
        [line] = split_body(body, False, max_lines=5000, max_depth=32)
        assert line.status == 400
        assert line.error is not None
        assert line.error.startswith("malformed JSON: Unterminated string")
    t_small = median_seconds(lambda: split_body(small, False, max_lines=5000, max_depth=32))
    t_large = median_seconds(lambda: split_body(large, False, max_lines=5000, max_depth=32))
    print(f"parse: 128 KiB {t_small * 1000:.2f} ms, 1 MiB {t_large * 1000:.2f} ms, ratio {t_large / t_small:.1f}")
    assert t_large < 1.0
    assert t_large < 20 * t_small


@pytest.mark.parametrize("body", [
    b"[" * MIB,
    b"[" + b"[]," * (MIB // 3 - 1) + b"[]]",
    b"[" + b'"",' * (MIB // 3 - 1) + b'""]',
    b"[" + b"1," * (MIB // 2 - 1) + b"1]",
    (b"[" * 31 + b"[]" + b"]" * 31 + b",") * (MIB // 65),
], ids=["open-brackets", "many-arrays", "many-strings", "many-numbers", "deep-32-repeated"])  # fmt: skip
def test_no_megabyte_stalls_the_parser(body: bytes) -> None:
    """Other bodies built to be slow: each megabyte answered well within a second (arrays and objects are
    capped at MAX_CONTAINERS per event, so the parser never allocates hundreds of thousands of lists)."""
    seconds = median_seconds(lambda: split_body(body, False, max_lines=5000, max_depth=32), repeat=1)
    print(f"{len(body)} bytes: {seconds * 1000:.1f} ms")
    assert seconds < 1.0


def test_an_event_with_too_many_arrays_is_400() -> None:
    many = youth()
    many["payload"]["extra"] = [[] for _ in range(MAX_CONTAINERS)]
    [line] = split_body(json.dumps(many).encode(), False, max_lines=10, max_depth=32)
    assert line.status == 400
    assert line.error == f"more than {MAX_CONTAINERS} arrays and objects in one event"


def test_the_gateway_answers_the_pathological_body_at_once_and_health_stays_responsive(tmp_path: Path) -> None:
    """Over HTTP with a valid token, four 1 MiB pathological bodies at once: each answered 400 within a second
    (median of 3, and 8× the size < 20× the time), while ``/health`` answers every poll within half a second."""
    settings = offline_settings(tmp_path)

    async def body(client: Client, app: web.Application) -> None:
        async def timed_post(raw: bytes) -> float:
            started = time.perf_counter()
            r = await client.post("/v1/events", data=raw,
                                  headers={**bearer(KOMMUN_TOKEN), "Content-Type": "application/json"})
            elapsed = time.perf_counter() - started
            assert r.status == 400, await r.text()
            assert (await r.json())["rejected"][0]["errors"][0]["message"].startswith("malformed JSON")
            return elapsed

        health: list[float] = []
        stop = asyncio.Event()

        async def poll_health() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                assert (await client.get("/health")).status == 200
                health.append(time.perf_counter() - started)
                await asyncio.sleep(0.02)

        poller = asyncio.create_task(poll_health())
        await asyncio.sleep(0.05)
        concurrent = await asyncio.gather(*(timed_post(pathological(MIB)) for _ in range(4)))
        small = statistics.median([await timed_post(pathological(MIB // 8)) for _ in range(3)])
        large = statistics.median([await timed_post(pathological(MIB)) for _ in range(3)])
        stop.set()
        await poller
        print(f"HTTP: 128 KiB {small * 1000:.1f} ms, 1 MiB {large * 1000:.1f} ms, 4 at once up to "
              f"{max(concurrent) * 1000:.1f} ms; /health up to {max(health) * 1000:.1f} ms over {len(health)} polls")
        assert large < 1.0
        assert max(concurrent) < 2.0
        assert large < 20 * small
        assert health
        assert max(health) < 0.5

    asyncio.run(run_gateway(settings, body, RecordingProducer()))


# -- the OpenAPI document -----------------------------------------------------------------------------------


def test_the_committed_openapi_document_is_up_to_date(tmp_path: Path) -> None:
    committed = REPO / "docs" / "ingest-openapi.json"
    assert is_up_to_date(committed), "docs/ingest-openapi.json is out of date: write_openapi() regenerates it"
    written = tmp_path / "openapi.json"
    write_openapi(written)
    assert is_up_to_date(written)
    written.write_text(written.read_text(encoding="utf-8").replace("Publish", "Send"), encoding="utf-8")
    assert not is_up_to_date(written)
    assert not is_up_to_date(tmp_path / "missing.json")


def test_the_document_has_one_schema_per_event_type_and_the_real_responses() -> None:
    doc = default_document()
    schemas = doc["components"]["schemas"]
    types = list(agency_event_models())
    assert schemas["EventType"]["enum"] == types
    branches = [schemas[ref["$ref"].rsplit("/", 1)[1]] for ref in schemas["Event"]["oneOf"]]
    consts = []
    for branch in branches:
        envelope = schemas[branch["properties"]["envelope"]["$ref"].rsplit("/", 1)[1]]
        consts.append(envelope["properties"]["event_type"]["const"])
        assert envelope["properties"]["schema_version"]["enum"]
        assert "source_agency" not in envelope["required"]
        payload = schemas[branch["properties"]["payload"]["$ref"].rsplit("/", 1)[1]]
        assert payload["additionalProperties"] is False
        assert all(isinstance(p, dict) for p in payload["properties"].values())
    assert consts == types  # discriminated by envelope.event_type, one branch per type
    assert schemas["YouthActivityEnvelope"]["properties"]["schema_version"]["enum"] == [1, 2]
    assert schemas["MinorSuspectedEnvelope"]["properties"]["data_class"]["enum"] == ["personal_consent",
                                                                                     "personal_statutory"]
    assert "subject" in schemas["MinorSuspectedEnvelope"]["required"]
    assert schemas["IncidentNoticeEnvelope"]["properties"]["subject"] == {
        "type": "null", "description": "No subject: this type is never about one person"}
    post_op = doc["paths"]["/v1/events"]["post"]
    content = post_op["requestBody"]["content"]
    assert set(content) == {"application/json", *NDJSON_MEDIA_TYPES}
    assert set(content["application/json"]["examples"]) == set(types)
    responses = post_op["responses"]

    def body_of(status: str) -> set[str]:
        schema = responses[status]["content"]["application/json"]["schema"]
        refs = [schema] if "$ref" in schema else schema["oneOf"]
        return {r["$ref"].rsplit("/", 1)[1] for r in refs}

    assert {s: body_of(s) for s in responses} == {
        "202": {"IngestResult"}, "400": {"Error", "IngestResult"}, "401": {"Error"}, "403": {"IngestResult"},
        "413": {"Error", "IngestResult"}, "415": {"Error"}, "422": {"IngestResult"}, "429": {"Error"},
        "503": {"Error", "IngestResult"},
    }  # fmt: skip
    assert "Retry-After" in responses["429"]["headers"]
    assert "Retry-After" in responses["503"]["headers"]
    assert "WWW-Authenticate" in responses["401"]["headers"]


def test_every_example_is_accepted_by_a_token_of_its_agency(tmp_path: Path) -> None:
    """Each documented example gets 202 (as JSON and as one NDJSON line) from its agency's token, and the
    error bodies have the documented shapes."""
    tokens = {"polisen": "ex-polisen", "kriminalvarden": "ex-kriminalvarden", "kommun-1381": "ex-kommun-1381"}
    settings = HubSettings(kafka_bootstrap="127.0.0.1:1", state_dir=tmp_path, topic_namespace="ex.",
                           ingest=IngestSettings(tokens={u: [hash_token(t)] for u, t in tokens.items()}))
    producer = RecordingProducer()

    async def body(client: Client, app: web.Application) -> None:
        for event_type, doc in example_events().items():
            unit = "kommun-1381" if event_type.startswith("kommun.") else event_type.split(".")[0]
            r = await post(client, json.dumps(doc), tokens[unit])
            assert r.status == 202, (event_type, await r.text())
            r = await post(client, ndjson(doc), tokens[unit], ndjson_body=True)
            assert r.status == 202, (event_type, await r.text())
        assert len(producer.sent) == 2 * len(example_events())
        r = await post(client, "", tokens["polisen"])
        assert r.status == 400
        assert set(await r.json()) == {"error"}
        r = await post(client, "{broken", tokens["polisen"])
        assert r.status == 400
        assert set(await r.json()) == {"accepted", "rejected"}
        served = await (await client.get("/openapi.json")).json()
        assert served == json.loads(json.dumps(default_document()))

    asyncio.run(run_gateway(settings, body, producer))


def test_wrong_json_types_the_contract_would_coerce_are_422(tmp_path: Path) -> None:
    """Found by schemathesis: a boolean or numeric text for a number field (``leader_hours: false``) was
    stored as a number (202); it is now a 422 naming the field. ``source_agency`` may be anything or absent:
    the token's agency replaces it (a claim is counted as corrected, a missing one is just filled in)."""
    settings = offline_settings(tmp_path)
    producer = RecordingProducer()

    def youth_with(**payload: Any) -> dict[str, Any]:
        doc = youth()
        doc["envelope"]["schema_version"] = 2
        doc["payload"].update(payload)
        return doc

    async def body(client: Client, app: web.Application) -> None:
        for value in (True, False, "1.5", [1]):
            r = await post(client, json.dumps(youth_with(leader_hours=value)), KOMMUN_TOKEN)
            assert r.status == 422, await r.text()
            assert (await r.json())["rejected"][0]["errors"][0]["path"] == "payload.leader_hours"
        assert producer.sent == []
        r = await post(client, json.dumps(youth_with(leader_hours=2)), KOMMUN_TOKEN)  # an integer is a number
        assert r.status == 202, await r.text()
        missing = youth_with(leader_hours=2.5)
        del missing["envelope"]["source_agency"]
        r = await post(client, json.dumps(missing), KOMMUN_TOKEN)
        assert r.status == 202, await r.text()
        metrics = await (await client.get("/metrics")).text()
        assert "hub_ingest_source_agency_corrected_total{" not in metrics  # filled in, not a spoof
        for value in (None, 7, ["kommun"]):
            doc = youth()
            doc["envelope"]["source_agency"] = value
            r = await post(client, json.dumps(doc), KOMMUN_TOKEN)
            assert r.status == 202, await r.text()
        metrics = await (await client.get("/metrics")).text()
        assert 'hub_ingest_source_agency_corrected_total{agency="kommun",unit="kommun-1381"} 3.0' in metrics

    asyncio.run(run_gateway(settings, body, producer))


# -- quiet: malformed HTTP ------------------------------------------------------------------------------------


def test_malformed_http_is_one_warning_line_without_traceback(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    settings = offline_settings(tmp_path)
    secret = b"191212121212-header-value"

    async def body(client: Client, app: web.Application) -> None:
        host, port = client.host, client.port
        for _ in range(2):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Note: a\x00" + secret + b"\r\n\r\n")
            await writer.drain()
            answer = await reader.read(100)
            writer.close()
            assert answer.startswith(b"HTTP/1.")
            assert b" 400 " in answer[:20]
        assert (await client.get("/health")).status == 200

        reader, writer = await asyncio.open_connection(host, port)  # not HTTP at all: aiohttp says so at DEBUG
        writer.write(b"\x16\x03\x01 not http\r\n\r\n")
        await writer.drain()
        await reader.read(100)
        writer.close()

    asyncio.run(run_gateway(settings, body, RecordingProducer()))
    server = [r for r in caplog.records if r.name == "aiohttp.server" and r.levelno > logging.DEBUG]
    assert len(server) == 2, [r.getMessage() for r in server]  # one line per malformed request
    for record in server:
        assert record.levelno == logging.WARNING
        assert record.exc_info is None
        assert record.getMessage().startswith("malformed HTTP request from 127.0.0.1 refused with 400:")
        assert "BadHttpMessage" in record.getMessage()
    assert [r.levelno for r in caplog.records if r.name == "aiohttp.server" and "BadHttpMethod" in r.getMessage()] \
        == [logging.DEBUG]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if r.exc_info]
    assert "Traceback" not in caplog.text
    assert secret.decode() not in caplog.text
    assert "191212121212" not in caplog.text


# -- fair: in-flight limits per source unit ------------------------------------------------------------------


def test_a_sender_at_its_in_flight_limit_gets_429_while_others_are_served(tmp_path: Path) -> None:
    """max_in_flight 4: each unit may have 2 events awaiting acknowledgement. Laholm, at 2, gets 429 with
    Retry-After; the police are still served; once Laholm's events are acknowledged it is served again."""
    settings = offline_settings(tmp_path, "fair", max_in_flight=4)
    producer = SlowProducer(1.0)

    async def body(client: Client, app: web.Application) -> None:
        gateway = app[GATEWAY]
        assert gateway.max_in_flight_per_unit == 2
        first = asyncio.create_task(post(client, ndjson(youth(1), youth(2)), KOMMUN_TOKEN, ndjson_body=True))
        async with asyncio.timeout(5):
            while gateway.in_flight < 2:  # noqa: ASYNC110 - polling another component
                await asyncio.sleep(0.01)
        r = await post(client, json.dumps(youth(3)), KOMMUN_TOKEN)
        assert r.status == 429
        assert r.headers["Retry-After"] == "1"
        assert "kommun-1381" in (await r.json())["error"]
        r = await post(client, json.dumps(minor()), POLISEN_TOKEN)  # another unit is served meanwhile
        assert r.status == 202, await r.text()
        assert (await first).status == 202
        r = await post(client, json.dumps(youth(4)), KOMMUN_TOKEN)
        assert r.status == 202, await r.text()
        assert gateway.in_flight == 0
        assert not gateway.in_flight_by_unit

    asyncio.run(run_gateway(settings, body, producer))


def test_the_per_unit_limit_can_be_given(tmp_path: Path) -> None:
    settings = offline_settings(tmp_path, "fair", max_in_flight=100)

    async def body(client: Client, app: web.Application) -> None:
        assert app[GATEWAY].max_in_flight_per_unit == 1
        first = asyncio.create_task(post(client, json.dumps(youth(1)), KOMMUN_TOKEN))
        async with asyncio.timeout(5):
            while app[GATEWAY].in_flight < 1:  # noqa: ASYNC110 - polling another component
                await asyncio.sleep(0.01)
        assert (await post(client, json.dumps(youth(2)), KOMMUN_TOKEN)).status == 429
        assert (await first).status == 202

    asyncio.run(run_gateway(settings, body, SlowProducer(0.5), max_in_flight_per_unit=1))


# -- rotatable: token lifetime and the tokens file -------------------------------------------------------------


def test_new_tokens_always_expire_90_days_on_by_default() -> None:
    now = datetime(2026, 8, 14, 12, 0, tzinfo=UTC)
    token, entry = new_token(now=now)
    digest, _, expiry = entry.partition("@")
    assert digest == hash_token(token)
    assert datetime.fromisoformat(expiry) == now + DEFAULT_TOKEN_LIFETIME == now + timedelta(days=90)
    _, entry = new_token(datetime(2027, 1, 1, tzinfo=UTC))
    assert entry.endswith("@2027-01-01T00:00:00Z")
    fresh = Authenticator({"polisen": [entry]}, ["1381"])
    assert fresh.entries[0].expires == datetime(2027, 1, 1, tzinfo=UTC)


def test_a_token_without_expiry_is_warned_about_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    create_app(offline_settings(tmp_path), RecordingProducer())  # polisen's and Halmstad's have none
    warned = [r.getMessage() for r in caplog.records if "has no expiry" in r.getMessage()]
    assert len(warned) == 2
    assert any(f"polisen:{hash_token(POLISEN_TOKEN)[:12]}" in w for w in warned)
    assert all(hash_token(POLISEN_TOKEN) not in w for w in warned)  # the credential id, never the digest
    assert not any(f"kommun-1381:{hash_token(KOMMUN_TOKEN)[:12]}" in w for w in warned)


def write_tokens(path: Path, tokens: dict[str, list[str]] | str) -> None:
    """Replace the tokens file atomically (write beside it, then rename), as an operator should."""
    spare = path.with_suffix(".tmp")
    spare.write_text(tokens if isinstance(tokens, str) else json.dumps(tokens), encoding="utf-8")
    os.replace(spare, path)


def test_tokens_added_to_or_removed_from_the_file_take_effect_without_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    path = tmp_path / "tokens.json"
    write_tokens(path, {})
    new, newer = "rotated-kommun-token", "rotated-kommun-token-2"
    expiry = (datetime.now(UTC) + timedelta(days=90)).isoformat()
    settings = offline_settings(tmp_path)
    producer = RecordingProducer()

    async def body(client: Client, app: web.Application) -> None:
        doc = json.dumps(youth())
        assert (await post(client, doc, new)).status == 401
        write_tokens(path, {"kommun-1381": [f"{hash_token(new)}@{expiry}"]})  # add
        assert (await post(client, doc, new)).status == 202
        assert (await post(client, doc, KOMMUN_TOKEN)).status == 202  # the setting's tokens stay valid
        write_tokens(path, {"kommun-1381": [f"{hash_token(new)}@{expiry}", f"{hash_token(newer)}@{expiry}"]})
        assert (await post(client, doc, newer)).status == 202
        write_tokens(path, {"kommun-1381": [f"{hash_token(newer)}@{expiry}"]})  # revoke the first
        r = await post(client, doc, new)
        assert r.status == 401
        assert (await r.json())["error"] == "invalid token"
        write_tokens(path, "{not json")  # a broken edit keeps the last good tokens
        assert (await post(client, doc, newer)).status == 202
        write_tokens(path, {"kommun-9999": [hash_token("x")]})  # so does a unit the hub does not serve
        assert (await post(client, doc, newer)).status == 202
        path.unlink()  # a deleted file revokes its tokens
        assert (await post(client, doc, newer)).status == 401
        assert (await post(client, doc, KOMMUN_TOKEN)).status == 202

    asyncio.run(run_gateway(settings, body, producer, tokens_file=path, tokens_check_interval_s=0.0))
    text = caplog.text
    assert "re-read" in text
    assert "stay in force" in text  # the broken edits were logged
    assert "revoked" in text
    for token in (new, newer, hash_token(new), hash_token(newer)):
        assert token not in text


def test_the_tokens_file_is_looked_at_most_once_a_second(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    write_tokens(path, {})
    now = [100.0]
    auth = Authenticator({}, ["1381"], tokens_file=path, clock=lambda: now[0])
    write_tokens(path, {"polisen": [hash_token("p")]})
    now[0] += 0.5
    assert auth.authenticate("Bearer p").status == "invalid"  # not looked at yet
    now[0] += 0.6
    assert auth.authenticate("Bearer p").status == "ok"
    assert auth.refresh() is False  # unchanged, and within the second


def test_a_missing_or_malformed_tokens_file_fails_at_start(tmp_path: Path) -> None:
    settings = offline_settings(tmp_path)
    with pytest.raises(ValueError, match=r"HUB_INGEST__TOKENS_FILE .*: no such file"):
        create_app(settings, RecordingProducer(), tokens_file=tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    for content, message in [("[]", "not a JSON object"), ("{", "not JSON"),
                             ('{"polisen": "abc"}', "not a JSON list"),
                             ('{"polisen": ["abc"]}', "not a 64-hex-digit"),
                             (json.dumps({"kommun-1380": [hash_token(KOMMUN_TOKEN)]}), "same token")]:  # fmt: skip
        bad.write_text(content, encoding="utf-8")
        with pytest.raises(ValueError, match=message):
            create_app(settings, RecordingProducer(), tokens_file=bad)
