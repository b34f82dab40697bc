"""Creating the hub's topics (idempotently) and reading the tail of a partition."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from hub import retention
from hub.kafka import clients
from hub.kafka.clients import KafkaAccess
from hub.kafka.metadata import broker_ids
from hub.kafka.shape import min_isr_for
from hub.retention import Retention
from hub.rules.receivers import RECEIVERS
from hub.settings import HubSettings
from hub.topics import Topics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    retention: Retention | None = None
    """Its data class, retention and why (the hub's own topics); the enforcing keys are in ``config``."""


def _spec(name: str, partitions: int, retention: Retention) -> TopicSpec:
    return TopicSpec(name, partitions, retention.config, retention)


def hub_topics(settings: HubSettings, replication: int = 1) -> list[TopicSpec]:
    """Every topic the hub reads or writes, with partitions and its retention by purpose (:mod:`hub.retention`)."""
    n = settings.topic_partitions
    topics = Topics(settings.topic_namespace)
    policy = settings.retention
    specs = [_spec(t, n, retention.agency(policy)) for t in topics.sources(settings.municipality_codes)]
    specs += [
        _spec(topics.audit, n, retention.audit()),
        _spec(topics.deadletter, n, retention.deadletter(policy)),
        _spec(topics.lagesbild, n, retention.increments(policy)),
        _spec(topics.access, n, retention.access(policy)),
        _spec(topics.lagesbild_state, n, retention.state("the lägesbild's count per aggregate key (no personal data)")),
        _spec(topics.consent, n, retention.state("consent per person key, scope and municipality")),
        _spec(topics.dedup, n, retention.state("dedup marks: source unit and event id (no personal data)")),
        _spec(topics.lagesbild_alerts, n, retention.state("which areas' burglary wave was alerted")),
        _spec(topics.schemas, 1, retention.state("every schema version")),
    ]
    codes = [*settings.municipality_codes, settings.county_code]
    specs += [_spec(topics.deliver(r, c), 2, retention.delivery(policy, r)) for r in RECEIVERS for c in codes]
    return specs


@dataclass(frozen=True)
class Replication:
    """How the hub's topics are replicated: the one place the topics job, the worker and the tests ask."""

    factor: int
    min_insync: int


async def replication_policy(kafka: KafkaAccess, settings: HubSettings) -> Replication:
    """``HUB_WORKER__REPLICATION_FACTOR`` / ``__MIN_INSYNC_REPLICAS``, else the cluster's size up to 3 and
    2 of 3 (:func:`hub.kafka.shape.min_isr_for`)."""
    w = settings.worker
    factor = w.replication_factor or min(3, max(1, len(await broker_ids(kafka))))
    return Replication(factor, w.min_insync_replicas or min_isr_for(factor))


async def ensure_topics(kafka: KafkaAccess, specs: list[TopicSpec], replication: int | Replication = 1) -> list[str]:
    """Create the topics that do not exist yet (with ``replication``'s factor and min.insync.replicas); return the
    names created."""
    policy = replication if isinstance(replication, Replication) else Replication(replication, min_isr_for(replication))
    admin = clients.admin(kafka)
    try:  # stopped even when starting fails (the broker may be down)
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            isr = {"min.insync.replicas": str(policy.min_insync)}
            new = [NewTopic(s.name, s.partitions, policy.factor, topic_configs={**s.config, **isr}) for s in missing]
            try:
                response = await admin.create_topics(new)
            except TopicAlreadyExistsError:
                log.info("some topics were created concurrently")
            else:
                _raise_topic_errors(response, policy.factor)
        return [s.name for s in missing]
    finally:
        await admin.close()


class TopicCreationError(RuntimeError):
    """The broker refused to create a topic; the message names it and the broker's reason."""


def _raise_topic_errors(response: object, replication: int) -> None:
    """aiokafka returns the broker's per-topic errors instead of raising them: a topic that was not created
    (replication factor above the brokers, no CREATE permission) must not pass silently."""
    from aiokafka.errors import for_code

    failures = []
    for entry in getattr(response, "topic_errors", []):
        topic, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        if code not in (0, TopicAlreadyExistsError.errno):
            failures.append(f"{topic}: {for_code(code).__name__}" + (f" ({message})" if message else ""))
    if failures:
        more = f" and {len(failures) - 3} more" if len(failures) > 3 else ""
        raise TopicCreationError(f"the broker did not create {len(failures)} topic(s) with replication factor "
                                 f"{replication}: {'; '.join(failures[:3])}{more}")


async def replication_below(kafka: KafkaAccess, specs: list[TopicSpec], replication: int) -> dict[str, int]:
    """Existing topics among ``specs`` whose replication factor is below ``replication`` (name → factor)."""
    admin = clients.admin(kafka)
    try:
        await admin.start()
        described = await admin.describe_topics([s.name for s in specs])
    finally:
        await admin.close()
    low: dict[str, int] = {}
    for topic in described:
        partitions = topic.get("partitions") or []
        if topic.get("error_code", 0) == 0 and partitions:
            factor = min(len(p.get("replicas", [])) for p in partitions)
            if factor < replication:
                low[topic["topic"]] = factor
    return low


async def last_records(kafka: KafkaAccess, topic: str, partitions: set[int]) -> dict[int, bytes | None]:
    """The value of the last committed record in each of ``partitions`` of ``topic`` (None: empty).

    Read ``read_committed``: the offsets before the end may be transaction markers or records of an aborted
    transaction, which a reader never sees, so each partition is searched backwards in growing windows."""
    consumer = clients.consumer(kafka, auto_offset_reset="earliest")
    out: dict[int, bytes | None] = {}
    try:  # stopped even when starting fails (the broker may be down)
        await consumer.start()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            out[tp.partition] = await _last_before(consumer, tp, ends[tp])
    finally:
        await consumer.stop()
    return out


async def _last_before(consumer: Any, tp: TopicPartition, end: int) -> bytes | None:
    window = 8
    start = end
    while start > 0:
        start = max(0, start - window)
        consumer.seek(tp, start)
        last: bytes | None = None
        found = False
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            for m in batch.get(tp, []):
                if m.offset < end:
                    last, found = m.value, True
        if found:
            return last
        window *= 4
    return None


async def read_range(
    kafka: KafkaAccess, topic: str, partition: int, start: int, end: int
) -> list[tuple[int, bytes | None, bytes]]:
    """Records ``start <= offset < end`` of one partition as (offset, key, value)."""
    tp = TopicPartition(topic, partition)
    consumer = clients.consumer(kafka, auto_offset_reset="earliest")
    out: list[tuple[int, bytes | None, bytes]] = []
    try:  # stopped even when starting fails (the broker may be down)
        await consumer.start()
        consumer.assign([tp])
        consumer.seek(tp, start)
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            for m in batch.get(tp, []):
                if start <= m.offset < end:
                    out.append((m.offset, m.key, m.value))
    finally:
        await consumer.stop()
    return out
