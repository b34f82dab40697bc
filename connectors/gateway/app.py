"""The ingest gateway's aiohttp application: authentication, validation, producing, acknowledgement.

An event is acknowledged (listed under ``accepted`` in a 202) only after the broker acknowledged it
(``acks="all"``). Nothing here logs or returns input values: log lines carry line numbers, event ids,
field paths and status codes; error messages come from the contract's validation (which hides input)
and are scrubbed of anything shaped like a personnummer as a second line of defence.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import ValidationError

from connectors.base import (
    ProducerLike,
    close_producer,
    event_key,
    make_producer,
    start_producer,
)
from connectors.gateway.auth import Authenticator
from connectors.gateway.openapi import openapi_document
from connectors.gateway.parsing import BodyError, Line, split_body
from hub.contract.base import model_for_event_type
from hub.contract.envelope import Event
from hub.contract.errors import ContractError
from hub.contract.fields import municipality_codes
from hub.contract.serde import Serde
from hub.kafka.local import bootstrap_address
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
    spoofed: bool = False


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter("hub_ingest_requests", "HTTP requests by path and status",
                                ["path", "status"], registry=r)
        self.accepted = Counter("hub_ingest_events_accepted", "Events acknowledged by the broker (202)",
                                ["agency"], registry=r)
        self.rejected = Counter("hub_ingest_events_rejected", "Events not accepted, by status",
                                ["agency", "status"], registry=r)
        self.corrected = Counter("hub_ingest_source_agency_corrected",
                                 "Events whose envelope.source_agency was overwritten by the token's agency",
                                 ["agency"], registry=r)
        self.latency = Histogram(
            "hub_ingest_produce_latency_seconds", "From send to broker acknowledgement, per event",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )  # fmt: skip
        self.in_flight = Gauge("hub_ingest_in_flight", "Events sent and not yet acknowledged", registry=r)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


class Gateway:
    """The state behind one application: producer, authenticator, limits, metrics."""

    def __init__(
        self, settings: HubSettings, producer: ProducerLike | None, registry: CollectorRegistry | None
    ) -> None:
        self.settings = settings
        self.ingest = settings.ingest
        self.auth = Authenticator(settings.ingest.tokens)
        self.serde = Serde()
        self.pseudonymiser = Pseudonymiser(settings)
        self.topics = Topics(settings.topic_namespace)
        self.codes = frozenset([*settings.municipality_codes, settings.county_code])
        self.metrics = Metrics(registry or CollectorRegistry())
        self.bootstrap = bootstrap_address(settings)
        self.producer: ProducerLike | None = producer
        self.owns_producer = producer is None
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

        self.producer = await start_producer(
            lambda: make_producer(self.bootstrap), what=f"ingest (Kafka {self.bootstrap})",
            initial_s=0.5, max_s=15.0, pause=sleep,
        )  # fmt: skip
        log.info("ingest: producer connected to %s", self.bootstrap)

    async def broker_reachable(self) -> bool:
        at, ok = self._ready_cache
        if time.monotonic() - at < 2.0:
            return ok
        ok = await cluster_answers(self.bootstrap, timeout_s=2.0)
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
        return web.json_response(openapi_document(self.ingest))

    # -- POST /v1/events ------------------------------------------------------------------------------------

    async def post_events(self, request: web.Request) -> web.Response:
        result = self.auth.authenticate(request.headers.get("Authorization"))
        if result.status != "ok" or result.agency is None:
            challenge = 'Bearer realm="samverkan-hub"'
            if result.status != "missing":
                challenge += ', error="invalid_token"'
            message = {"missing": "bearer token required", "invalid": "invalid token",
                       "expired": "token expired"}.get(result.status, "invalid token")
            return _error(401, message, {"WWW-Authenticate": challenge})
        agency = result.agency
        retry = {"Retry-After": str(self.ingest.retry_after_s)}
        if self.producer is None:
            return _error(503, "not connected to Kafka yet", retry)
        if self.in_flight >= self.ingest.max_in_flight:
            return _error(429, "too many events awaiting acknowledgement; retry later", retry)
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
                outcome = self._check(agency, line)
                if isinstance(outcome, Rejection):
                    rejected.append(outcome)
                else:
                    ready.append(outcome)

        acked, unacked, too_large = await self._produce(ready) if ready else ([], [], [])
        for item in unacked:
            rejected.append(Rejection(item.line, 503, [{"path": None, "message":
                                                        "not acknowledged by Kafka in time; retry"}]))
        for item in too_large:  # a retry can never succeed: refuse it, as an oversized body is refused
            rejected.append(Rejection(item.line, 413, [{"path": None, "message":
                                                        "event larger than Kafka accepts; shorten its text"}]))
        rejected.sort(key=lambda r: r.line)
        accepted = [{"line": a.line, "event_id": str(a.event.envelope.event_id)} for a in acked]
        if acked:
            self.metrics.accepted.labels(agency).inc(len(acked))
        for r in rejected:
            self.metrics.rejected.labels(agency, str(r.status)).inc()
            path = r.errors[0]["path"] if r.errors else None
            log.info("ingest %s: line %d rejected with %d (field %s)", agency, r.line, r.status, path)
        for a in acked:
            log.debug("ingest %s: line %d event %s accepted", agency, a.line, a.event.envelope.event_id)

        headers: dict[str, str] = {}
        if unacked:
            status = 503
            headers = retry
        elif acked:
            status = 202
        else:
            statuses = {r.status for r in rejected}
            status = statuses.pop() if len(statuses) == 1 else 422
        log.info("ingest %s: %d lines, %d accepted, %d rejected -> %d",
                 agency, len(lines), len(acked), len(rejected), status)
        body = {"accepted": accepted, "rejected": [r.as_dict() for r in rejected]}
        return web.json_response(body, status=status, headers=headers)

    def _check(self, agency: str, line: Line) -> Accepted | Rejection:
        """Validate one document for ``agency``; the envelope's source_agency becomes ``agency``."""
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
                                                 f"agency {agency} may not publish this event type"}])
        model = model_for_event_type(event_type)
        if model is None or not issubclass(model, Event):
            return Rejection(line.number, 422, [{"path": "envelope.event_type", "message":
                                                 "unknown event type"}])
        spoofed = envelope.get("source_agency") != agency
        if spoofed:
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
        if spoofed:
            self.metrics.corrected.labels(agency).inc()
            log.warning("ingest %s: line %d event %s claimed another source_agency; corrected",
                        agency, line.number, event.envelope.event_id)
        return Accepted(line.number, event, self.topics.agency(agency), event_key(event, self.pseudonymiser),
                        value, spoofed)

    async def _produce(self, items: list[Accepted]) -> tuple[list[Accepted], list[Accepted], list[Accepted]]:
        """Send in order, wait for acknowledgements until ``ack_timeout_s``: (acked, not acked, too large).

        An event larger than Kafka takes (the producer's or the broker's limit) is "too large": answered
        413, never "retry", and the events after it are still sent.
        """
        producer = self.producer
        if producer is None:
            return [], list(items), []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ingest.ack_timeout_s
        self._add_in_flight(len(items))
        futures: list[asyncio.Future[Any] | None] = []  # None: refused by the producer as too large
        started = time.perf_counter()
        try:
            async with asyncio.timeout_at(deadline):
                for item in items:
                    try:
                        futures.append(await producer.send(item.topic, value=item.value, key=item.key))
                    except MessageSizeTooLargeError:
                        futures.append(None)
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning("ingest: %d of %d events could not be sent (%s)",
                        len(items) - len(futures), len(items), type(exc).__name__)
        sent = [f for f in futures if f is not None]
        self._add_in_flight(-(len(items) - len(sent)))

        def done(fut: asyncio.Future[Any]) -> None:
            self._add_in_flight(-1)
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

    def _add_in_flight(self, n: int) -> None:
        self.in_flight += n
        self.metrics.in_flight.set(self.in_flight)


GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)


def create_app(
    settings: HubSettings,
    producer: ProducerLike | None = None,
    *,
    registry: CollectorRegistry | None = None,
) -> web.Application:
    """The ingest application.

    Without ``producer`` the application starts its own idempotent ``acks="all"`` producer (retrying
    until Kafka answers) and stops it on cleanup; a given producer is used as is (started and stopped
    by the caller). Metrics go to ``registry`` (a fresh one by default).
    """
    protect_kafka_logs()
    gateway = Gateway(settings, producer, registry)
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
    await serve_until_stopped(
        create_app(settings), host or settings.ingest.host, settings.ingest.port if port is None else port,
        name="ingest gateway", shutdown_timeout=settings.ingest.ack_timeout_s + 5, stop=stop,
        on_listening=on_listening, detail=f"Kafka {bootstrap_address(settings)}",
    )  # fmt: skip


def run(settings: HubSettings, *, host: str | None = None, port: int | None = None) -> int:
    """Blocking entry point for ``hub ingest``: serve until a signal; exit code 0."""
    asyncio.run(serve(settings, host=host, port=port,
                      on_listening=lambda address: print(json.dumps({"listening": address}), flush=True)))
    return 0
