"""Strict input at the edge: a wrong JSON type, a timestamp outside 1900–2200, a schema version the event type
does not have and a field its declared version does not have are each refused with a message naming the
field — at the gateway as 422, and, if written to Kafka directly, as a dead letter (never an agent crash)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from hub.contract.events import IncidentNotice, YouthActivity
from hub.contract.serde import Serde
from hub.pipeline import Message, Pipeline
from tests import factories as f
from tests.connectors.test_gateway import (
    KOMMUN_TOKEN,
    POLISEN_TOKEN,
    RecordingProducer,
    offline_settings,
    post,
    with_gateway,
)

SERDE = Serde()


def _incident(**envelope: Any) -> dict[str, Any]:
    data = f.incident_notice().model_dump(mode="json")
    data["envelope"].update(envelope)
    return data


def _youth(version: int = 1, **payload: Any) -> dict[str, Any]:
    data = f.youth_activity("1381").model_dump(mode="json")
    data["envelope"]["schema_version"] = version
    data["payload"].update(payload)
    if version == 1:
        data["payload"].pop("participants_girls", None)
    return data


# (document, the field the error must name, what the error says)
REFUSED: list[tuple[str, dict[str, Any], str, str]] = [
    ("year 999", _incident(occurred_at="0999-05-31T10:00:00Z"), "occurred_at", "1900-01-01 .. 2200-12-31"),
    ("year 2201", _incident(recorded_at="2201-01-01T00:00:00Z"), "recorded_at", "1900-01-01 .. 2200-12-31"),
    ("schema_version true", _incident(schema_version=True), "schema_version", "integer"),
    ("schema_version '1'", _incident(schema_version="1"), "schema_version", "integer"),
    ("schema_version 1.0", _incident(schema_version=1.0), "schema_version", "integer"),
    ("occurred_at 0", _incident(occurred_at=0), "occurred_at", "not a number"),
    ("occurred_at '1700000000'", _incident(occurred_at="1700000000"), "occurred_at", "not a number"),
    ("event id without dashes", _incident(event_id="7b0f7a643a554f1e9f533f4f2a6f2b11"), "event_id", "8-4-4-4-12"),
    ("schema_version 99", _incident(schema_version=99), "schema_version 99", "is not a version of"),
    ("v1 with a v2 field", _youth(1, participants_girls=3) | {"payload": {**_youth(1)["payload"],
                                                                          "participants_girls": 3}},
     "participants_girls", "is not a field of kommun.youth_activity version 1"),
]
REFUSED.append(("county_level 0", (lambda d: (d["payload"].update(county_level=0), d)[1])(_incident()),
                "county_level", "boolean"))


def _model(doc: dict[str, Any]) -> type[IncidentNotice] | type[YouthActivity]:
    return YouthActivity if doc["envelope"]["event_type"] == "kommun.youth_activity" else IncidentNotice


@pytest.mark.parametrize(("case", "doc", "field", "says"), REFUSED, ids=[c[0] for c in REFUSED])
def test_the_contract_refuses_instead_of_coercing(case: str, doc: dict[str, Any], field: str, says: str) -> None:
    with pytest.raises(ValidationError) as info:
        _model(doc).model_validate(doc)
    text = str(info.value)
    assert field in text
    assert says in text


def test_what_is_right_still_passes() -> None:
    assert _model(_incident()).model_validate(_incident())
    v2 = _youth(2, participants_girls=3)
    assert YouthActivity.model_validate(v2).payload.participants_girls == 3
    assert YouthActivity.model_validate(_youth(1)).payload.participants_girls is None


@pytest.mark.parametrize(("case", "doc", "field", "says"), REFUSED, ids=[c[0] for c in REFUSED])
def test_the_gateway_answers_422_naming_the_field(case: str, doc: dict[str, Any], field: str, says: str,
                                                  tmp_path: Path) -> None:  # fmt: skip
    settings = offline_settings(tmp_path)
    producer = RecordingProducer()
    token = KOMMUN_TOKEN if doc["envelope"]["event_type"].startswith("kommun.") else POLISEN_TOKEN

    async def body(client: Any, app: Any) -> None:
        r = await post(client, json.dumps(doc), token)
        assert r.status == 422, await r.text()
        reply = await r.json()
        [rejected] = reply["rejected"]
        text = json.dumps(rejected["errors"])
        assert field in text
        assert says in text

    asyncio.run(with_gateway(settings, body, producer))
    assert producer.sent == []


def test_written_to_kafka_directly_a_year_999_event_is_a_dead_letter_not_a_crash() -> None:
    """A producer that bypasses the gateway (a unit's own system) writes an Avro record dated year 999."""
    from hub.audit import AuditChain
    from hub.flows.routing import Router
    from hub.pseudonym import Pseudonymiser
    from hub.rules.model import load_rules
    from hub.settings import HubSettings
    from hub.topics import Topics

    settings = HubSettings()
    event = f.incident_notice()
    record = event.model_dump(mode="python")
    from datetime import UTC, datetime

    record["envelope"]["occurred_at"] = datetime(999, 5, 31, 10, tzinfo=UTC)
    raw = _raw_encode(record)
    pipeline = Pipeline(Router(load_rules(settings.rules_path), settings.county_code), SERDE, Pseudonymiser(settings),
                        seen={}, consents={}, chain=AuditChain(), topics=Topics())
    result = pipeline.process(Message(Topics().agency("polisen"), 0, 0, None, raw))
    assert result.outcome == "deadletter"
    [out] = result.outputs
    dead = SERDE.decode(out.value)
    assert dead.reason.value == "invalid_payload"  # type: ignore[union-attr]
    assert "occurred_at" in dead.message  # type: ignore[union-attr]


def _raw_encode(record: dict[str, Any]) -> bytes:
    import io

    from fastavro import schemaless_writer

    from hub.contract.serde import MAGIC

    sv = SERDE.registry.latest(IncidentNotice.SCHEMA_NAME)
    assert sv is not None
    out = io.BytesIO()
    out.write(MAGIC + sv.fingerprint)
    schemaless_writer(out, sv.parsed, record)
    return out.getvalue()
