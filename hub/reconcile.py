"""Reconciliation: is every event that entered the hub accounted for, and how often was it delivered?

Reads the agency topics (what entered), ``hub.audit`` (every delivery, refusal, aggregation and consent
record), ``hub.deadletter`` and the receiver topics, and reports:

- ``lost``: source messages with neither an audit record for their event id nor a dead letter for their
  topic/partition/offset — must be 0;
- ``duplicate_deliveries``: deliveries beyond the first per (event id, receiver topic) — must be 0: the
  worker delivers exactly once (one transaction per batch), even across crashes;
- the cross-check of deliveries and the trail, per event × receiver (an audit record names the receiver, not
  the receiving municipality): ``unaudited_deliveries``, deliveries on ``deliver.*`` topics beyond the
  "delivered" audit records of their event and receiver — must be 0 (the trail is kept for good, so every
  delivery ever made has its record); ``undelivered_audit_records``, "delivered" records beyond the deliveries
  — must be 0, except for records older than the receiver's delivery retention, whose deliveries may have
  been deleted by it (``audit_records_beyond_retention``, not a fault); examples of both in
  ``crosscheck_examples``;
- counts per outcome.

``hub reconcile`` prints this (``--json`` for programs) and exits 1 when anything is lost or delivered twice.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field

from hub.contract.errors import ContractError
from hub.contract.outputs import AuditRecord, Deadletter, Decision, Delivery
from hub.contract.serde import Serde
from hub.kafka import clients
from hub.kafka.clients import KafkaAccess
from hub.kafka.read import read_to_end
from hub.retention import FOREVER, delivery
from hub.rules.receivers import RECEIVERS
from hub.settings import HubSettings
from hub.topics import Topics


@dataclass
class Reconciliation:
    source_messages: int = 0
    source_event_ids: int = 0
    accounted: int = 0
    lost: int = 0
    lost_examples: list[str] = field(default_factory=list)
    lost_at: list[tuple[str, int, int]] = field(default_factory=list)
    """Where each lost source message is (topic, partition, offset)."""
    deliveries: int = 0
    duplicate_deliveries: int = 0
    unaudited_deliveries: int = 0
    undelivered_audit_records: int = 0
    audit_records_beyond_retention: int = 0
    crosscheck_examples: list[str] = field(default_factory=list)
    decisions: dict[str, int] = field(default_factory=dict)
    deadletters: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (self.lost == 0 and self.duplicate_deliveries == 0 and self.unaudited_deliveries == 0
                and self.undelivered_audit_records == 0)  # fmt: skip

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("lost_at")
        return {**data, "ok": self.ok}


async def reconcile(kafka: KafkaAccess, settings: HubSettings) -> Reconciliation:
    topics = Topics(settings.topic_namespace)
    serde = Serde()
    result = Reconciliation()

    # An event is accounted for only by an audit record of the same source unit: another unit's event that
    # used the same id (by accident or to suppress it) accounts for nothing.
    audited: set[tuple[str | None, str]] = set()
    decisions: Counter[str] = Counter()
    recorded: Counter[Target] = Counter()  # "delivered" records per (event id, receiver, municipality)
    newest: dict[Target, int] = {}  # ... and the newest one's time (ms)
    async for m in read_to_end(kafka, [topics.audit]):
        rec = serde.decode(m.value)
        if isinstance(rec, AuditRecord):
            audited.add((rec.source_unit, rec.event_id))
            decisions[rec.decision.value] += 1
            key = _delivered_key(rec)
            if key is not None:
                recorded[key] += 1
                newest[key] = max(newest.get(key, 0), int(rec.at.timestamp() * 1000))

    dead_at: set[tuple[str, int, int]] = set()
    dead_reasons: Counter[str] = Counter()
    async for m in read_to_end(kafka, [topics.deadletter]):
        d = serde.decode(m.value)
        if isinstance(d, Deadletter):
            dead_at.add((d.source_topic, d.source_partition, d.source_offset))
            dead_reasons[d.reason.value] += 1

    event_ids: set[str] = set()
    async for m in read_to_end(kafka, topics.sources(settings.municipality_codes)):
        result.source_messages += 1
        try:
            _name, record = serde.decode_record(m.value)
            event_id = str(record["envelope"]["event_id"])
        except (ContractError, KeyError, TypeError):
            event_id = None
        unit = topics.unit_of(m.topic)
        if event_id is not None:
            event_ids.add(event_id)
        # (None, id): a v1 audit record, written before records named their source.
        by_source = event_id is not None and ((unit.name if unit else None, event_id) in audited
                                              or (None, event_id) in audited)
        if by_source or (m.topic, m.partition, m.offset) in dead_at:
            result.accounted += 1
        else:
            result.lost += 1
            result.lost_at.append((m.topic, m.partition, m.offset))
            if len(result.lost_examples) < 10:
                result.lost_examples.append(f"{m.topic}/{m.partition}@{m.offset} event {event_id}")

    codes = [*settings.municipality_codes, settings.county_code]
    deliver_topics = [topics.deliver(r, c) for r in RECEIVERS for c in codes]
    per_target: Counter[tuple[str, str]] = Counter()
    delivered: Counter[Target] = Counter()
    async for m in read_to_end(kafka, deliver_topics):
        d = serde.decode(m.value)
        if isinstance(d, Delivery):
            result.deliveries += 1
            per_target[(d.event_id, m.topic)] += 1
            delivered[(d.event_id, d.receiver, d.municipality_code)] += 1
    result.duplicate_deliveries = sum(n - 1 for n in per_target.values() if n > 1)
    # A delivery and its record are written in one transaction, but the trail was read before the deliveries:
    # records of a transaction committed in between (a running worker) are looked for again.
    suspects = [k for k, n in delivered.items() if n > recorded.get(k, 0)]
    if suspects:
        again = await _delivered_records(kafka, topics, serde)
        for key in suspects:
            recorded[key] = again.get(key, 0)
    _crosscheck(result, recorded, newest, delivered, settings)
    result.source_event_ids = len(event_ids)
    result.decisions = dict(decisions)
    result.deadletters = dict(dead_reasons)
    return result


async def _delivered_records(kafka: KafkaAccess, topics: Topics, serde: Serde) -> Counter[Target]:
    """The "delivered" audit records per (event id, receiver, municipality)."""
    recorded: Counter[Target] = Counter()
    async for m in read_to_end(kafka, [topics.audit]):
        rec = serde.decode(m.value)
        key = _delivered_key(rec) if isinstance(rec, AuditRecord) else None
        if key is not None:
            recorded[key] += 1
    return recorded


Target = tuple[str, str, str | None]
"""(event id, receiver, municipality): what a delivery and its "delivered" record must agree on (a record
written before audit_record v4 names no municipality: None)."""


def _delivered_key(rec: AuditRecord) -> Target | None:
    """(event id, receiver, municipality) of a "delivered" record — what the cross-check matches deliveries by
    — else None."""
    return (rec.event_id, rec.receiver, rec.municipality_code) if rec.decision is Decision.delivered else None


def _per_pair_where_legacy(counts: Counter[Target], legacy: set[tuple[str, str]]) -> Counter[Target]:
    """``counts`` with the municipality dropped for the (event, receiver) pairs a pre-v4 record names."""
    out: Counter[Target] = Counter()
    for (event_id, receiver, code), n in counts.items():
        out[(event_id, receiver, None if (event_id, receiver) in legacy else code)] += n
    return out


def _crosscheck(
    result: Reconciliation, recorded: Counter[Target], newest: dict[Target, int], delivered: Counter[Target],
    settings: HubSettings,
) -> None:  # fmt: skip
    """Every delivery has its "delivered" record and every such record its delivery (per event × receiver ×
    municipality; per event × receiver where a record from before v4 names no municipality)."""
    legacy = {(e, r) for e, r, code in recorded if code is None}
    recorded, delivered = _per_pair_where_legacy(recorded, legacy), _per_pair_where_legacy(delivered, legacy)
    aged: dict[Target, int] = {}
    for (e, r, code), at in newest.items():
        key = (e, r, None if (e, r) in legacy else code)
        aged[key] = max(aged.get(key, 0), at)
    newest = aged
    now_ms = int(time.time() * 1000)
    kept: dict[str, int] = {}  # each receiver's delivery retention (ms)
    for key in sorted(recorded.keys() | delivered.keys(), key=lambda k: (k[0], k[1], k[2] or "")):
        event_id, receiver, code = key
        to = f"{receiver}.{code}" if code else receiver
        records, deliveries = recorded.get(key, 0), delivered.get(key, 0)
        if deliveries > records:
            result.unaudited_deliveries += deliveries - records
            example = f"event {event_id} to {to}: {deliveries} deliveries, {records} 'delivered' audit records"
        elif records > deliveries:
            if receiver not in kept:
                kept[receiver] = delivery(settings.retention, receiver).retention_ms
            if kept[receiver] != FOREVER and newest.get(key, now_ms) < now_ms - kept[receiver]:
                result.audit_records_beyond_retention += records - deliveries
                continue
            result.undelivered_audit_records += records - deliveries
            example = f"event {event_id} to {to}: {records} 'delivered' audit records, {deliveries} deliveries"
        else:
            continue
        if len(result.crosscheck_examples) < 10:
            result.crosscheck_examples.append(example)


async def repair(kafka: KafkaAccess, lost_at: list[tuple[str, int, int]]) -> int:
    """Publish every lost source message again, unchanged, to its own topic and partition.

    The bytes are the same, so the event id is the same: the worker, which never saw it, processes it
    now, and a receiver could never get it twice.
    """

    from hub.kafka.admin import read_range

    producer = clients.producer(kafka, enable_idempotence=True, acks="all")
    await producer.start()
    sent = 0
    try:
        for topic, partition, offset in lost_at:
            for _offset, key, value in await read_range(kafka, topic, partition, offset, offset + 1):
                await producer.send(topic, value, key=key, partition=partition)
                sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent
