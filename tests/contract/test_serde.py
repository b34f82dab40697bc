"""Single-object encoding: round trips, evolution (v1 written, v2 read), and every failure a ContractError."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastavro import schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.contract.base import ContractRecord, all_models
from hub.contract.errors import ContractError
from hub.contract.events import MinorSuspected, YouthActivity
from hub.contract.outputs import Deadletter
from hub.contract.registry import SchemaRegistry
from hub.contract.serde import HEADER_LEN, MAGIC, Serde
from hub.settings import REPO_ROOT
from tests.contract.strategies import envelope, models

SERDE = Serde(SchemaRegistry(REPO_ROOT / "schemas"))


def _pnr() -> str:
    from datetime import date

    from tests.contract.strategies import personnummer_12

    return personnummer_12(date(2010, 3, 15), 123)


def minor_suspected(**payload: Any) -> MinorSuspected:
    data = {
        "case_id": "K-1",
        "offence_category": "theft",
        "offence_description": "snatteri",
        "guardian_notified": True,
        **payload,
    }
    return MinorSuspected.model_validate({"envelope": envelope("polisen.minor_suspected", _pnr()), "payload": data})


def youth_activity(**payload: Any) -> YouthActivity:
    data = {
        "activity_id": "A1",
        "activity_kind": "fritidsgård",
        "participants": 10,
        "participants_13_17": 6,
        "participants_18_24": 3,
        **payload,
    }
    version = 2 if "participants_girls" in payload else 1  # a v1 event may not carry the v2-only field
    return YouthActivity.model_validate({"envelope": envelope("kommun.youth_activity", schema_version=version),
                                         "payload": data})


def test_wire_format_header() -> None:
    event = minor_suspected()
    data = SERDE.encode(event)
    sv = SERDE.registry.latest(MinorSuspected.SCHEMA_NAME)
    assert sv is not None
    assert data[:2] == MAGIC == b"\xc3\x01"
    assert data[2:HEADER_LEN] == sv.fingerprint
    assert SERDE.decode(data) == event
    name, record = SERDE.decode_record(data)
    assert name == MinorSuspected.SCHEMA_NAME
    assert record["payload"]["case_id"] == "K-1"


def test_v1_written_youth_activity_is_read_by_v2_reader() -> None:
    v1 = SERDE.registry.version(YouthActivity.SCHEMA_NAME, 1)
    v2 = SERDE.registry.version(YouthActivity.SCHEMA_NAME, 2)
    assert v1 is not None
    assert v2 is not None
    event = youth_activity(leader_hours=4.5)
    old = SERDE.encode(event, version=1)
    assert old[2:HEADER_LEN] == v1.fingerprint
    decoded = SERDE.decode(old)
    assert isinstance(decoded, YouthActivity)
    assert decoded.payload.participants_girls is None
    assert decoded == event
    new = SERDE.encode(youth_activity(participants_girls=4))
    assert new[2:HEADER_LEN] == v2.fingerprint


def test_encoding_with_an_old_version_never_drops_a_value() -> None:
    with pytest.raises(ContractError) as info:
        SERDE.encode(youth_activity(participants_girls=4), version=1)
    assert info.value.reason == "invalid_payload"
    assert info.value.path == "payload.participants_girls"


def _raw(schema_name: str, record: dict[str, Any]) -> bytes:
    sv = SERDE.registry.latest(schema_name)
    assert sv is not None
    out = io.BytesIO()
    out.write(MAGIC + sv.fingerprint)
    schemaless_writer(out, sv.parsed, record)
    return out.getvalue()


def test_invalid_payload_names_the_field_and_never_the_personnummer() -> None:
    record = minor_suspected().to_avro()
    bad = "19121212-1213"  # wrong check digit
    record["envelope"]["subject"] = {"personnummer": bad, "birth_year": None}
    with pytest.raises(ContractError) as info:
        SERDE.decode(_raw(MinorSuspected.SCHEMA_NAME, record))
    err = info.value
    assert err.reason == "invalid_payload"
    assert err.path == "envelope.subject.personnummer"
    assert "personnummer has an invalid check digit" in err.message
    for text in (str(err), repr(err), err.message):
        assert "1212" not in text


def test_subject_required_and_event_type_must_match() -> None:
    record = minor_suspected().to_avro()
    record["envelope"]["subject"] = None
    with pytest.raises(ContractError, match=r"envelope\.subject is required"):
        SERDE.decode(_raw(MinorSuspected.SCHEMA_NAME, record))
    record = minor_suspected().to_avro()
    record["envelope"]["event_type"] = "polisen.child_concern"
    with pytest.raises(ContractError, match=r"envelope\.event_type"):
        SERDE.decode(_raw(MinorSuspected.SCHEMA_NAME, record))


def test_payload_field_path() -> None:
    record = youth_activity().to_avro()
    record["payload"]["participants"] = -1
    with pytest.raises(ContractError) as info:
        SERDE.decode(_raw(YouthActivity.SCHEMA_NAME, record))
    assert info.value.path == "payload.participants"


def test_truncated_and_unknown_fingerprint() -> None:
    data = SERDE.encode(minor_suspected())
    for cut in (1, 5, HEADER_LEN, HEADER_LEN + 3, len(data) - 1):
        with pytest.raises(ContractError) as info:
            SERDE.decode(data[:cut])
        assert info.value.reason == "truncated", cut
    with pytest.raises(ContractError) as info:
        SERDE.decode(MAGIC + b"\x00" * 8 + data[HEADER_LEN:])
    assert info.value.reason == "unknown_fingerprint"
    with pytest.raises(ContractError) as info:
        SERDE.decode(b'{"json": true}')
    assert info.value.reason == "undecodable"
    with pytest.raises(ContractError) as info:
        SERDE.decode(data + b"\x00")
    assert info.value.reason == "undecodable"


def test_deadletter_message_refuses_a_personnummer() -> None:
    with pytest.raises(ValueError, match="must not contain a personnummer") as info:
        Deadletter.model_validate(
            {
                "reason": "invalid_payload",
                "message": "bad 19121212-1212",
                "source_topic": "t",
                "source_partition": 0,
                "source_offset": 1,
                "original": b"",
                "at": "2026-01-01T00:00:00Z",
            }
        )
    assert "1212" not in str(info.value)


# -- properties -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("type_name", sorted(all_models()))
@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], deadline=None)
@given(data=st.data())
def test_random_valid_models_round_trip(type_name: str, data: st.DataObject) -> None:
    model = all_models()[type_name]
    event: ContractRecord = data.draw(models(model))
    assert SERDE.decode(SERDE.encode(event)) == event


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_contract_error(data: bytes) -> None:
    with pytest.raises(ContractError):
        SERDE.decode(data)


_FINGERPRINTS = sorted(sv.fingerprint for sv in SERDE.registry.all_versions())


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(_FINGERPRINTS), st.binary(max_size=300))
def test_random_bodies_behind_a_known_fingerprint_only_raise_contract_error(fp: bytes, body: bytes) -> None:
    reason = _decode_reason(MAGIC + fp + body)
    assert reason in {None, "truncated", "undecodable", "invalid_payload", "unknown_event_type"}


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.integers(HEADER_LEN, 200), st.integers(0, 255)), min_size=1, max_size=4))
def test_mutated_messages_only_raise_contract_error(flips: list[tuple[int, int]]) -> None:
    data = bytearray(SERDE.encode(minor_suspected()))
    for pos, value in flips:
        data[pos % len(data)] = value
    message = _decode_message(bytes(data))
    assert _pnr()[2:] not in message
    assert _pnr()[2:8] not in message


def _decode_reason(data: bytes) -> str | None:
    try:
        SERDE.decode(data)
    except ContractError as exc:
        return exc.reason
    return None


def _decode_message(data: bytes) -> str:
    try:
        SERDE.decode(data)
    except ContractError as exc:
        return exc.message
    return ""
