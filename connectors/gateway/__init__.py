"""``hub ingest``: the authenticated HTTP gateway agencies post contract events to.

``POST /v1/events`` (JSON or NDJSON), ``GET /openapi.json``, ``/health``, ``/ready``, ``/metrics``.
See :func:`create_app` and :func:`serve`; tokens are configured hashed, per source unit (:func:`new_token`).
Every record it produces carries the headers :data:`HEADER_SOURCE_UNIT` and :data:`HEADER_CREDENTIAL`.
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
from connectors.gateway.openapi import openapi_document
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
    "run",
    "scrub",
    "serve",
]
