"""``hub ingest``: the authenticated HTTP gateway agencies post contract events to.

``POST /v1/events`` (JSON or NDJSON), ``GET /openapi.json``, ``/health``, ``/ready``, ``/metrics``.
See :func:`create_app` and :func:`serve`; tokens are configured hashed (:func:`new_token`).
"""

from connectors.gateway.app import GATEWAY, Gateway, create_app, run, scrub, serve
from connectors.gateway.auth import Authenticator, AuthResult, hash_token, new_token
from connectors.gateway.openapi import openapi_document

__all__ = [
    "GATEWAY",
    "AuthResult",
    "Authenticator",
    "Gateway",
    "create_app",
    "hash_token",
    "new_token",
    "openapi_document",
    "run",
    "scrub",
    "serve",
]
