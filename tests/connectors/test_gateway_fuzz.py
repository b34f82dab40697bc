"""An outside API fuzzer against the live gateway: schemathesis on ``/openapi.json``, every check.

A real ``aiohttp`` server on a free port, on the session's secured broker (as the principal ``gateway``),
is fuzzed twice — with the police's token and with Laholm's (``kommun-1381``) — through schemathesis'
pytest integration: positive and negative data, every built-in check, its examples and fuzzing phases
for both tokens and its coverage phase (about 9,500 deterministic boundary and negative cases of
``POST /v1/events``, some two minutes here) for Laholm's. Fuzzing is bounded to
:data:`NORMAL_EXAMPLES` per operation and generation mode in a normal run; ``--full`` runs every phase for
both tokens with :data:`FULL_EXAMPLES` (at least 1,000) per operation. Then: no check failed, every
event type each token may send got at least one 202, and every event id the gateway answered 202 for is
on the unit's topic (read back as ``admin``).

One expectation is widened, and only one: the contract has rules no JSON Schema states (a personnummer's
check digit, a minor's age, parts that do not add up, dates out of order), so schema-valid data may be
refused with 422 naming the field; ``positive_data_acceptance`` accepts 422 besides its defaults.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp import web

from connectors.gateway import GATEWAY, create_app, hash_token
from connectors.gateway.examples import agency_event_models
from connectors.gateway.openapi import NDJSON_MEDIA_TYPES
from hub import identity
from hub.kafka import clients
from hub.settings import HubSettings, IngestSettings
from tests.connectors.test_gateway import create_source_topics

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(3600)]

TOKENS = {"polisen": "fuzz-polisen-token", "kommun-1381": "fuzz-kommun-1381-token"}
NORMAL_EXAMPLES = 100
"""Hypothesis examples per operation (and generation mode) in a normal run."""
FULL_EXAMPLES = 1000
MAX_RESPONSE_S = 5.0
"""``max_response_time``: no answer may take this long (the old quadratic parse took 7.8 s for 48 KB)."""
POSITIVE_ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx", "422"]
"""schemathesis' defaults for ``positive_data_acceptance`` plus 422 (see the module docstring)."""


@schemathesis.serializer(*NDJSON_MEDIA_TYPES)
def _ndjson(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    """An NDJSON body of the one event schemathesis generated (the documented schema is that of a line)."""
    return json.dumps(value).encode() + b"\n"


@dataclass
class Accepted:
    """What the gateway answered 202 for, per source unit."""

    event_ids: dict[str, set[str]] = field(default_factory=dict)
    event_types: dict[str, set[str]] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, dict[int, int]] = field(default_factory=dict)
    phases: dict[str, dict[str, int]] = field(default_factory=dict)

    def record(self, unit: str, case: schemathesis.Case, response: Any) -> None:
        self.requests[unit] = self.requests.get(unit, 0) + 1
        by_phase = self.phases.setdefault(unit, {})
        phase = f"{case.meta.phase.name.value if case.meta else '?'} {case.method} {case.path}"
        by_phase[phase] = by_phase.get(phase, 0) + 1
        by_status = self.statuses.setdefault(unit, {})
        by_status[response.status_code] = by_status.get(response.status_code, 0) + 1
        if response.status_code != 202 or case.path != "/v1/events":
            return
        for item in response.json()["accepted"]:
            self.event_ids.setdefault(unit, set()).add(item["event_id"])
        if isinstance(case.body, dict):
            self.event_types.setdefault(unit, set()).add(case.body["envelope"]["event_type"])


@dataclass
class LiveGateway:
    """The gateway on a free port of 127.0.0.1, served by its own event loop in a thread."""

    settings: HubSettings
    url: str = ""
    accepted: Accepted = field(default_factory=Accepted)
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _runner: web.AppRunner | None = None

    def start(self) -> None:
        threading.Thread(target=self._loop.run_forever, name="gateway", daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(120)

    async def _start(self) -> None:
        await create_source_topics(self.settings)
        app = create_app(self.settings)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = next(int(a[1]) for a in self._runner.addresses if isinstance(a, tuple))
        self.url = f"http://127.0.0.1:{port}"
        async with asyncio.timeout(60):
            while app[GATEWAY].producer is None:  # noqa: ASYNC110 - polling another component
                await asyncio.sleep(0.05)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(60)
        self._loop.call_soon_threadsafe(self._loop.stop)


@pytest.fixture(scope="module")
def live(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    ns = f"fz-{uuid.uuid4().hex[:8]}"
    expiry = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    settings = HubSettings(
        kafka_bootstrap=kafka_bootstrap, state_dir=tmp_path_factory.mktemp("fuzz"), topic_namespace=f"{ns}.",
        ingest=IngestSettings(tokens={unit: [f"{hash_token(token)}@{expiry}"] for unit, token in TOKENS.items()}),
    )  # fmt: skip
    gateway = LiveGateway(settings)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def schema_for(live: LiveGateway, unit: str, full_run: bool, *, coverage: bool) -> Any:
    """The live document, loaded by schemathesis with ``unit``'s token and the run's size."""
    config = schemathesis.Config.from_dict({
        "auth": {"openapi": {"bearer": {"bearer": TOKENS[unit]}}},
        "generation": {"max-examples": FULL_EXAMPLES if full_run else NORMAL_EXAMPLES, "mode": "all",
                       "deterministic": True, "database": "none"},
        "phases": {"coverage": {"enabled": coverage or full_run}},
        "checks": {"enabled": True, "max_response_time": MAX_RESPONSE_S,
                   "positive_data_acceptance": {"expected-statuses": POSITIVE_ACCEPTED}},
        "request-timeout": 30,
    })  # fmt: skip
    return schemathesis.openapi.from_url(f"{live.url}/openapi.json", config=config)


@pytest.fixture(scope="module")
def polisen_schema(live: LiveGateway, full_run: bool) -> Any:
    return schema_for(live, "polisen", full_run, coverage=False)


@pytest.fixture(scope="module")
def kommun_schema(live: LiveGateway, full_run: bool) -> Any:
    return schema_for(live, "kommun-1381", full_run, coverage=True)


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32's lazy loader reads and renames ``request.node._nodeid``, which pytest 9.2 no longer
    has (it keeps the id as ``_id``); give it one to read (its renaming then only changes that attribute)."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


polisen = schemathesis.pytest.from_fixture("polisen_schema")
kommun = schemathesis.pytest.from_fixture("kommun_schema")


@polisen.parametrize()
def test_schemathesis_with_the_police_token(case: schemathesis.Case, live: LiveGateway) -> None:
    live.accepted.record("polisen", case, case.call_and_validate())


@kommun.parametrize()
def test_schemathesis_with_laholms_token(case: schemathesis.Case, live: LiveGateway) -> None:
    live.accepted.record("kommun-1381", case, case.call_and_validate())


async def _ids_on(settings: HubSettings, topic: str, wanted: set[str], timeout_s: float = 60) -> set[str]:
    """The event ids of ``wanted`` found on ``topic`` (read from the beginning as ``admin``)."""
    from hub.contract.serde import Serde

    serde = Serde()
    consumer = clients.consumer(clients.access_as(settings, identity.ADMIN), topic, auto_offset_reset="earliest")
    await consumer.start()
    found: set[str] = set()
    try:
        async with asyncio.timeout(timeout_s):
            while not wanted <= found:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        found.add(str(serde.decode(record.value).envelope.event_id))  # type: ignore[attr-defined]
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return found & wanted


def test_every_event_type_accepted_and_every_202_on_its_topic(live: LiveGateway) -> None:
    """After both runs (this test comes after them in this module): each token got a 202 for every event type
    of its agency, and every event id answered 202 is on its unit's topic."""
    accepted = live.accepted
    if set(accepted.requests) != set(TOKENS):
        pytest.fail(f"the schemathesis tests of this module must run first (ran: {sorted(accepted.requests)})")
    print(f"schemathesis requests per unit: {accepted.requests}; statuses: {accepted.statuses}; "
          f"accepted events: { {u: len(ids) for u, ids in accepted.event_ids.items()} }; phases: {accepted.phases}")
    topics = {"polisen": "agency.polisen.events", "kommun-1381": "agency.kommun.1381.events"}
    for unit in TOKENS:
        agency = unit.split("-")[0]
        own_types = {t for t in agency_event_models() if t.startswith(f"{agency}.")}
        assert accepted.event_types.get(unit, set()) >= own_types, f"{unit}: no 202 for some event types"
        wanted = accepted.event_ids[unit]
        topic = live.settings.topic_namespace + topics[unit]
        found = asyncio.run(_ids_on(live.settings, topic, wanted))
        assert found == wanted, f"{unit}: {len(wanted - found)} accepted events are not on {topic}"


def test_the_served_document_is_the_committed_one_for_these_settings(live: LiveGateway) -> None:
    """The gateway serves the generated document (the committed file is that of the default settings)."""
    import urllib.request

    from connectors.gateway.openapi import openapi_document

    with urllib.request.urlopen(f"{live.url}/openapi.json", timeout=30) as answer:  # noqa: S310 - our own server
        served = json.loads(answer.read())
    settings = live.settings
    assert served == json.loads(json.dumps(openapi_document(
        settings.ingest, [*settings.municipality_codes, settings.county_code])))
    assert Path(__file__).resolve().parents[2].joinpath("docs", "ingest-openapi.json").exists()
