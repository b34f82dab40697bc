"""Fuzzing the ingest gateway: a real ``hub ingest`` process on the real broker, hostile requests one by one.

Every request must get a clear answer — 202, or a 4xx that says why (401, 413, 415; per line 400, 403,
422) — never a 5xx, a hang or a crash; the events it accepts must be on the token's source-unit topic
exactly once per acceptance, with the token's agency as source, and nothing it refused may be. The
municipalities' token is Laholm's (``kommun-1381``): its valid events for any other municipality must be
refused with 403. Neither a response nor the gateway's log (at DEBUG) may ever hold a personnummer or a
token.
"""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given

from connectors.gateway import hash_token
from hub.contract.envelope import Event
from hub.deadline import Deadline
from hub.identity import PER_MUNICIPALITY, SourceUnit
from tests.fuzz.strategies import EXPIRED_TOKEN, TOKENS, Doc, IngestRequest, case_id, ingest_requests
from tests.fuzz.support import Figures, event_ids, fuzz_settings, personnummer_lines
from tests.hub.support import REPO, HubUnderTest

# Sized by --full; a hang is caught sooner by the timeouts of each request and read.
pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(3600)]

MAX_BODY = 64 * 1024
MAX_LINES = 20
LINE_STATUSES = frozenset({400, 403, 422})
MUNICIPALITY = "1381"
"""Whose token the municipalities' token (``TOKENS["kommun"]``) is: Laholm's."""


def unit_of(agency: str) -> SourceUnit:
    """The source unit a fuzz token of ``agency`` is configured for."""
    return SourceUnit(agency, MUNICIPALITY if agency in PER_MUNICIPALITY else None)


def for_another_municipality(line: Doc, token_agency: str) -> bool:
    """Whether a document names a municipality other than that of the token's unit (then a valid one is 403)."""
    own = unit_of(token_agency).municipality
    envelope = line.doc.get("envelope") if line.doc is not None else None
    code = envelope.get("municipality_code") if isinstance(envelope, dict) else None
    return own is not None and isinstance(code, str) and code != own


@dataclass
class Gateway:
    """A running ``hub ingest`` and a keep-alive HTTP connection to it."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        for attempt in range(3):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            try:
                self.conn.request("POST", path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
            except (ConnectionError, http.client.HTTPException):
                # The gateway may close a connection after refusing a body it did not read (413):
                # nothing of this request was processed; send it again on a new connection.
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
                continue
            if response.will_close:
                self.conn.close()
                self.conn = None
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        raise AssertionError("unreachable")


@pytest.fixture
def gateway(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[Gateway, HubUnderTest]]:
    hub = HubUnderTest(kafka_bootstrap, f"fzi{uuid.uuid4().hex[:6]}.", tmp_path / "state")
    hub.create_topics()
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    tokens = {unit_of(agency).name: [hash_token(token)] for agency, token in TOKENS.items()}
    tokens[unit_of("kommun").name].append(f"{hash_token(EXPIRED_TOKEN)}@{past}")
    env = {
        **hub.env, "HUB_INGEST__TOKENS": json.dumps(tokens), "HUB_INGEST__MAX_BODY_BYTES": str(MAX_BODY),
        "HUB_INGEST__MAX_LINES": str(MAX_LINES), "HUB_INGEST__ACK_TIMEOUT_S": "60", "HUB_LOG_LEVEL": "DEBUG",
    }  # fmt: skip
    out_path, log_path = tmp_path / "ingest.out", tmp_path / "ingest.log"
    with out_path.open("wb") as out, log_path.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "ingest", "--port", "0"], cwd=REPO, env=env,
                                stdout=out, stderr=err, stdin=subprocess.DEVNULL)  # fmt: skip
    try:

        def listening() -> bool:
            assert proc.poll() is None, f"hub ingest exited:\n{log_path.read_text(errors='replace')[-3000:]}"
            return bool(out_path.read_text().strip())

        Deadline(60, "hub ingest to listen").wait_for(listening, interval=0.1)
        port = int(json.loads(out_path.read_text().splitlines()[0])["listening"].rsplit(":", 1)[1])
        gw = Gateway(proc, port, log_path)

        def ready() -> bool:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("GET", "/ready")
                return conn.getresponse().status == 200
            except OSError:
                return False
            finally:
                conn.close()

        Deadline(120, "hub ingest to be ready").wait_for(ready, interval=0.2)
        yield gw, hub
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:  # pragma: no cover - only when shutdown hangs
                proc.kill()
                proc.wait()


def expected_refusal(req: IngestRequest, body: bytes) -> int | None:
    """The status of a request refused as a whole (README, OpenAPI), or None when its lines decide."""
    if not req.auth_ok:
        return 401
    if not req.content_ok:
        return 415
    if len(body) > MAX_BODY:
        return 413
    documents = [raw for raw in body.split(b"\n") if raw.strip()] if req.ndjson else [body] if body.strip() else []
    if req.ndjson and len(documents) > MAX_LINES:
        return 413
    return 400 if not documents else None


def line_numbers(req: IngestRequest, body: bytes) -> list[int]:
    """The numbers the gateway gives the documents of a body (blank NDJSON lines count, are not events)."""
    if not req.ndjson:
        return [1]
    return [i for i, raw in enumerate(body.split(b"\n"), start=1) if raw.strip()]


def published_by_unit(hub: HubUnderTest, expect: int) -> list[tuple[str, Event]]:
    """Every record on the fuzz tokens' unit topics (once ``expect`` arrived and a quiet spell passed), with
    the token's agency; each must be a valid event whose ``source_agency`` is that agency."""
    topics = {hub.topics.unit(unit_of(agency)): agency for agency in TOKENS}
    got = hub.read(list(topics), until=lambda g: sum(len(v) for v in g.values()) >= expect, quiet_s=3,
                   timeout_s=180)  # fmt: skip
    out: list[tuple[str, Event]] = []
    for topic, records in got.items():
        for record in records:
            assert isinstance(record, Event)
            assert record.envelope.source_agency.value == topics[topic]
            out.append((topics[topic], record))
    return out


def check_response(req: IngestRequest, body: bytes, line_ids: list[str | None], status: int,
                   headers: dict[str, str], data: bytes) -> list[str]:  # fmt: skip
    """Assert the answer to one request; the event ids it accepted."""
    text = data.decode("utf-8")
    assert personnummer_lines(text) == [], "a response holds a personnummer"
    assert not any(token in text for token in (*TOKENS.values(), EXPIRED_TOKEN))
    answer: dict[str, Any] = json.loads(text)
    refusal = expected_refusal(req, body)
    if refusal is not None:
        assert status == refusal, (status, text)
        if status == 401:
            assert headers["www-authenticate"].startswith("Bearer")
        assert isinstance(answer["error"], str)
        assert answer["error"]
        return []
    assert status in (202, *LINE_STATUSES), (status, text)
    accepted = {a["line"]: a["event_id"] for a in answer["accepted"]}
    rejected = {r["line"]: r for r in answer["rejected"]}
    numbers = line_numbers(req, body)
    assert len(numbers) == len(req.lines)
    assert sorted([*accepted, *rejected]) == numbers, "every line is answered exactly once"
    cross = req.token_agency != req.agency
    for number, line, event_id in zip(numbers, req.lines, line_ids, strict=True):
        foreign = for_another_municipality(line, req.token_agency)
        if number in accepted:
            assert not cross, (line.family, "accepted with another agency's token")
            assert not foreign, (line.family, "accepted for another municipality than the token's")
            assert line.label != "bad", (line.family, "accepted")
            if line.label == "good":
                assert accepted[number] == event_id
        else:
            got = rejected[number]
            assert line.label != "good" or cross or foreign, (line.family, got)
            if cross:  # another agency's token: its own event types are refused first, or the line is bad
                allowed = frozenset({403}) if line.label == "good" else LINE_STATUSES
            elif foreign and line.label == "good":  # valid, but another municipality's: 403 (after validation)
                allowed = frozenset({403})
            else:
                allowed = line.statuses if line.label == "bad" else LINE_STATUSES
            assert got["status"] in allowed, (line.family, got)
            assert got["errors"]
            assert all(isinstance(e["message"], str) and e["message"] for e in got["errors"])
    if accepted:
        assert status == 202
    else:
        statuses = {r["status"] for r in rejected.values()}
        assert status == (statuses.pop() if len(statuses) == 1 else 422)
    return list(accepted.values())


def test_gateway_answers_every_request_clearly_and_publishes_only_what_it_accepts(
    gateway: tuple[Gateway, HubUnderTest], fuzz_cases: int, figures: Callable[[str], Figures]
) -> None:
    gw, hub = gateway
    fig = figures("ingest gateway (hub ingest over HTTP)")
    accepted: Counter[tuple[str, str]] = Counter()
    counter = iter(range(10**9))

    @fuzz_settings(fuzz_cases)
    @given(req=ingest_requests(MAX_LINES, MAX_BODY))
    def one(req: IngestRequest) -> None:
        n = next(counter)
        body, line_ids = req.render([case_id("ingest", n, i) for i in range(len(req.lines))])
        headers = dict(req.extra_headers)
        if req.auth is not None:
            headers["Authorization"] = req.auth
        if req.content_type is not None:
            headers["Content-Type"] = req.content_type
        status, response_headers, data = gw.post(f"/v1/events{req.query}", body, headers)
        for event_id in check_response(req, body, line_ids, status, response_headers, data):
            accepted[(req.token_agency, event_id)] += 1
        kind = "refused" if expected_refusal(req, body) else "ndjson" if req.ndjson else "json"
        fig.count(kind)
        for line in req.lines:
            fig.kinds[line.family] = fig.kinds.get(line.family, 0) + 1

    one()
    assert gw.proc.poll() is None, "hub ingest died"

    # Exactly what was accepted is on the token units' topics, with the token's agency as the source.
    assert event_ids(published_by_unit(hub, sum(accepted.values()))) == accepted

    gw.proc.send_signal(signal.SIGINT)
    assert gw.proc.wait(timeout=60) == 0
    log = gw.log_path.read_text(encoding="utf-8", errors="replace")
    assert "accepted" in log  # it did log, at DEBUG ...
    assert personnummer_lines(log) == [], "the gateway logged a personnummer"  # ... but never a personnummer
    assert not any(token in log for token in (*TOKENS.values(), EXPIRED_TOKEN)), "the gateway logged a token"
    assert "Traceback" not in log
