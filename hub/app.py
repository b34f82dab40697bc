"""The hub worker: the one faust App, its topics, tables and agents.

Reading order: records and topics → the app → tables → agents → web views. The per-message logic is in
:mod:`hub.pipeline`; this module only connects it to Kafka.

Delivery guarantee: **at-least-once with deduplication.** faust commits a source offset only after the
producer has flushed everything produced for it, so no acknowledged event is lost. A re-sent event (same
event id, another offset, within ``dedup_window_hours``) is dropped; after a worker crash the messages
since the last commit are processed again, so a receiver may see a delivery twice — with the same
``event_id``, by which it deduplicates.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub import logsafety, metrics
from hub.audit import AuditChain
from hub.contract.outputs import AuditRecord
from hub.contract.serde import Serde
from hub.flows.lagesbild import WaveRule
from hub.flows.routing import Router
from hub.identity import HEADER_CREDENTIAL
from hub.kafka import clients
from hub.kafka.admin import last_record, read_range
from hub.kafka.clients import KafkaAccess
from hub.lagesbild_stage import LagesbildStage
from hub.lagesbild_store import LagesbildStore
from hub.pipeline import Message, Pipeline
from hub.pseudonym import Pseudonymiser
from hub.rules.model import load_rules
from hub.settings import DEV_SECRET, HubSettings
from hub.topics import Topics

log = logging.getLogger(__name__)

APP_ID = "samverkan-hub"


class IdempotentProducer(faust_aiokafka.Producer):
    """faust's producer with idempotence on outside transactions too: without it a produce request whose
    response was lost (a broker restart under load) is retried and written twice — duplicate deliveries and
    a false tamper alarm from ``hub audit verify`` with no worker crash (found by tests/faults)."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


def credential_of(headers: Any) -> str | None:
    """The ``hub-credential`` header the gateway sets (which credential sent the event), if any."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    for name, value in items:
        if name == HEADER_CREDENTIAL and isinstance(value, bytes | bytearray):
            return bytes(value).decode("utf-8", "replace")[:200]
    return None


def create_app(settings: HubSettings, kafka: KafkaAccess) -> faust.App:
    """Build the worker app: agency topics in; deliveries, audit and dead letters out. Connects as ``kafka``'s
    principal (``worker``) over TLS + SCRAM."""
    n = settings.topic_partitions
    topics = Topics(settings.topic_namespace)
    app = faust.App(
        settings.worker.app_id,
        broker=[f"kafka://{b}" for b in kafka.bootstrap.split(",")],
        broker_credentials=clients.faust_credentials(kafka),
        store="memory://",
        datadir=str(settings.state_dir / "worker"),
        processing_guarantee="at_least_once",
        topic_partitions=n,
        topic_replication_factor=settings.worker.replication_factor,
        producer_acks=-1,
        # Let outputs of many messages share produce requests (the per-message sends dominated a profile).
        producer_linger=0.005,
        producer_max_batch_size=262144,
        web_host=settings.worker.web_host,
        web_port=settings.worker.web_port,
        web_bind=settings.worker.web_host,
        web_in_thread=False,
        # A crashed worker's partitions move to the others after this long without heartbeats.
        broker_session_timeout=settings.worker.session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.worker.session_timeout_s / 5),
        # Static membership: a restarted worker with the same instance id takes its partitions back
        # without a rebalance of the whole group.
        consumer_group_instance_id=settings.worker.instance_id,
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=8192,
    )
    app.transport.Producer = IdempotentProducer  # type: ignore[misc]  # before the producer is created
    raw = {"key_serializer": "raw", "value_serializer": "raw"}

    # -- topics --------------------------------------------------------------------------------------
    source_names = topics.sources(settings.municipality_codes)
    agency_topics = app.topic(*source_names, **raw)  # type: ignore[arg-type]

    # -- tables --------------------------------------------------------------------------------------
    seen = app.Table("hub-seen", default=None, partitions=n)
    consents = app.Table(
        "hub-consent", default=None, partitions=n,
        changelog_topic=app.topic(topics.consent, partitions=n, compacting=True, **raw),  # type: ignore[arg-type]
    )  # fmt: skip

    # -- the pipeline --------------------------------------------------------------------------------
    if settings.secret_key.get_secret_value() == DEV_SECRET:  # only possible with HUB_ENV=dev (hub.secrets)
        log.warning("HUB_SECRET_KEY is the development default; set a real secret in production")
    serde = Serde()
    chain = AuditChain()
    pipeline = Pipeline(
        Router(load_rules(settings.rules_path), settings.county_code), serde, Pseudonymiser(settings),
        seen=seen, consents=consents, chain=chain, dedup_window_s=settings.dedup_window_hours * 3600, topics=topics,
    )  # fmt: skip
    app.hub_pipeline = pipeline  # type: ignore[attr-defined]

    async def continue_chain(partition: int) -> None:
        last = await last_record(kafka, topics.audit, partition)
        record = serde.decode(last) if last is not None else None
        chain.set_head(partition, record if isinstance(record, AuditRecord) else None)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # faust types async receivers narrowly
    async def _forget_chains(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked: set[Any] = args[0] if args else kwargs.get("revoked", set())
        for tp in revoked:
            chain.forget(tp.partition)

    def _delivered(fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            # Fail-stop: committing past a message whose output was lost would break at-least-once. Exiting
            # without a commit makes the restarted worker process it again.
            log.critical("an output could not be produced after the producer's retries (%r): the worker stops "
                         "without committing", fut.exception())  # fmt: skip
            os._exit(70)

    async def send(topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> None:
        # Straight into the producer's batches, not awaited one by one (nor through faust's send_soon buffer,
        # which cost more than the rest of the pipeline): faust flushes the producer before it commits a
        # source offset, which keeps at-least-once.
        fut: asyncio.Future[Any] = await app.producer.send(topic, key, value, partition, None, None)  # type: ignore[assignment]
        fut.add_done_callback(_delivered)

    # -- agents --------------------------------------------------------------------------------------
    # The offset processed last per source partition (both agents; hub_consumer_lag reads it), to notice
    # when the stream skips ahead. faust can deliver prefetched messages past a seek after a rebalance and
    # then commit over the gap (faust-streaming issues #221, #606); the skipped messages are read back and
    # processed first.
    last_offset: dict[tuple[str, int], int] = {}
    source_topics = {*source_names, topics.lagesbild}

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _forget_offsets(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked: set[Any] = args[0] if args else kwargs.get("revoked", set())
        for tp in revoked:  # another worker may process it meanwhile: start from the commit if it comes back
            last_offset.pop((tp.topic, tp.partition), None)

    async def process(m: Message) -> None:
        result = pipeline.process(m)
        for output in result.outputs:
            await send(output.topic, output.key, output.value, output.partition)

    async def repair_gap(topic: str, partition: int, start: int, end: int) -> None:
        skipped = await read_range(kafka, topic, partition, start, end)
        log.warning("the stream skipped %d message(s) of %s/%d at offsets %d-%d: processing them now",
                    len(skipped), topic, partition, start, end - 1)  # fmt: skip
        metrics.GAPS_REPAIRED.inc(len(skipped))
        for offset, key, value in skipped:
            await process(Message(topic, partition, offset, key, value))

    @app.agent(agency_topics, name="hub.route")
    async def route(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        logsafety.install()  # the worker has configured its log handlers by now: guard them
        async for event in stream.events():
            m = event.message
            if not chain.has_head(m.partition):
                await continue_chain(m.partition)
            previous = last_offset.get((m.topic, m.partition))
            if previous is None:  # first message of this partition here: it should be the committed offset
                committed = app.consumer._committed_offset.get(m.tp)  # type: ignore[attr-defined]
                previous = committed - 1 if isinstance(committed, int) and committed >= 0 else None
            if previous is not None and m.offset > previous + 1:
                await repair_gap(m.topic, m.partition, previous + 1, m.offset)
            last_offset[(m.topic, m.partition)] = m.offset
            await process(Message(m.topic, m.partition, m.offset, m.key, m.value, credential_of(m.headers)))
            yield None

    # -- the lägesbild stage: increments keyed by receiver|municipality → aggregates ----------------------
    lagesbild_topic = app.topic(topics.lagesbild, **raw)  # type: ignore[arg-type]
    store = LagesbildStore(kafka, topics.lagesbild_state)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _load_lagesbild(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned: set[Any] = args[0] if args else kwargs.get("assigned", set())
        store.assign(tp.partition for tp in assigned if tp.topic == topics.lagesbild)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _forget_lagesbild(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked: set[Any] = args[0] if args else kwargs.get("revoked", set())
        store.revoke(tp.partition for tp in revoked if tp.topic == topics.lagesbild)

    lb = settings.lagesbild
    wave_rule = WaveRule(min_count=lb.alert_min_count, factor=lb.alert_factor,
                         trailing_weeks=lb.alert_trailing_weeks)  # fmt: skip
    alerts = app.Table("hub-lagesbild-alerts", default=bool, partitions=n)
    stage = LagesbildStage(serde, topics, settings.county_code, wave_rule, alerts)

    @app.agent(lagesbild_topic, name="hub.lagesbild")
    async def aggregate(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        async for event in stream.events():
            partition = event.message.partition
            counts = await store.counts(partition)
            # The state record is written through before the offset is committed (the producer is flushed first).
            for output in stage.process(counts, event.value, partition, event.message.offset):
                await send(output.topic, output.key, output.value, output.partition)
            last_offset[(event.message.topic, partition)] = event.message.offset
            yield None

    # -- web: health, readiness, metrics ---------------------------------------------------------------
    @app.page("/health")
    async def health(view: View, request: Request) -> Response:
        return view.text("ok")

    @app.page("/ready")
    async def ready(view: View, request: Request) -> Response:
        recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        ok = recovered and not app.rebalancing and store.ready()
        return view.text("ready" if ok else "starting", status=200 if ok else 503)

    async def measure_lag() -> None:
        """Set ``hub_consumer_lag`` for every source partition assigned here: its end offset minus the next
        offset to process (after the last one processed here, else the group's committed offset)."""
        tps = sorted(tp for tp in app.consumer.assignment() if tp.topic in source_topics)
        ends = await app.consumer.highwaters(*tps) if tps else {}
        committed: Mapping[Any, int] = app.consumer._committed_offset  # type: ignore[attr-defined]
        metrics.CONSUMER_LAG.clear()  # partitions revoked since the last scrape disappear
        for tp, end in ends.items():
            done = last_offset.get((tp.topic, tp.partition))
            start = done + 1 if done is not None else committed.get(tp)
            lag = end - start if isinstance(start, int) and start >= 0 else end
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, lag))

    @app.page("/metrics")
    async def prometheus(view: View, request: Request) -> Response:
        try:
            await measure_lag()
        except Exception as exc:  # the counters are still worth serving while the broker is away
            log.warning("consumer lag not measured: %r", exc)
        # aiohttp wants the charset apart from the media type
        return view.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return app


def run_worker(settings: HubSettings, kafka: KafkaAccess, loglevel: str = "info") -> None:
    """Create the topics, publish the schemas, then run the worker until SIGTERM/SIGINT."""
    from faust.worker import Worker

    from hub.contract.schema_topic import publish_schemas
    from hub.kafka.admin import ensure_topics, hub_topics

    async def prepare() -> None:
        await ensure_topics(kafka, hub_topics(settings), settings.worker.replication_factor)
        producer = clients.producer(kafka, enable_idempotence=True, acks="all")
        await producer.start()
        try:
            await publish_schemas(producer, Serde().registry, Topics(settings.topic_namespace).schemas)
        finally:
            await producer.stop()

    asyncio.run(prepare())
    asyncio.set_event_loop(asyncio.new_event_loop())  # asyncio.run() closed the previous one
    app = create_app(settings, kafka)
    worker = Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    # No terminal spinner: it sets the root logger to DEBUG so it can spin on every record, which makes
    # every faust and aiokafka debug message be formatted (and redacted) on the hot path.
    worker.spinner = None
    worker.execute_from_commandline()
