"""The worker's faust App: lifecycle, signals and web views around the transactional batch loop.

faust-streaming is the application framework (the App, its start and stop, ``/health``, ``/ready`` and
``/metrics``); the agency messages themselves are read, processed and written a batch at a time by
:class:`hub.kafka.transactions.TransactionalLoop` — faust's per-message stream machinery cost more than all
of the hub's own work, and its offset handling could skip messages after a restart (docs/reliability.md,
defects 1 and 19).

Delivery guarantee: **exactly once** to the receiver topics, the audit trail and the dead letters, for every
reader that reads ``read_committed`` (all of the hub's do): a batch's outputs, the state it changed and its
source offsets are committed in one transaction. A re-sent event (same event id from the same source unit,
at another offset, within ``dedup_window_hours``) is dropped as a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

import faust
from faust.app.base import BootStrategy
from faust.web import Request, Response, View
from mode import Service
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub import logsafety, metrics
from hub.audit import AuditChain
from hub.audit_anchor import FileAnchors
from hub.audit_seal import sealer_from
from hub.contract.serde import Serde
from hub.flows.lagesbild import Horizon, WaveRule
from hub.flows.routing import Router
from hub.kafka import clients
from hub.kafka.clients import KafkaAccess
from hub.kafka.transactions import Fenced, LoopConfig, TransactionalLoop
from hub.lagesbild_stage import LagesbildStage
from hub.pipeline import Pipeline
from hub.pseudonym import Pseudonymiser
from hub.rules.model import load_rules
from hub.settings import DEV_SECRET, HubSettings
from hub.topics import Topics
from hub.worker.batch import BatchProcessor, WorkerState
from hub.worker.disk import DiskTable
from hub.worker.state import PartitionedTable

log = logging.getLogger(__name__)


def instance_name(settings: HubSettings) -> str:
    """This worker's stable name: its static membership id, else the host's name. The transactional id is
    derived from it, so a restarted worker fences its crashed predecessor's open transaction at once."""
    return settings.worker.instance_id or socket.gethostname()


def build_loop(settings: HubSettings, kafka: KafkaAccess) -> TransactionalLoop:
    """The pipeline, the lägesbild stage and their state, wired to a transactional loop (not started)."""
    topics = Topics(settings.topic_namespace)
    if settings.secret_key.get_secret_value() == DEV_SECRET:  # only possible with HUB_ENV=dev (hub.secrets)
        log.warning("HUB_SECRET_KEY is the development default; set a real secret in production")
    name = instance_name(settings)
    window_ms = int(settings.dedup_window_hours * 3600 * 1000)
    disk = settings.state_dir / "worker" / name
    seen = DiskTable(topics.dedup, disk / "dedup", window_ms)
    consents = DiskTable(topics.consent, disk / "consent")
    alerts = PartitionedTable(topics.lagesbild_alerts)
    serde = Serde()
    pipeline = Pipeline(
        Router(load_rules(settings.rules_path), settings.county_code), serde, Pseudonymiser(settings),
        seen=seen, consents=consents, dedup_window_s=settings.dedup_window_hours * 3600, topics=topics,
        chain=AuditChain(sealer_from(settings), settings.audit.checkpoint_every, settings.audit.checkpoint_seconds),
    )  # fmt: skip
    lb = settings.lagesbild
    wave = WaveRule(min_count=lb.alert_min_count, factor=lb.alert_factor, trailing_weeks=lb.alert_trailing_weeks)
    horizon = Horizon(day_days=lb.day_horizon_days, week_days=lb.week_horizon_days)
    stage = LagesbildStage(serde, topics, settings.county_code, wave, alerts, horizon)
    processor = BatchProcessor(pipeline, stage, topics, [seen, consents, alerts], {})
    w = settings.worker
    config = LoopConfig(
        group_id=w.app_id, transactional_id=f"{w.app_id}-{name}", instance_id=w.instance_id,
        session_timeout_ms=int(w.session_timeout_s * 1000), max_records=w.batch_max_records,
    )  # fmt: skip
    sources = [*topics.sources(settings.municipality_codes), topics.lagesbild, topics.access]
    anchors = FileAnchors(settings.audit_anchor_dir)
    return TransactionalLoop(kafka, sources, config, WorkerState(kafka, processor, anchors))


class BatchLoopService(Service):
    """Runs the loop for as long as the App runs; any failure of it stops the process (fail-stop)."""

    def __init__(self, loop: TransactionalLoop, **kwargs: Any) -> None:
        self.batch_loop = loop
        self._stopping = asyncio.Event()
        super().__init__(**kwargs)

    @Service.task
    async def _run(self) -> None:
        logsafety.install()  # the worker has configured its log handlers by now: guard them
        try:
            await self.batch_loop.run(self._stopping)
        except Fenced as exc:
            log.critical("%s: another worker process uses this worker's name; this one stops", exc)
            os._exit(70)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError) and self._stopping.is_set():
                return
            # With its traceback (redacted like every line: hub.logsafety): "what failed where" is the first
            # question, and a broker restart once crashed the loop with only the exception's text to go on.
            log.critical("the batch loop failed (%r): the worker stops; nothing past the last committed batch "
                         "was written", exc, exc_info=exc)  # fmt: skip
            os._exit(70)

    async def on_stop(self) -> None:
        self._stopping.set()


def create_app(settings: HubSettings, kafka: KafkaAccess) -> faust.App:
    """The worker app: the batch loop as a service, and the web views. Connects as ``kafka``'s principal
    (``worker``) over TLS + SCRAM."""
    w = settings.worker
    app = faust.App(
        f"{w.app_id}-app",  # faust's id (its Kafka clients are off); the loop's consumer group is ``app_id``
        broker=[f"kafka://{b}" for b in kafka.bootstrap.split(",")],
        broker_credentials=clients.faust_credentials(kafka),
        store="memory://", datadir=str(settings.state_dir / "worker"),
        web_host=w.web_host, web_port=w.web_port, web_bind=w.web_host, web_in_thread=False,
    )  # fmt: skip
    # faust's own Kafka consumer and producer stay off: the loop has its own, and faust's consumer would join
    # a group of its own whose dead members (a SIGKILLed worker) hold up a restarted worker's start.
    app.boot_strategy = BootStrategy(app, enable_kafka=False)
    loop = build_loop(settings, kafka)
    app.hub_loop = loop  # type: ignore[attr-defined]
    app.service(BatchLoopService(loop))  # type: ignore[arg-type]  # an instance works too (App._prepare_subservice)
    topics = Topics(settings.topic_namespace)
    source_topics = {*topics.sources(settings.municipality_codes), topics.lagesbild, topics.access}

    @app.page("/health")
    async def health(view: View, request: Request) -> Response:
        return view.text("ok")

    @app.page("/ready")
    async def ready(view: View, request: Request) -> Response:
        ok = loop.ready
        return view.text("ready" if ok else "starting", status=200 if ok else 503)

    async def measure_lag() -> None:
        """Set ``hub_consumer_lag`` for every source partition assigned here: its last stable offset minus
        the consumer's position (the next offset to fetch for processing; past transaction markers, which an
        offset difference from the last processed message would count forever)."""
        consumer = loop.consumer
        if consumer is None:
            return
        tps = sorted(tp for tp in consumer.assignment() if tp.topic in source_topics)
        ends: Mapping[Any, int] = await consumer.end_offsets(tps) if tps else {}
        metrics.CONSUMER_LAG.clear()  # partitions revoked since the last scrape disappear
        for tp, end in ends.items():
            start = await consumer.position(tp)
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
    from hub.kafka.admin import ensure_topics, hub_topics, replication_policy
    from hub.worker.allocator import fix_mmap_threshold

    fix_mmap_threshold()  # before RocksDB allocates anything: its flushes' blocks go back to the system

    async def prepare() -> None:
        await ensure_topics(kafka, hub_topics(settings), await replication_policy(kafka, settings))
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
