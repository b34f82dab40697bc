"""The OpenAPI 3.1 description of the ingest gateway, generated from the contract (served at
``GET /openapi.json``, committed as ``docs/ingest-openapi.json``).

The request body is a ``oneOf`` with one schema per agency event type, told apart by
``envelope.event_type`` (a ``const`` in each; the list of types is the ``EventType`` enum). Each event
schema comes from the contract's pydantic model (``model_json_schema``), narrowed per type where the
model's validators say more than its field types: the type's own ``event_type``, its ``schema_version``\\ s
(from ``schemas/<agency>/<event>/vN.avsc``), whether it carries a subject (and then a personal data class),
the served municipality codes, the personnummer and SCB-code forms, timestamps in 1900–2200. Field
descriptions are the Avro schemas' ``doc``. Each type has an example that gets 202 with a token of its
agency (:mod:`connectors.gateway.examples`). Rules no JSON Schema states (a personnummer's check digit, a
minor's age, parts not adding up, dates out of order) are answered 422 with the field named.

Every response code is described with the body it really has: ``{"error": ...}`` (:data:`ERROR`) when
the request as a whole is refused before its events are read (401, 413, 415, 429, an empty body's 400,
503 before Kafka is connected), the per-line :data:`INGEST_RESULT` otherwise.

:func:`write_openapi` writes the document for the default settings; :func:`is_up_to_date` says whether a
written file still matches (what ``hub schemas docs --check`` and a test ask).
"""

from __future__ import annotations

import copy
import json
import typing
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, models_json_schema
from pydantic_core import core_schema

from connectors.gateway.examples import agency_event_models, example_events, schema_versions
from connectors.gateway.parsing import MAX_CONTAINERS
from hub.contract.envelope import DataClass, Event, Personnummer12, payload_fields_by_version
from hub.contract.fields import MunicipalityCode, ScbCode, UtcMillis
from hub.contract.registry import SchemaRegistry
from hub.identity import AGENCIES, PER_MUNICIPALITY
from hub.settings import HubSettings, IngestSettings

SCHEMAS = "#/components/schemas/"
ERROR = "Error"
INGEST_RESULT = "IngestResult"
NDJSON_MEDIA_TYPES = ("application/x-ndjson", "application/ndjson")
"""The NDJSON media types the gateway takes (``application/ndjson`` is an alias)."""
PERSONNUMMER_PATTERN = r"^(?:[0-9]{8}-?|[0-9]{6}[-+]?)[0-9]{4}$"
"""``YYYYMMDD-NNNN``, ``YYYYMMDDNNNN``, ``YYMMDD-NNNN``, ``YYMMDDNNNN`` or ``YYMMDD+NNNN`` (100 or older)."""
TIMESTAMP_PATTERN = r"^(?:19[0-9]{2}|2[01][0-9]{2}|2200)-"
"""A timestamp's year is 1900–2200 (the contract's sane range)."""
_PERSONAL = [DataClass.personal_consent.value, DataClass.personal_statutory.value]


def _validator_of(annotated: Any) -> Any:
    """The function of the last ``AfterValidator`` of an ``Annotated`` field type."""
    return typing.get_args(annotated)[-1].func


class _ContractJsonSchema(GenerateJsonSchema):
    """Pydantic's JSON Schema generator, plus what the contract's field validators enforce on text."""

    codes: ClassVar[tuple[str, ...]] = ()

    def function_after_schema(self, schema: core_schema.AfterValidatorFunctionSchema) -> JsonSchemaValue:
        out = dict(super().function_after_schema(schema))
        function = schema["function"]["function"]
        if function is _validator_of(MunicipalityCode):
            out["enum"] = list(self.codes)
            out["description"] = "A municipality (SCB code) or the county (13) the hub serves"
        elif function is _validator_of(ScbCode):
            out["pattern"] = r"^[0-9]{4}$"
            out["description"] = "A 4-digit SCB municipality code (any municipality in Sweden)"
        elif function is _validator_of(Personnummer12):
            out["pattern"] = PERSONNUMMER_PATTERN
            out["description"] = ("Personnummer or samordningsnummer with a valid check digit, in any of the "
                                  "forms YYYYMMDD-NNNN, YYYYMMDDNNNN, YYMMDD-NNNN, YYMMDDNNNN, YYMMDD+NNNN")
        elif function is _validator_of(UtcMillis):
            out["pattern"] = TIMESTAMP_PATTERN
            out["description"] = ("RFC 3339 timestamp with a UTC offset, between 1900-01-01 and 2200-12-31 "
                                  "(kept to the millisecond)")
        return out


def _strip_titles(schema: Any) -> None:
    """Drop pydantic's generated property titles ("Event Id"): the names say it, descriptions say more."""
    if isinstance(schema, dict):
        for prop in (schema.get("properties") or {}).values():
            if isinstance(prop, dict):
                prop.pop("title", None)
        for value in schema.values():
            _strip_titles(value)
    elif isinstance(schema, list):
        for value in schema:
            _strip_titles(value)


def _avro_docs(record: dict[str, Any]) -> dict[str, str]:
    """Field name → Avro ``doc`` of one record schema."""
    return {f["name"]: f["doc"] for f in record.get("fields", []) if isinstance(f.get("doc"), str)}


def _describe(schema: dict[str, Any], docs: dict[str, str]) -> None:
    for name, prop in (schema.get("properties") or {}).items():
        if name in docs and isinstance(prop, dict):
            prop.setdefault("description", docs[name])


def _def_name(ref: dict[str, Any]) -> str:
    return str(ref["$ref"]).removeprefix(SCHEMAS)


def _envelope_for(model: type[Event], base: dict[str, Any], versions: list[int]) -> dict[str, Any]:
    """The envelope schema of one event type: the contract's envelope, narrowed to what this type accepts."""
    env = copy.deepcopy(base)
    props = env["properties"]
    required = [r for r in env["required"] if r != "source_agency"]
    props["event_type"] = {"type": "string", "const": model.EVENT_TYPE,
                           "description": props["event_type"].get("description", "")}
    props["schema_version"] = {
        "type": "integer", "enum": versions,
        "description": f"The version of the {model.EVENT_TYPE} schema this event is written in "
                       f"(schemas/{model.EVENT_TYPE.replace('.', '/')}/vN.avsc); the payload may hold only "
                       "that version's fields",
    }  # fmt: skip
    props["source_agency"] = {
        "description": "Optional, any value: whatever it says, the gateway sets it to the agency of the token's "
                       "source unit (a claim of another agency is corrected and counted)",
    }
    if model.SUBJECT_RULE == "required":
        props["subject"] = {"$ref": f"{SCHEMAS}Subject"}
        props["data_class"] = {"type": "string", "enum": _PERSONAL,
                               "description": "An event about a person is personal data"}
        required.append("subject")
        about = "It is about one person: subject required, with a personal data class."
    elif model.SUBJECT_RULE == "forbidden":
        props["subject"] = {"type": "null", "description": "No subject: this type is never about one person"}
        about = "It is never about one person: no subject."
    else:
        about = "A subject is optional; with one, the data class is personal_consent or personal_statutory."
    env["required"] = required
    env["title"] = f"{model.__name__}Envelope"
    env["description"] = f"The envelope of {model.EVENT_TYPE}. {about}"
    return env


def _version_rules(model: type[Event]) -> dict[str, Any]:
    """For an event type with several schema versions: a payload field a version lacks is absent or null
    in an event of that version (``if``/``then`` per version); {} otherwise."""
    fields = payload_fields_by_version(model.SCHEMA_NAME)
    every = frozenset().union(*fields.values()) if fields else frozenset()
    rules = []
    for version, known in sorted(fields.items()):
        missing = sorted(every - known)
        if missing:
            rules.append({
                "if": {"properties": {"envelope": {"properties": {"schema_version": {"const": version}}}}},
                "then": {"properties": {"payload": {"properties": {name: {"type": "null"} for name in missing}}}},
            })  # fmt: skip
    return {"allOf": rules} if rules else {}


def event_schemas(codes: Sequence[str], registry: SchemaRegistry | None = None) -> dict[str, Any]:
    """The components/schemas of every agency event type (and the types they use), plus ``Event`` (the
    ``oneOf``) and ``EventType`` (the enum)."""
    models = agency_event_models()
    registry = registry or SchemaRegistry()

    class Generator(_ContractJsonSchema):
        pass

    Generator.codes = tuple(codes)
    refs, top = models_json_schema([(m, "validation") for m in models.values()],
                                   ref_template=SCHEMAS + "{model}", schema_generator=Generator)
    defs: dict[str, Any] = top["$defs"]
    base_envelope = defs.pop("Envelope")
    defs.pop("Agency", None)  # only the envelope's source_agency used it, and the gateway ignores that
    branches: list[dict[str, str]] = []
    for event_type, model in models.items():
        name = _def_name(refs[(model, "validation")])
        schema = defs[name]
        avro = registry.latest(model.SCHEMA_NAME)
        fields = {f["name"]: f for f in avro.schema.get("fields", [])} if avro is not None else {}
        envelope_docs = _avro_docs(fields["envelope"]["type"]) if isinstance(
            fields.get("envelope", {}).get("type"), dict) else {}  # fmt: skip
        _describe(base_envelope, envelope_docs)
        payload_type = fields.get("payload", {}).get("type")
        payload_ref = schema["properties"]["payload"]
        if isinstance(payload_type, dict) and "$ref" in payload_ref:
            _describe(defs[_def_name(payload_ref)], _avro_docs(payload_type))
        envelope_name = f"{name}Envelope"
        defs[envelope_name] = _envelope_for(model, base_envelope, schema_versions(model))
        schema["properties"]["envelope"] = {"$ref": SCHEMAS + envelope_name}
        schema.update(_version_rules(model))
        schema["title"] = event_type
        doc = avro.schema.get("doc") if avro is not None else None
        schema["description"] = f"{event_type}: {doc}" if isinstance(doc, str) else event_type
        branches.append({"$ref": SCHEMAS + name})
    defs["EventType"] = {"type": "string", "enum": list(models),
                         "description": "Every event type the gateway takes; a token publishes only its "
                                        "agency's (polisen.*, kriminalvarden.*, kommun.*)"}
    defs["Event"] = {
        "description": "One contract event: envelope + payload, the JSON form of the Avro record. Exactly one "
                       "branch applies, chosen by envelope.event_type (see EventType).",
        "oneOf": branches,
    }  # fmt: skip
    _strip_titles(defs)
    return dict(sorted(defs.items()))


def _json(schema_name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": SCHEMAS + schema_name}}}


def _either(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """A response whose body is an Error or an IngestResult."""
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": {
        "oneOf": [{"$ref": SCHEMAS + ERROR}, {"$ref": SCHEMAS + INGEST_RESULT}]}}}}
    if headers:
        response["headers"] = headers
    return response


def _response(description: str, schema_name: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": _json(schema_name)}
    if headers:
        response["headers"] = headers
    return response


def _result_schemas() -> dict[str, Any]:
    line = {"type": "integer", "minimum": 1, "description": "Line of the body (1 for a JSON body)"}
    return {
        INGEST_RESULT: {
            "type": "object", "additionalProperties": False, "required": ["accepted", "rejected"],
            "description": "What became of each event of the body, by line",
            "properties": {
                "accepted": {"type": "array", "description": "Events the broker acknowledged (stored)",
                             "items": {"type": "object", "additionalProperties": False,
                                       "required": ["line", "event_id"],
                                       "properties": {"line": line,
                                                      "event_id": {"type": "string", "format": "uuid"}}}},
                "rejected": {"type": "array", "description": "Events not stored, each with its status and why",
                             "items": {
                                 "type": "object", "additionalProperties": False,
                                 "required": ["line", "status", "errors"],
                                 "properties": {
                                     "line": line,
                                     "status": {"type": "integer", "enum": [400, 403, 413, 422, 503],
                                                "description": "400 not JSON or too deeply nested, 403 not "
                                                               "this token's to send, 413 too large for Kafka, "
                                                               "422 not valid under the contract, 503 not "
                                                               "acknowledged in time (re-send it)"},
                                     "errors": {"type": "array", "items": {
                                         "type": "object", "additionalProperties": False,
                                         "required": ["path", "message"],
                                         "properties": {"path": {"type": ["string", "null"],
                                                                 "description": "The field, e.g. "
                                                                                "envelope.occurred_at"},
                                                        "message": {"type": "string"}}}},
                                 }}},
            },
        },
        ERROR: {"type": "object", "additionalProperties": False, "required": ["error"],
                "description": "The request as a whole was refused; no event of it was read",
                "properties": {"error": {"type": "string"}}},
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
        "Readiness": {"type": "object", "required": ["ready", "producer_started", "broker_reachable"],
                      "properties": {"ready": {"type": "boolean"}, "producer_started": {"type": "boolean"},
                                     "broker_reachable": {"type": "boolean"}}},
    }  # fmt: skip


def openapi_document(ingest: IngestSettings, codes: Iterable[str] | None = None) -> dict[str, Any]:
    """The document, with the configured limits filled in; ``codes``: the served municipality codes and the
    county code (default: the hub's defaults, Halland's six and 13). Made once per limits and codes (it is
    generated from every contract model); each call returns its own copy."""
    if codes is None:
        defaults = HubSettings.model_fields
        codes = [*defaults["municipality_codes"].get_default(call_default_factory=True),
                 defaults["county_code"].get_default()]
    limits = (ingest.max_body_bytes, ingest.max_lines, ingest.max_depth)
    return copy.deepcopy(_document(limits, tuple(dict.fromkeys(codes))))


@lru_cache(maxsize=8)
def _document(limits: tuple[int, int, int], codes: tuple[str, ...]) -> dict[str, Any]:
    max_body_bytes, max_lines, max_depth = limits
    retry_after = {"Retry-After": {"description": "Seconds to wait before retrying",
                                   "schema": {"type": "integer", "minimum": 0}}}
    examples = {
        event_type: {"summary": f"{event_type} (202 with a token of {event_type.split('.')[0]})", "value": doc}
        for event_type, doc in example_events().items()
    }
    event_content = {"schema": {"$ref": SCHEMAS + "Event"}, "examples": examples}
    ndjson_content = {**event_content,
                      "description": "One Event per line (UTF-8, lines separated by \\n; blank lines are skipped). "
                                     "The schema is that of one line: each line is validated on its own."}
    body_limits = (f"At most {max_body_bytes} bytes, {max_lines} lines (NDJSON), JSON nesting depth "
                   f"{max_depth} and {MAX_CONTAINERS} arrays/objects per event.")
    schemas = {**event_schemas(codes), **_result_schemas()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Samverkan Hub ingest API",
            "version": "1.0.0",
            "description": (
                "Agencies post contract events (the JSON form of the Avro contract: envelope + payload), one "
                "as application/json or a batch as NDJSON (one event per line). A bearer token belongs to one "
                "source unit: polisen, kriminalvarden, or one municipality (kommun-1381, ...). The unit's "
                "agency is the source: envelope.source_agency is overwritten. A municipality's token publishes "
                "only for that municipality: an event or consent whose envelope.municipality_code (or a payload "
                "field naming a municipality) is another one is refused (403). An event is listed as accepted "
                "only after Apache Kafka acknowledged it (acks=all). Events are at-least-once: after a 503 or "
                "429 re-send with the same event_id; the hub drops duplicates. Each source unit may have at "
                "most its share of the events awaiting acknowledgement (429 with Retry-After beyond it). "
                f"Agencies: {', '.join(AGENCIES)} ({', '.join(sorted(PER_MUNICIPALITY))}: one source unit per "
                "municipality). Guide: docs/ingest.md."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": {
            "/v1/events": {
                "post": {
                    "operationId": "postEvents",
                    "summary": "Publish one event (JSON) or a batch (NDJSON, one event per line)",
                    "requestBody": {
                        "required": True,
                        "description": body_limits,
                        "content": {"application/json": event_content,
                                    **{media: ndjson_content for media in NDJSON_MEDIA_TYPES}},
                    },
                    "responses": {
                        "202": _response("At least one event acknowledged by Kafka; the lines not stored are "
                                         "listed under rejected", INGEST_RESULT),
                        "400": _either("Error: the body is empty. IngestResult: every line is malformed JSON, "
                                       "not UTF-8 or too deeply nested"),
                        "401": _response("Missing, invalid or expired bearer token", ERROR,
                                         {"WWW-Authenticate": {"schema": {"type": "string"}}}),
                        "403": _response("The token's source unit may not publish these events: another "
                                         "agency's event type, or (a municipality's token) another "
                                         "municipality", INGEST_RESULT),
                        "413": _either("Error: the body or batch is too large. IngestResult: no event "
                                       "accepted and some too large for Kafka"),
                        "415": _response("Content-Type is not application/json or application/x-ndjson", ERROR),
                        "422": _response("No event valid under the contract (or the lines were refused for "
                                         "different reasons)", INGEST_RESULT),
                        "429": _response("This source unit (or the gateway) has too many events awaiting "
                                         "acknowledgement: retry after Retry-After seconds", ERROR, retry_after),
                        "503": _either("Error: not connected to Kafka yet. IngestResult: Kafka did not "
                                       "acknowledge (some) events in time; events listed as accepted are "
                                       "stored, re-send the others", retry_after),
                    },
                }
            },
            "/health": {"get": {"operationId": "health", "security": [], "summary": "The process is alive",
                                "responses": {"200": _response("Alive", "Health")}}},
            "/ready": {"get": {"operationId": "ready", "security": [],
                               "summary": "Producer started and Kafka reachable",
                               "responses": {"200": _response("Ready", "Readiness"),
                                             "503": _response("Not ready", "Readiness")}}},
            "/metrics": {"get": {"operationId": "metrics", "security": [],
                                 "summary": "Prometheus metrics (text exposition format)",
                                 "responses": {"200": {"description": "Metrics",
                                                       "content": {"text/plain": {"schema":
                                                                                  {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"operationId": "openapi", "security": [],
                                      "summary": "This document",
                                      "responses": {"200": {"description": "OpenAPI 3.1 document",
                                                            "content": {"application/json": {"schema": {
                                                                "type": "object"}}}}}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "Per-source-unit token (polisen, kriminalvarden, "
                                                          "kommun-<code>; stored hashed by the hub)"}},
            "schemas": schemas,
        },
    }  # fmt: skip


def render(document: dict[str, Any]) -> str:
    """The document as the committed file holds it: indented JSON, UTF-8, ending in a newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def default_document() -> dict[str, Any]:
    """The document for the default settings (what ``docs/ingest-openapi.json`` holds)."""
    return openapi_document(IngestSettings())


def write_openapi(path: Path) -> None:
    """Write the document for the default settings to ``path`` (``docs/ingest-openapi.json``)."""
    path.write_text(render(default_document()), encoding="utf-8")


def is_up_to_date(path: Path) -> bool:
    """Whether ``path`` holds exactly what :func:`write_openapi` would write."""
    try:
        return path.read_text(encoding="utf-8") == render(default_document())
    except OSError:
        return False
