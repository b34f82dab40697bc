"""The OpenAPI 3.1 description of the ingest gateway (served at ``GET /openapi.json``)."""

from __future__ import annotations

from typing import Any

from hub.identity import AGENCIES, PER_MUNICIPALITY
from hub.settings import IngestSettings


def _error_response(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if headers:
        response["headers"] = headers
    return response


def openapi_document(ingest: IngestSettings) -> dict[str, Any]:
    """The document, with the configured limits filled in."""
    retry_after = {"Retry-After": {"description": "Seconds to wait before retrying",
                                   "schema": {"type": "integer"}}}
    outcome = {"application/json": {"schema": {"$ref": "#/components/schemas/IngestResult"}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Samverkan Hub ingest API",
            "version": "1.0.0",
            "description": (
                "Agencies post contract events (JSON shape of the Avro contract: envelope + payload). "
                "A bearer token belongs to one source unit: polisen, kriminalvarden, or one municipality "
                "(kommun-1381, ...). The unit's agency is the source: envelope.source_agency is overwritten. "
                "A municipality's token publishes only for that municipality: an event or consent whose "
                "envelope.municipality_code is another one is refused (403). "
                "An event is listed as accepted only after Apache Kafka acknowledged it (acks=all). "
                "Events are at-least-once: after a 503 re-send with the same event_id; the hub drops "
                f"duplicates. Agencies: {', '.join(AGENCIES)} "
                f"({', '.join(sorted(PER_MUNICIPALITY))}: one source unit per municipality)."
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
                        "description": (
                            f"At most {ingest.max_body_bytes} bytes, {ingest.max_lines} lines, "
                            f"JSON nesting depth {ingest.max_depth}."
                        ),
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Event"}},
                            "application/x-ndjson": {
                                "schema": {"type": "string",
                                           "description": "One Event JSON object per line"}
                            },
                        },
                    },
                    "responses": {
                        "202": {"description": "At least one event acknowledged by Kafka; bad lines "
                                               "are listed under rejected", "content": outcome},
                        "400": {"description": "Malformed or too deeply nested JSON (every line)",
                                "content": outcome},
                        "401": _error_response(
                            "Missing, invalid or expired bearer token",
                            {"WWW-Authenticate": {"schema": {"type": "string"}}},
                        ),
                        "403": {"description": "The token's source unit may not publish these events: "
                                               "another agency's event type, or (a municipality's token) "
                                               "another municipality", "content": outcome},
                        "413": {"description": "Body or batch too large (Error), or no event accepted and "
                                               "some too large for Kafka (IngestResult)",
                                "content": {"application/json": {"schema": {"oneOf": [
                                    {"$ref": "#/components/schemas/Error"},
                                    {"$ref": "#/components/schemas/IngestResult"}]}}}},
                        "415": _error_response("Unsupported Content-Type"),
                        "422": {"description": "No event valid under the contract", "content": outcome},
                        "429": _error_response("Too many events awaiting acknowledgement", retry_after),
                        "503": {"description": "Kafka did not acknowledge (some) events in time; events "
                                               "listed as accepted are stored, re-send the others",
                                "headers": retry_after, "content": outcome},
                    },
                }
            },
            "/health": {"get": {"operationId": "health", "security": [], "summary": "The process is alive",
                                "responses": {"200": {"description": "Alive"}}}},
            "/ready": {"get": {"operationId": "ready", "security": [],
                               "summary": "Producer started and Kafka reachable",
                               "responses": {"200": {"description": "Ready"},
                                             "503": {"description": "Not ready"}}}},
            "/metrics": {"get": {"operationId": "metrics", "security": [],
                                 "summary": "Prometheus metrics (text exposition format)",
                                 "responses": {"200": {"description": "Metrics",
                                                       "content": {"text/plain": {"schema":
                                                                                  {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"operationId": "openapi", "security": [],
                                      "summary": "This document",
                                      "responses": {"200": {"description": "OpenAPI 3.1 document"}}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "Per-source-unit token (polisen, kriminalvarden, "
                                                          "kommun-<code>; stored hashed by the hub)"}},
            "schemas": {
                "Event": {
                    "type": "object",
                    "required": ["envelope", "payload"],
                    "properties": {
                        "envelope": {"$ref": "#/components/schemas/Envelope"},
                        "payload": {"type": "object",
                                    "description": "Event-specific; see docs/events.md per event_type"},
                    },
                },
                "Envelope": {
                    "type": "object",
                    "required": ["event_id", "event_type", "schema_version", "source_agency", "source_unit",
                                 "municipality_code", "occurred_at", "recorded_at", "data_class"],
                    "properties": {
                        "event_id": {"type": "string", "format": "uuid"},
                        "event_type": {"type": "string", "pattern": r"^[a-z][a-z_]*\.[a-z][a-z_0-9]*$",
                                       "description": "Must start with the token's agency and a dot"},
                        "schema_version": {"type": "integer", "minimum": 1},
                        "source_agency": {"type": "string",
                                          "description": "Ignored: set to the token's agency"},
                        "source_unit": {"type": "string", "minLength": 1},
                        "municipality_code": {"type": "string", "pattern": r"^\d{4}$|^\d{2}$",
                                              "description": "With a municipality's token: that "
                                                             "municipality's code"},
                        "area": {"type": ["string", "null"]},
                        "occurred_at": {"type": "string", "format": "date-time"},
                        "recorded_at": {"type": "string", "format": "date-time"},
                        "subject": {
                            "type": ["object", "null"],
                            "properties": {"personnummer": {"type": "string"},
                                           "birth_year": {"type": ["integer", "null"]}},
                        },
                        "data_class": {"type": "string", "enum": ["public", "aggregated", "personal_consent",
                                                                  "personal_statutory"]},
                    },
                },
                "IngestResult": {
                    "type": "object",
                    "required": ["accepted", "rejected"],
                    "properties": {
                        "accepted": {"type": "array", "items": {
                            "type": "object", "required": ["line", "event_id"],
                            "properties": {"line": {"type": "integer"},
                                           "event_id": {"type": "string", "format": "uuid"}}}},
                        "rejected": {"type": "array", "items": {
                            "type": "object", "required": ["line", "status", "errors"],
                            "properties": {
                                "line": {"type": "integer"},
                                "status": {"type": "integer", "enum": [400, 403, 413, 422, 503]},
                                "errors": {"type": "array", "items": {
                                    "type": "object",
                                    "properties": {"path": {"type": ["string", "null"]},
                                                   "message": {"type": "string"}}}},
                            }}},
                    },
                },
                "Error": {"type": "object", "required": ["error"],
                          "properties": {"error": {"type": "string"}}},
            },
        },
    }
