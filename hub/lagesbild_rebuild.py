"""``hub lagesbild --rebuild``: recompute every lägesbild aggregate from the agency topics, from the beginning.

For when a bug in the rules or the counting is fixed and the figures already published are wrong. With the
workers stopped (it refuses otherwise: a running worker would keep its old state in memory), it

1. reads every agency topic from offset 0 and runs each message through the same pipeline the worker runs
   (rules, gate, deduplication) in memory, keeping only the lägesbild increments;
2. counts them as the worker does (:func:`hub.flows.lagesbild.coalesce`, county copies included);
3. replaces the stage's state (``hub.lagesbild-state``): a record of every aggregate key's count, tombstones
   for keys that no longer hold, each written to the partition the worker reads it from;
4. publishes the recomputed aggregate of every key to ``deliver.<receiver>.<kommunkod>``, so receivers' latest
   figures are the corrected ones (suppression below 3 as always).

Area alerts already sent are not withdrawn or sent again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from hub.audit import AuditChain
from hub.contract.outputs import LagesbildAggregate
from hub.contract.serde import Serde
from hub.flows.lagesbild import Counts, Publication, aggregate_keys, coalesce
from hub.flows.routing import Router
from hub.kafka import clients
from hub.kafka.clients import KafkaAccess
from hub.kafka.read import read_to_end
from hub.lagesbild_store import encode_record
from hub.pipeline import Message, Pipeline
from hub.pseudonym import Pseudonymiser
from hub.rules.model import load_rules
from hub.settings import HubSettings
from hub.topics import Topics

log = logging.getLogger(__name__)


class WorkersRunning(RuntimeError):
    """The worker group has members: stop the workers first."""


@dataclass
class RebuildReport:
    source_messages: int = 0
    increments: int = 0
    keys: int = 0
    removed_keys: int = 0
    published: int = 0
    counts: dict[str, int] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, int]:
        return {"source_messages": self.source_messages, "increments": self.increments, "keys": self.keys,
                "removed_keys": self.removed_keys, "published": self.published}  # fmt: skip


async def active_members(kafka: KafkaAccess, group: str) -> int:
    admin = clients.admin(kafka)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
        # DescribeGroupsResponse: groups = [(error_code, group_id, state, protocol_type, protocol, members, ...)]
        return sum(len(g[5]) for g in response.groups)
    finally:
        await admin.close()


async def recount(settings: HubSettings, kafka: KafkaAccess) -> tuple[Counts, list[dict[str, Any]], int]:
    """Every lägesbild increment the agency topics give today, and the counts they make."""
    topics = Topics(settings.topic_namespace)
    pipeline = Pipeline(
        Router(load_rules(settings.rules_path), settings.county_code), Serde(), Pseudonymiser(settings),
        seen={}, consents={}, chain=AuditChain(), dedup_window_s=settings.dedup_window_hours * 3600, topics=topics,
    )  # fmt: skip
    made: list[dict[str, Any]] = []
    messages = 0
    async for r in read_to_end(kafka, topics.sources(settings.municipality_codes)):
        messages += 1
        result = pipeline.process(Message(r.topic, r.partition, r.offset, r.key, r.value),
                                  now=datetime.fromtimestamp(r.timestamp_ms / 1000, UTC))  # fmt: skip
        made += result.increments
    counts = Counts()
    increments = coalesce(made, settings.county_code)
    for inc in increments:
        counts.apply(inc)
    return counts, increments, messages


async def rebuild(settings: HubSettings, kafka: KafkaAccess) -> RebuildReport:
    group = settings.worker.app_id
    if (members := await active_members(kafka, group)) > 0:
        raise WorkersRunning(
            f"{members} worker(s) are members of group {group!r}; stop them, then rebuild (a worker stopped with a "
            "static HUB_WORKER__INSTANCE_ID stays a member for HUB_WORKER__SESSION_TIMEOUT_S)"
        )
    report = RebuildReport()
    counts, increments, report.source_messages = await recount(settings, kafka)
    report.increments, report.keys = sum(inc["n"] for inc in increments), len(counts.counts)

    topics = Topics(settings.topic_namespace)
    state = topics.lagesbild_state
    stale = set()
    async for r in read_to_end(kafka, [state]):
        if r.key is not None:
            stale.add(r.key)
    records = {k: encode_record(k, n) for k, n in counts.counts.items()}
    removed = stale - {key for key, _ in records.values()}
    report.removed_keys = len(removed)

    producer = clients.producer(kafka, enable_idempotence=True, acks="all", linger_ms=20)
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topics.lagesbild))
        partitioner = DefaultPartitioner()
        # A state record lives in the partition of the increment that made it.
        for key, (raw_key, raw_value) in records.items():
            p = partitioner(_increment_key(key), partitions, partitions)
            await producer.send(state, key=raw_key, value=raw_value, partition=p)
        for raw_key in removed:
            table_key = json.loads(raw_key)
            if isinstance(table_key, str) and table_key.count("|") >= 1:
                p = partitioner(_increment_key(table_key), partitions, partitions)
                await producer.send(state, key=raw_key, value=None, partition=p)
        serde = Serde()
        for pub in _publications(counts, increments):
            target = topics.deliver(pub.receiver, pub.municipality_code)
            value = serde.encode_datum(LagesbildAggregate.SCHEMA_NAME, pub.datum())
            await producer.send(target, key=pub.key, value=value)
            report.published += 1
        await producer.flush()
    finally:
        await producer.stop()
    report.counts = dict(counts.counts)
    return report


def _publications(counts: Counts, increments: Iterable[dict[str, Any]]) -> list[Publication]:
    """The current record of every key (one per key), from the increments that made it."""
    now = datetime.now(UTC)
    out: dict[str, Publication] = {}
    for inc in increments:
        for area, kind, period, key in aggregate_keys(inc):
            if key not in out:
                count = counts.counts[key]
                out[key] = Publication(inc["receiver"], inc["municipality_code"], inc, area, kind, period, count, now)
    return list(out.values())


def _increment_key(table_key: str) -> bytes:
    """``receiver|municipality`` of a state key (an aggregate key, or an older per-event key): the key of
    the increments that made it."""
    receiver, municipality = table_key.split("|", 2)[:2]
    return f"{receiver}|{municipality}".encode()
