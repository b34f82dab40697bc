"""``hub ingest``: the authenticated HTTP gateway agencies post contract events to (guide: ``docs/ingest.md``).

``POST /v1/events`` (JSON or NDJSON), ``GET /openapi.json``, ``/health``, ``/ready``, ``/metrics``.
See :func:`create_app` and :func:`serve`; tokens are configured hashed, per source unit, in the settings
or a tokens file re-read when it changes (:func:`new_token` makes one, valid 90 days by default).
Every record it produces carries the headers :data:`HEADER_SOURCE_UNIT` and :data:`HEADER_CREDENTIAL`.
The OpenAPI document is generated from the contract (:func:`openapi_document`); :func:`write_openapi`
writes it to ``docs/ingest-openapi.json`` and :func:`openapi_is_up_to_date` checks that file.
"""

from connectors.gateway.app import (
    GATEWAY,
    Gateway,
    GatewayProducer,
    create_app,
    run,
    scrub,
    serve,
)
from connectors.gateway.auth import Authenticator, AuthResult, credential_id, hash_token, new_token
from connectors.gateway.openapi import is_up_to_date as openapi_is_up_to_date
from connectors.gateway.openapi import openapi_document, write_openapi
from hub.identity import HEADER_CREDENTIAL, HEADER_SOURCE_UNIT

__all__ = [
    "GATEWAY",
    "HEADER_CREDENTIAL",
    "HEADER_SOURCE_UNIT",
    "AuthResult",
    "Authenticator",
    "Gateway",
    "GatewayProducer",
    "create_app",
    "credential_id",
    "hash_token",
    "new_token",
    "openapi_document",
    "openapi_is_up_to_date",
    "run",
    "scrub",
    "serve",
    "write_openapi",
]
