"""The ingest gateway's aiohttp application: authentication, validation, producing, acknowledgement.

A request authenticates as one **source unit** (``polisen``, ``kriminalvarden``, ``kommun-1381``, …; see
:mod:`connectors.gateway.auth`). Its events must be of the unit's agency (403 otherwise), and a
municipality's credential may publish only for that municipality: an event (a consent too) whose
``envelope.municipality_code`` — or a payload field naming a municipality — is another one is refused with
403 and never published. ``envelope.source_agency`` is overwritten by the unit's agency. Accepted events go
to the unit's own topic (``agency.kommun.1381.events``), each record with the Kafka headers
``hub-source-unit`` (the unit) and ``hub-credential`` (the credential id, never the token), so the audit
can say who sent it. The gateway connects to Kafka as the principal ``gateway``.

An event is acknowledged (listed under ``accepted`` in a 202) only after the broker acknowledged it
(``acks="all"``). Events sent and not yet acknowledged are limited in total (``max_in_flight``) and per
source unit (half of it by default, :func:`per_unit_limit`): a unit at its share gets 429 with
``Retry-After`` while the others are still served. Credentials come from ``HUB_INGEST__TOKENS`` and, when
given, a tokens file re-read when it changes (:class:`connectors.gateway.auth.Authenticator`). A request
aiohttp cannot parse (a NUL byte in a header) is logged as one WARNING line, without a traceback
(:class:`QuietMalformedRequests`). The guide for agencies' developers is ``docs/ingest.md``.

Nothing here logs or returns input values: log lines carry line numbers, event ids, field paths and
status codes; error messages come from the contract's validation (which hides input) and are scrubbed of
anything shaped like a personnummer as a second line of defence.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sys
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Protocol, Union, get_args, get_origin

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import BaseModel, ValidationError

from connectors.base import (
    ProducerLike,
    close_producer,
    event_key,
    make_producer,
    start_producer,
)
from connectors.gateway.auth import Authenticator, AuthResult
from connectors.gateway.openapi import openapi_document
from connectors.gateway.parsing import BodyError, Line, split_body
from hub.contract.base import model_for_event_type
from hub.contract.envelope import Event
from hub.contract.errors import ContractError
from hub.contract.fields import municipality_codes
from hub.contract.serde import Serde
from hub.identity import GATEWAY as GATEWAY_PRINCIPAL
from hub.identity import HEADER_CREDENTIAL, HEADER_SOURCE_UNIT, SourceUnit
from hub.kafka import clients
from hub.kafka.clients import KafkaAccess, KafkaAccessError
from hub.kafka.metadata import cluster_answers
from hub.logsafety import protect_kafka_logs
from hub.pseudonym import Pseudonymiser
from hub.serving import prometheus_response, serve_until_stopped
from hub.settings import HubSettings
from hub.topics import Topics

log = logging.getLogger(__name__)

JSON_TYPES = frozenset({"application/json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson"})
_PNR_LIKE = re.compile(r"\d{6}(?:\d{2})?[-+]?\d{4}")
_MAX_ERRORS = 20
PER_UNIT_SHARE = 2
"""By default a source unit may have at most ``max_in_flight // PER_UNIT_SHARE`` events awaiting
acknowledgement: one sender at its limit leaves (at least) half of the gateway to the others."""


Headers = list[tuple[str, bytes]]


class GatewayProducer(ProducerLike, Protocol):
    """A :class:`connectors.base.ProducerLike` that also takes Kafka headers (as ``AIOKafkaProducer`` does)."""

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, headers: Headers | None = None
    ) -> Any: ...


def record_headers(unit: SourceUnit, credential: str) -> Headers:
    """The headers saying who sent a record: ``hub-source-unit`` and ``hub-credential`` (UTF-8 bytes)."""
    return [(HEADER_SOURCE_UNIT, unit.name.encode()), (HEADER_CREDENTIAL, credential.encode())]


def named_municipalities(event: Event) -> list[tuple[str, str]]:
    """Every (field path, code) of an event that names a municipality: ``envelope.municipality_code`` and
    any payload field ending in ``municipality_code``."""
    named = [("envelope.municipality_code", event.envelope.municipality_code)]
    payload = getattr(event, "payload", None)
    if isinstance(payload, BaseModel):
        for name, value in payload:
            if name.endswith("municipality_code") and isinstance(value, str):
                named.append((f"payload.{name}", value))
    return named


def foreign_municipality(unit: SourceUnit, event: Event) -> tuple[str, str] | None:
    """For a municipality's unit (``kommun-1381``): the first field naming another municipality, as
    (path, code); None when every field names the unit's own, or the unit is not a municipality's."""
    if unit.municipality is None:
        return None
    for path, code in named_municipalities(event):
        if code != unit.municipality:
            return path, code
    return None


@cache
def number_fields(model: type[Event]) -> frozenset[str]:
    """The payload fields of an event model typed ``float`` (``leader_hours``, ``share_feeling_unsafe``)."""
    payload = model.model_fields.get("payload")
    payload_model = payload.annotation if payload is not None else None
    if not (isinstance(payload_model, type) and issubclass(payload_model, BaseModel)):
        return frozenset()
    return frozenset(name for name, f in payload_model.model_fields.items() if float in _plain_types(f.annotation))


def _plain_types(annotation: Any) -> set[Any]:
    """The types an annotation admits, through ``Annotated`` and unions (``Annotated[float, ...] | None``
    → ``{float, NoneType}``)."""
    if get_origin(annotation) is Annotated:
        return _plain_types(get_args(annotation)[0])
    args = get_args(annotation)
    if args and get_origin(annotation) in (Union, UnionType):
        return set().union(*(_plain_types(a) for a in args))
    return {annotation}


def not_a_number(model: type[Event], data: dict[str, Any]) -> str | None:
    """The first payload field typed ``float`` whose JSON value is not a number (``true``, ``"1.5"``), or None.

    The contract's float fields still take what pydantic coerces (a boolean, numeric text); the gateway
    refuses that as it refuses any other wrong JSON type, instead of storing ``true`` as 1.0."""
    payload = data.get("payload")
    if not isinstance(payload, dict):
        return None
    for name in sorted(number_fields(model)):
        value = payload.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return name
    return None


def scrub(text: str) -> str:
    """Replace anything shaped like a personnummer (valid or not) by ``<redacted>``."""
    return _PNR_LIKE.sub("<redacted>", text)


@dataclass
class Rejection:
    line: int
    status: int
    errors: list[dict[str, str | None]]

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "status": self.status, "errors": self.errors}


@dataclass
class Accepted:
    line: int
    event: Event
    topic: str
    key: bytes
    value: bytes
    headers: Headers
    spoofed: bool = False


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter("hub_ingest_requests", "HTTP requests by path and status",
                                ["path", "status"], registry=r)
        self.accepted = Counter("hub_ingest_events_accepted", "Events acknowledged by the broker (202)",
                                ["agency", "unit"], registry=r)
        self.rejected = Counter("hub_ingest_events_rejected", "Events not accepted, by status",
                                ["agency", "unit", "status"], registry=r)
        self.corrected = Counter("hub_ingest_source_agency_corrected",
                                 "Events whose envelope.source_agency was overwritten by the token's agency",
                                 ["agency", "unit"], registry=r)
        self.latency = Histogram(
            "hub_ingest_produce_latency_seconds", "From send to broker acknowledgement, per event",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )  # fmt: skip
        self.in_flight = Gauge("hub_ingest_in_flight", "Events sent and not yet acknowledged", registry=r)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _unauthorized(result: AuthResult) -> web.Response:
    """401 with a bearer challenge saying why (missing, invalid or expired token)."""
    challenge = 'Bearer realm="samverkan-hub"'
    if result.status != "missing":
        challenge += ', error="invalid_token"'
    message = {"missing": "bearer token required", "invalid": "invalid token",
               "expired": "token expired"}.get(result.status, "invalid token")
    return _error(401, message, {"WWW-Authenticate": challenge})


class QuietMalformedRequests(logging.Filter):
    """aiohttp logs every request it cannot parse (a NUL byte in a header, a bad request line) at ERROR with
    a traceback. That is the client's mistake, not the gateway's: this filter on ``aiohttp.server`` turns
    each into one WARNING line naming the kind of problem — without the traceback and without the
    request's bytes (aiohttp's message quotes them); what aiohttp logs lower (a first request that is not
    HTTP at all, at DEBUG) keeps its level. Other records pass unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            lines = str(exc.message or "").strip().splitlines()
            what = scrub(lines[0].strip().rstrip(":"))[:80] if lines else type(exc).__name__
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            if record.levelno > logging.WARNING:  # never raised: aiohttp logs non-HTTP traffic at DEBUG
                record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
            record.msg = "malformed HTTP request from %s refused with %s: %s (%s)"
            record.args = (remote, exc.code, what, type(exc).__name__)
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def quiet_malformed_requests() -> None:
    """Install :class:`QuietMalformedRequests` on aiohttp's server logger (once per process)."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, QuietMalformedRequests) for f in logger.filters):
        logger.addFilter(QuietMalformedRequests())


def per_unit_limit(max_in_flight: int, configured: int | None = None) -> int:
    """Events one source unit may have awaiting acknowledgement: ``configured`` when set, else
    ``max_in_flight // PER_UNIT_SHARE`` (at least 1, so a small gateway still serves everyone)."""
    if configured is not None:
        return configured
    return max(1, max_in_flight // PER_UNIT_SHARE)


class Gateway:
    """The state behind one application: producer, authenticator, limits, metrics.

    ``tokens_file`` (default: the setting ``ingest.tokens_file`` once it exists) is a JSON file of more
    token entries, re-read when it changes; ``max_in_flight_per_unit`` (default: the setting
    ``ingest.max_in_flight_per_unit`` once it exists, else half of ``max_in_flight``) caps each source
    unit's events awaiting acknowledgement; ``tokens_check_interval_s``: how often the file is looked at.

    Raises ValueError for a bad ``HUB_INGEST__TOKENS`` or tokens file (a key that is not a served source
    unit, a malformed entry, one token for two units, a missing file) and, when it must make its own
    producer, KafkaAccessError when this process has no credentials for the principal ``gateway``: both at
    start, before anything listens.
    """

    def __init__(
        self, settings: HubSettings, producer: GatewayProducer | None, registry: CollectorRegistry | None,
        *, tokens_file: Path | None = None, max_in_flight_per_unit: int | None = None,
        tokens_check_interval_s: float = 1.0,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.ingest = settings.ingest
        # Settings fields to come (hub/settings.py): read them when they exist, so nothing here changes then.
        tokens_file = tokens_file if tokens_file is not None else self.ingest.tokens_file
        self.auth = Authenticator(settings.ingest.tokens, settings.municipality_codes,
                                  tokens_file=Path(tokens_file) if tokens_file is not None else None,
                                  check_interval_s=tokens_check_interval_s)
        self.auth.warn_without_expiry()
        self.max_in_flight_per_unit = per_unit_limit(
            self.ingest.max_in_flight,
            max_in_flight_per_unit if max_in_flight_per_unit is not None
            else self.ingest.max_in_flight_per_unit,
        )
        self.in_flight_by_unit: Tally[SourceUnit] = Tally()
        self._openapi: asyncio.Task[dict[str, Any]] | None = None
        self.serde = Serde()
        self.pseudonymiser = Pseudonymiser(settings)
        self.topics = Topics(settings.topic_namespace)
        self.codes = frozenset([*settings.municipality_codes, settings.county_code])
        self.metrics = Metrics(registry or CollectorRegistry())
        self.bootstrap = clients.bootstrap_of(settings)
        self.producer: GatewayProducer | None = producer
        self.owns_producer = producer is None
        self.access: KafkaAccess | None = (
            clients.access_for(settings, GATEWAY_PRINCIPAL) if self.owns_producer else None
        )
        self.in_flight = 0
        self._starter: asyncio.Task[None] | None = None
        self._ready_cache: tuple[float, bool] = (0.0, False)

    # -- lifecycle -----------------------------------------------------------------------------------

    async def on_startup(self, app: web.Application) -> None:
        if self.owns_producer:
            self._starter = asyncio.create_task(self._start_producer())

    async def on_cleanup(self, app: web.Application) -> None:
        if self._starter is not None and not self._starter.done():
            self._starter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starter
        if self.owns_producer and self.producer is not None:
            producer, self.producer = self.producer, None
            if not await close_producer(producer, self.ingest.ack_timeout_s):
                log.warning("ingest: Kafka did not take every pending event before shutdown (they were "
                            "answered 503 and will be re-sent by the agencies)")

    async def _start_producer(self) -> None:
        async def sleep(delay: float) -> bool:
            await asyncio.sleep(delay)
            return False

        access = self.kafka_access()
        if access is None:  # not reached: an owned producer's access is made at start
            raise KafkaAccessError(f"no Kafka credentials for principal {GATEWAY_PRINCIPAL!r}")
        self.producer = await start_producer(
            lambda: make_producer(access), what=f"ingest (Kafka {self.bootstrap} as {access.principal})",
            initial_s=0.5, max_s=15.0, pause=sleep,
        )  # fmt: skip
        log.info("ingest: producer connected to %s as %s", self.bootstrap, access.principal)

    def kafka_access(self) -> KafkaAccess | None:
        """How this gateway connects (as ``gateway``); None when no credentials exist (injected producer)."""
        if self.access is None:
            with contextlib.suppress(KafkaAccessError):
                self.access = clients.access_for(self.settings, GATEWAY_PRINCIPAL)
        return self.access

    async def broker_reachable(self) -> bool:
        at, ok = self._ready_cache
        if time.monotonic() - at < 2.0:
            return ok
        access = self.kafka_access()
        ok = access is not None and await cluster_answers(access, timeout_s=2.0)
        self._ready_cache = (time.monotonic(), ok)
        return ok

    # -- middleware --------------------------------------------------------------------------------------

    @web.middleware
    async def count_requests(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        route = request.match_info.route.resource
        path = route.canonical if route is not None else "other"
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            self.metrics.requests.labels(path, str(exc.status)).inc()
            raise
        except Exception:
            self.metrics.requests.labels(path, "500").inc()
            raise
        self.metrics.requests.labels(path, str(response.status)).inc()
        return response

    # -- simple endpoints -----------------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(self, request: web.Request) -> web.Response:
        started = self.producer is not None
        reachable = await self.broker_reachable() if started else False
        body = {"ready": started and reachable, "producer_started": started, "broker_reachable": reachable}
        return web.json_response(body, status=200 if body["ready"] else 503)

    async def metrics_endpoint(self, request: web.Request) -> web.Response:
        return prometheus_response(self.metrics.registry)

    async def openapi(self, request: web.Request) -> web.Response:
        if self._openapi is None:  # generated once per process, beside the loop: it takes a second or so
            codes = [*self.settings.municipality_codes, self.settings.county_code]
            self._openapi = asyncio.create_task(asyncio.to_thread(openapi_document, self.ingest, codes))
        return web.json_response(await asyncio.shield(self._openapi))

    # -- POST /v1/events ------------------------------------------------------------------------------------

    async def post_events(self, request: web.Request) -> web.Response:
        result = self.auth.authenticate(request.headers.get("Authorization"))
        if result.status != "ok" or result.unit is None or result.credential is None:
            return _unauthorized(result)
        unit, agency = result.unit, result.unit.agency
        headers_out = record_headers(unit, result.credential)
        retry = {"Retry-After": str(self.ingest.retry_after_s)}
        if self.producer is None:
            return _error(503, "not connected to Kafka yet", retry)
        if self.in_flight >= self.ingest.max_in_flight:
            return _error(429, "too many events awaiting acknowledgement; retry later", retry)
        if self.in_flight_by_unit[unit] >= self.max_in_flight_per_unit:
            log.debug("ingest %s: at its limit of %d events awaiting acknowledgement -> 429",
                      unit, self.max_in_flight_per_unit)
            return _error(429, f"{unit} has {self.max_in_flight_per_unit} or more events awaiting "
                               "acknowledgement; retry later", retry)
        ctype = request.content_type
        if ctype not in JSON_TYPES | NDJSON_TYPES:
            return _error(415, "Content-Type must be application/json or application/x-ndjson")
        limit = self.ingest.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return _error(413, f"body larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                return _error(413, f"body larger than {limit} bytes")
            chunks.append(chunk)
        try:
            lines = split_body(b"".join(chunks), ctype in NDJSON_TYPES,
                               max_lines=self.ingest.max_lines, max_depth=self.ingest.max_depth)
        except BodyError as exc:
            return _error(exc.status, exc.message)

        rejected: list[Rejection] = []
        ready: list[Accepted] = []
        with municipality_codes(self.codes):
            for line in lines:
                outcome = self._check(unit, line, headers_out)
                if isinstance(outcome, Rejection):
                    rejected.append(outcome)
                else:
                    ready.append(outcome)

        acked, unacked, too_large = await self._produce(unit, ready) if ready else ([], [], [])
        for item in unacked:
            rejected.append(Rejection(item.line, 503, [{"path": None, "message":
                                                        "not acknowledged by Kafka in time; retry"}]))
        for item in too_large:  # a retry can never succeed: refuse it, as an oversized body is refused
            rejected.append(Rejection(item.line, 413, [{"path": None, "message":
                                                        "event larger than Kafka accepts; shorten its text"}]))
        rejected.sort(key=lambda r: r.line)
        accepted = [{"line": a.line, "event_id": str(a.event.envelope.event_id)} for a in acked]
        if acked:
            self.metrics.accepted.labels(agency, unit.name).inc(len(acked))
        for r in rejected:
            self.metrics.rejected.labels(agency, unit.name, str(r.status)).inc()
            path = r.errors[0]["path"] if r.errors else None
            log.info("ingest %s: line %d rejected with %d (field %s)", unit, r.line, r.status, path)
        for a in acked:
            log.debug("ingest %s: line %d event %s accepted", unit, a.line, a.event.envelope.event_id)

        headers: dict[str, str] = {}
        if unacked:
            status = 503
            headers = retry
        elif acked:
            status = 202
        else:
            statuses = {r.status for r in rejected}
            status = statuses.pop() if len(statuses) == 1 else 422
        log.info("ingest %s (credential %s): %d lines, %d accepted, %d rejected -> %d",
                 unit, result.credential, len(lines), len(acked), len(rejected), status)
        body = {"accepted": accepted, "rejected": [r.as_dict() for r in rejected]}
        return web.json_response(body, status=status, headers=headers)

    def _check(self, unit: SourceUnit, line: Line, headers: Headers) -> Accepted | Rejection:
        """Validate one document from ``unit``: of its agency's event types (403), valid under the contract
        and encodable (422), then for its own municipality when it is a municipality's (403). The envelope's
        source_agency becomes the unit's agency."""
        agency = unit.agency
        if line.status is not None:  # not JSON at all (a JSON null is data: refused below as not an object)
            return Rejection(line.number, line.status, [{"path": None, "message": line.error or "malformed JSON"}])
        data = line.data
        if not isinstance(data, dict):
            return Rejection(line.number, 422, [{"path": None, "message":
                                                 "an event is a JSON object with envelope and payload"}])
        envelope = data.get("envelope")
        if not isinstance(envelope, dict):
            return Rejection(line.number, 422, [{"path": "envelope", "message": "envelope object required"}])
        event_type = envelope.get("event_type")
        if not isinstance(event_type, str):
            return Rejection(line.number, 422, [{"path": "envelope.event_type",
                                                 "message": "event_type string required"}])
        if not event_type.startswith(f"{agency}."):
            return Rejection(line.number, 403, [{"path": "envelope.event_type", "message":
                                                 f"credential of {unit} may not publish this event type "
                                                 f"(only {agency}.*)"}])
        model = model_for_event_type(event_type)
        if model is None or not issubclass(model, Event):
            return Rejection(line.number, 422, [{"path": "envelope.event_type", "message":
                                                 "unknown event type"}])
        wrong = not_a_number(model, data)
        if wrong is not None:
            return Rejection(line.number, 422, [{"path": f"payload.{wrong}", "message":
                                                 "Input should be a JSON number"}])
        # Whatever envelope.source_agency says (any JSON value, or nothing), the unit's agency is the source;
        # a claim of another one is corrected and counted, a missing one just filled in.
        spoofed = "source_agency" in envelope and envelope["source_agency"] != agency
        if envelope.get("source_agency") != agency:
            data = {**data, "envelope": {**envelope, "source_agency": agency}}
        try:
            event = model.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors(include_input=False, include_url=False, include_context=False)
            return Rejection(line.number, 422, [
                {"path": scrub(".".join(str(p) for p in err["loc"])) or None, "message": scrub(err["msg"])}
                for err in errors[:_MAX_ERRORS]
            ])  # fmt: skip
        except Exception as exc:  # a validator raising something else is still bad input
            return Rejection(line.number, 422, [{"path": None, "message": f"invalid ({type(exc).__name__})"}])
        if not isinstance(event, Event):
            return Rejection(line.number, 422, [{"path": None, "message": "not an agency event"}])
        try:
            value = self.serde.encode(event)
        except ContractError as exc:
            return Rejection(line.number, 422, [{"path": scrub(exc.path) if exc.path else None,
                                                 "message": scrub(exc.message)}])
        # Last: an event refused here is otherwise acceptable (a bad one gets its 400/422 first).
        foreign = foreign_municipality(unit, event)
        if foreign is not None:
            path, code = foreign
            return Rejection(line.number, 403, [{"path": path, "message":
                                                 f"credential of {unit} may not publish for municipality {code}"}])
        if spoofed:
            self.metrics.corrected.labels(agency, unit.name).inc()
            log.warning("ingest %s: line %d event %s claimed another source_agency; corrected",
                        unit, line.number, event.envelope.event_id)
        return Accepted(line.number, event, self.topics.unit(unit), event_key(event, self.pseudonymiser),
                        value, headers, spoofed)

    async def _produce(
        self, unit: SourceUnit, items: list[Accepted]
    ) -> tuple[list[Accepted], list[Accepted], list[Accepted]]:
        """Send in order, wait for acknowledgements until ``ack_timeout_s``: (acked, not acked, too large).

        An event larger than Kafka takes (the producer's or the broker's limit) is "too large": answered
        413, never "retry", and the events after it are still sent.
        """
        producer = self.producer
        if producer is None:
            return [], list(items), []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ingest.ack_timeout_s
        self._add_in_flight(unit, len(items))
        futures: list[asyncio.Future[Any] | None] = []  # None: refused by the producer as too large
        started = time.perf_counter()
        try:
            async with asyncio.timeout_at(deadline):
                for item in items:
                    try:
                        futures.append(await producer.send(item.topic, value=item.value, key=item.key,
                                                           headers=item.headers))
                    except MessageSizeTooLargeError:
                        futures.append(None)
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning("ingest: %d of %d events could not be sent (%s)",
                        len(items) - len(futures), len(items), type(exc).__name__)
        sent = [f for f in futures if f is not None]
        self._add_in_flight(unit, -(len(items) - len(sent)))

        def done(fut: asyncio.Future[Any]) -> None:
            self._add_in_flight(unit, -1)
            if not fut.cancelled() and fut.exception() is None:
                self.metrics.latency.observe(time.perf_counter() - started)

        for sent_future in sent:
            sent_future.add_done_callback(done)
        if sent:
            await asyncio.wait(sent, timeout=max(0.0, deadline - loop.time()))
        acked: list[Accepted] = []
        unacked: list[Accepted] = []
        too_large: list[Accepted] = []
        for i, item in enumerate(items):
            future = futures[i] if i < len(futures) else None
            if i < len(futures) and future is None:
                too_large.append(item)
            elif future is None or not future.done() or future.cancelled():
                unacked.append(item)
            elif future.exception() is None:
                acked.append(item)
            else:  # the broker refused it: too large (its own limit) or not now
                (too_large if isinstance(future.exception(), MessageSizeTooLargeError) else unacked).append(item)
        return acked, unacked, too_large

    def _add_in_flight(self, unit: SourceUnit, n: int) -> None:
        self.in_flight += n
        self.in_flight_by_unit[unit] += n
        if self.in_flight_by_unit[unit] <= 0:
            del self.in_flight_by_unit[unit]
        self.metrics.in_flight.set(self.in_flight)


GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)


def create_app(
    settings: HubSettings,
    producer: GatewayProducer | None = None,
    *,
    registry: CollectorRegistry | None = None,
    tokens_file: Path | None = None,
    max_in_flight_per_unit: int | None = None,
    tokens_check_interval_s: float = 1.0,
) -> web.Application:
    """The ingest application.

    Without ``producer`` the application starts its own idempotent ``acks="all"`` producer as the principal
    ``gateway`` (retrying until Kafka answers) and stops it on cleanup; a given producer is used as is
    (started and stopped by the caller; its ``send`` must take ``headers``). Metrics go to ``registry``
    (a fresh one by default). ``tokens_file``, ``max_in_flight_per_unit`` and ``tokens_check_interval_s``
    go to :class:`Gateway`. A bad configuration raises ValueError or KafkaAccessError (see :class:`Gateway`).
    """
    protect_kafka_logs()
    quiet_malformed_requests()
    gateway = Gateway(settings, producer, registry, tokens_file=tokens_file,
                      max_in_flight_per_unit=max_in_flight_per_unit, tokens_check_interval_s=tokens_check_interval_s)
    # The body limit is enforced by the handler (413 as JSON); aiohttp's own limit is only a backstop.
    app = web.Application(middlewares=[gateway.count_requests],
                          client_max_size=settings.ingest.max_body_bytes + 1024)
    app[GATEWAY] = gateway
    app.on_startup.append(gateway.on_startup)
    app.on_cleanup.append(gateway.on_cleanup)
    app.router.add_post("/v1/events", gateway.post_events)
    app.router.add_get("/health", gateway.health)
    app.router.add_get("/ready", gateway.ready)
    app.router.add_get("/metrics", gateway.metrics_endpoint)
    app.router.add_get("/openapi.json", gateway.openapi)
    return app


async def serve(
    settings: HubSettings,
    *,
    host: str | None = None,
    port: int | None = None,
    stop: asyncio.Event | None = None,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Run the gateway until SIGTERM/SIGINT (or ``stop`` is set), then shut down gracefully.

    Graceful: stop accepting, let running requests finish (their events acknowledged), flush and stop
    the producer.
    """
    await _serve_app(create_app(settings), settings, host=host, port=port, stop=stop, on_listening=on_listening)


async def _serve_app(
    app: web.Application, settings: HubSettings, *, host: str | None, port: int | None,
    stop: asyncio.Event | None, on_listening: Callable[[str], None] | None,
) -> None:  # fmt: skip
    access = app[GATEWAY].kafka_access()
    detail = f"Kafka {clients.bootstrap_of(settings)}" + (f" as {access.principal}" if access else "")
    await serve_until_stopped(
        app, host or settings.ingest.host, settings.ingest.port if port is None else port,
        name="ingest gateway", shutdown_timeout=settings.ingest.ack_timeout_s + 5, stop=stop,
        on_listening=on_listening, detail=detail,
    )  # fmt: skip


def run(settings: HubSettings, *, host: str | None = None, port: int | None = None) -> int:
    """Blocking entry point for ``hub ingest``: serve until a signal; exit code 0.

    A configuration error (``HUB_INGEST__TOKENS``, missing Kafka credentials) is one line on stderr and
    exit code 2, before anything listens.
    """
    try:
        app = create_app(settings)
    except (ValueError, KafkaAccessError) as exc:
        print(f"hub ingest: {exc}", file=sys.stderr, flush=True)
        return 2
    asyncio.run(_serve_app(app, settings, host=host, port=port, stop=None,
                           on_listening=lambda address: print(json.dumps({"listening": address}), flush=True)))
    return 0
