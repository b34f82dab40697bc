"""The schema files: they parse, resolve across files, and agree with the pydantic models both ways."""

from __future__ import annotations

import json
import types
import typing
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any
from uuid import UUID

import avro.schema
import fastavro.schema
import pytest
from pydantic import AwareDatetime, BaseModel
from pydantic.fields import FieldInfo

from hub.contract.base import ContractRecord, all_models, model_for_schema_name
from hub.contract.fingerprint import fingerprint_bytes
from hub.contract.registry import SchemaRegistry
from hub.contract.schemafiles import PRIMITIVES, read_schema_files
from hub.settings import REPO_ROOT

SCHEMAS = REPO_ROOT / "schemas"


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry(SCHEMAS)


def _walk_fields(schema: Any) -> typing.Iterator[dict[str, Any]]:
    if isinstance(schema, list):
        for b in schema:
            yield from _walk_fields(b)
    elif isinstance(schema, dict):
        if schema.get("type") == "record":
            for f in schema["fields"]:
                yield f
                yield from _walk_fields(f["type"])
        elif schema.get("type") == "array":
            yield from _walk_fields(schema["items"])
        elif schema.get("type") == "map":
            yield from _walk_fields(schema["values"])


def test_every_schema_parses_with_fastavro_and_avro(registry: SchemaRegistry) -> None:
    assert len(registry.all_versions()) >= 26
    for sv in registry.all_versions():
        avro.schema.parse(json.dumps(sv.schema))
        assert fastavro.schema.fingerprint(sv.canonical_form, "CRC-64-AVRO") == sv.fingerprint_hex


def test_fingerprint_algorithm_matches_spec_and_apache_avro(registry: SchemaRegistry) -> None:
    """CRC-64-AVRO as the spec and Apache Avro compute it.

    (Apache Avro's Python canonical form keeps ``{"type": "string"}`` for a logical type, against the
    spec's PRIMITIVES rule; fastavro and Java follow the spec, so we compare the algorithm, not the form.)
    """
    assert fingerprint_bytes('"int"') == (0x7275D51A3F395C8F).to_bytes(8, "little")
    for sv in registry.all_versions():
        parsed = avro.schema.parse(json.dumps(sv.schema))
        assert parsed.fingerprint("CRC-64-AVRO") == fingerprint_bytes(parsed.canonical_form)


def test_raw_files_resolve_with_fastavro_named_schemas() -> None:
    """Named types across files resolve with fastavro's own ``named_schemas`` (common files first)."""
    files = read_schema_files(SCHEMAS)
    named: dict[str, Any] = {}
    for f in sorted((f for f in files if f.group == "common"), key=lambda f: f.name != "offence_category"):
        fastavro.schema.parse_schema(f.schema, named_schemas=named)
    for f in files:
        if f.group != "common":
            fastavro.schema.parse_schema(f.schema, named_schemas=dict(named))


def test_canonical_form_is_of_the_expanded_schema(registry: SchemaRegistry) -> None:
    sv = registry.latest("se.samverkan.polisen.MinorSuspected")
    assert sv is not None
    assert '"symbols":["residential_burglary"' in sv.canonical_form
    assert '"name":"se.samverkan.common.Envelope"' in sv.canonical_form


def test_every_field_has_a_doc_and_enum_symbols_are_avro_legal() -> None:
    for f in read_schema_files(SCHEMAS):
        for field in _walk_fields(f.schema):
            assert field.get("doc"), f"{f.path}: {field['name']} has no doc"
        assert f.path.parent.parent.parent == SCHEMAS


def test_event_folders_match_model_registry(registry: SchemaRegistry) -> None:
    models = all_models()
    for name in registry.names():
        type_name = registry.type_name(name)
        if type_name is None or type_name.startswith("common."):
            continue
        model = model_for_schema_name(name)
        assert model is not None, f"no model for {name}"
        assert type_name == model.EVENT_TYPE
        assert models[type_name] is model
    assert len(models) == 24


# -- models and schemas agree, both ways ----------------------------------------------------------------


def _model_type(annotation: Any, meta: list[Any]) -> Any:
    """A normalised Avro-like description of a pydantic annotation."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        return _model_type(base, [*meta, *extra])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        assert len(args) == 1
        return ["null", _model_type(args[0], meta)]
    if origin is list:
        return {"array": _model_type(typing.get_args(annotation)[0], [])}
    if origin is dict:
        key, value = typing.get_args(annotation)
        assert key is str
        return {"map": _model_type(value, [])}
    meta = [x for m in meta for x in (m.metadata if isinstance(m, FieldInfo) else [m])]
    if annotation is int:
        le = min((m.le for m in meta if getattr(m, "le", None) is not None), default=None)
        return "int" if le is not None and le <= 2**31 - 1 else "long"
    if annotation in (datetime, AwareDatetime):
        return "timestamp-millis"
    simple = {str: "string", bool: "boolean", float: "double", bytes: "bytes", date: "date", UUID: "uuid"}
    if annotation in simple:
        return simple[annotation]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return {"enum": annotation.__name__, "symbols": [e.value for e in annotation]}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {"record": _model_fields(annotation)}
    raise AssertionError(f"unmapped annotation {annotation!r}")


def _model_fields(model: type[BaseModel]) -> dict[str, tuple[Any, bool]]:
    return {
        name: (_model_type(info.annotation, list(info.metadata)), not info.is_required())
        for name, info in model.model_fields.items()
    }


def _schema_type(t: Any) -> Any:
    if isinstance(t, list):
        assert t[0] == "null", "unions are [null, X]"
        assert len(t) == 2, "unions are [null, X]"
        return ["null", _schema_type(t[1])]
    if isinstance(t, str):
        assert t in PRIMITIVES, f"unexpanded reference {t}"
        return t
    if "logicalType" in t:
        return t["logicalType"]
    kind = t["type"]
    if kind == "array":
        return {"array": _schema_type(t["items"])}
    if kind == "map":
        return {"map": _schema_type(t["values"])}
    if kind == "enum":
        return {"enum": t["name"].rpartition(".")[2], "symbols": t["symbols"]}
    if kind == "record":
        return {"record": _schema_fields(t)}
    return _schema_type(kind)


def _schema_fields(record: dict[str, Any]) -> dict[str, tuple[Any, bool]]:
    out = {}
    for f in record["fields"]:
        optional = "default" in f
        if optional:
            assert f["default"] is None, f"{f['name']}: only null defaults"
            assert isinstance(f["type"], list), f"{f['name']}: only null defaults"
        out[f["name"]] = (_schema_type(f["type"]), optional)
    return out


@pytest.mark.parametrize("type_name", sorted(all_models()))
def test_model_and_latest_schema_agree(registry: SchemaRegistry, type_name: str) -> None:
    model: type[ContractRecord] = all_models()[type_name]
    sv = registry.latest(model.SCHEMA_NAME)
    assert sv is not None
    assert _model_fields(model) == _schema_fields(sv.schema)


def test_model_covers_older_versions_with_optional_extras(registry: SchemaRegistry) -> None:
    for model in all_models().values():
        for sv in registry.versions(model.SCHEMA_NAME)[:-1]:
            schema_fields = _schema_fields(sv.schema)
            model_fields = _model_fields(model)
            if "payload" in model_fields:  # an agency event: its payload evolves
                payload_m = model_fields["payload"][0]["record"]
                payload_s = schema_fields["payload"][0]["record"]
            else:  # a hub record (the audit record): its top-level fields do
                payload_m, payload_s = model_fields, schema_fields
            for name, spec in payload_s.items():
                model_spec = payload_m[name]
                if isinstance(spec[0], dict) and "symbols" in spec[0]:  # an enum may gain symbols at its end
                    symbols = spec[0]["symbols"]
                    assert model_spec[0]["symbols"][: len(symbols)] == symbols, name
                    model_spec = ({**model_spec[0], "symbols": symbols}, model_spec[1])
                assert model_spec == spec
            for name in set(payload_m) - set(payload_s):
                assert payload_m[name][1], f"{name} added after v{sv.version} must be optional"


def test_schema_dir_has_expected_layout() -> None:
    paths = {p.relative_to(SCHEMAS).as_posix() for p in Path(SCHEMAS).glob("*/*/v*.avsc")}
    assert "common/envelope/v1.avsc" in paths
    assert "kommun/youth_activity/v2.avsc" in paths
