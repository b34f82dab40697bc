"""The lägesbild stage never crashes on an increment it cannot count: it writes a dead letter and goes on
(an agent crash would lose the count without a trace, and `hub reconcile` would not see it)."""

from __future__ import annotations

import json

import pytest

from hub.contract.outputs import Deadletter
from hub.contract.serde import Serde
from hub.flows.lagesbild import Counts, WaveRule
from hub.lagesbild_stage import LagesbildStage
from hub.topics import Topics
from tests.hub.test_lagesbild import increment

GOOD = increment(day="2026-07-06", week="2026-W28")


@pytest.mark.parametrize(("value", "why"), [
    (json.dumps({**GOOD, "week": "999-W22"}).encode(), "week outside 1900-W01 .. 2200-W53"),
    (json.dumps({**GOOD, "week": "2026-W54"}).encode(), "week outside 1900-W01 .. 2200-W53"),
    (json.dumps({**GOOD, "day": "0999-05-31"}).encode(), "day outside 1900 .. 2200"),
    (json.dumps({**GOOD, "day": "yesterday"}).encode(), "day is not an ISO date"),
    (json.dumps({**GOOD, "receiver": None}).encode(), "receiver missing or not text"),
    (b"\xff not json", "not a JSON increment"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({**GOOD, "n": 0}).encode(), "n is not a count of 1 .. 1000000"),
    (json.dumps({**GOOD, "n": "3"}).encode(), "n is not a count of 1 .. 1000000"),
    (json.dumps({**GOOD, "n": True}).encode(), "n is not a count of 1 .. 1000000"),
    (json.dumps({**GOOD, "n": 10**9}).encode(), "n is not a count of 1 .. 1000000"),
    (json.dumps({**GOOD, "event_id": 7}).encode(), "event_id not text"),
])  # fmt: skip
def test_an_increment_that_cannot_be_counted_is_a_dead_letter(value: bytes, why: str) -> None:
    topics, serde = Topics(), Serde()
    stage = LagesbildStage(serde, topics, "13", WaveRule(min_count=3, factor=2.0), alerts={})
    counts = Counts()
    [out] = stage.process(counts, value, 2, 41)
    assert out.topic == topics.deadletter
    assert out.partition == 2
    dead = serde.decode(out.value)
    assert isinstance(dead, Deadletter)
    assert dead.reason.value == "invalid_payload"
    assert dead.message == f"lägesbild increment not counted: {why}"
    assert (dead.source_topic, dead.source_partition, dead.source_offset) == (topics.lagesbild, 2, 41)
    assert dead.original == value
    assert counts.counts == {}  # nothing was counted
    # ... and the stage goes on counting the next good one
    after = stage.process(counts, json.dumps(GOOD).encode(), 2)
    assert any(o.topic == topics.deliver("lagesbild", "1381") for o in after)
