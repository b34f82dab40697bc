"""Every message ends as an audit record or a dead letter, whatever it holds: the two inputs that crashed an
agent (a null value, a release to a home municipality outside the county) are regression tests here."""

from __future__ import annotations

from hub.audit import AuditChain
from hub.contract.outputs import AuditRecord, Deadletter
from hub.contract.serde import Serde
from hub.flows.lagesbild import Counts, WaveRule
from hub.flows.routing import Router
from hub.lagesbild_stage import LagesbildStage
from hub.pipeline import Message, Pipeline
from hub.pseudonym import Pseudonymiser
from hub.rules.model import load_rules
from hub.settings import HubSettings
from hub.topics import Topics
from tests import factories as f

SERDE = Serde()
TOPICS = Topics()


def _pipeline() -> Pipeline:
    settings = HubSettings()
    return Pipeline(Router(load_rules(settings.rules_path), settings.county_code), SERDE, Pseudonymiser(settings),
                    seen={}, consents={}, chain=AuditChain(), topics=TOPICS)  # fmt: skip


def test_a_null_value_on_an_agency_topic_is_a_dead_letter() -> None:
    result = _pipeline().process(Message(TOPICS.agency("polisen"), 3, 17, b"key", None))
    assert result.outcome == "deadletter"
    [out] = result.outputs
    dead = SERDE.decode(out.value)
    assert isinstance(dead, Deadletter)
    assert dead.reason.value == "undecodable"
    assert dead.message == "a null value (a tombstone) is not an event"
    assert (dead.source_topic, dead.source_partition, dead.source_offset) == (TOPICS.agency("polisen"), 3, 17)
    assert dead.original == b""


def test_a_release_home_to_a_municipality_outside_the_county_is_refused_and_audited() -> None:
    event = f.release(home="1381")
    event = event.model_copy(update={"payload": event.payload.model_copy(update={"home_municipality_code": "0180"})})
    result = _pipeline().process(Message(TOPICS.agency("kriminalvarden"), 0, 1, None, SERDE.encode(event)))
    assert result.outcome == "processed"
    records = [SERDE.decode(o.value) for o in result.outputs if o.topic == TOPICS.audit]
    assert records
    assert all(isinstance(r, AuditRecord) for r in records)
    reasons = {r.receiver: (r.decision.value, r.reason) for r in records if isinstance(r, AuditRecord)}
    for receiver in ("sig", "socialtjanst", "lagesbild"):
        assert reasons[receiver] == ("refused", "municipality 0180 is not served by this hub")
    assert not [o for o in result.outputs if o.topic.startswith("deliver.") or o.topic == TOPICS.lagesbild]


def test_an_increment_for_an_unserved_municipality_is_a_dead_letter_in_the_stage() -> None:
    import json

    from tests.hub.test_lagesbild import increment

    stage = LagesbildStage(SERDE, TOPICS, "13", WaveRule(), alerts={})
    bad = json.dumps({**increment(), "municipality_code": "0180"}).encode()
    [out] = stage.process(Counts(), bad, 1, 9)
    dead = SERDE.decode(out.value)
    assert isinstance(dead, Deadletter)
    assert dead.message == "lägesbild increment not counted: municipality_code is not one this hub serves"
