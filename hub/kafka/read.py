"""Reading whole topics up to their current end: for verification, reconciliation and reports."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from hub.kafka import clients
from hub.kafka.clients import KafkaAccess


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int


Batch = tuple[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
"""Records of one partition as one fetch returned them."""


async def read_to_end(kafka: KafkaAccess, topics: list[str], fetch_max_bytes: int = 16 * 1024 * 1024,
                      partitions: set[int] | None = None) -> AsyncIterator[Record]:  # fmt: skip
    """Every record now in ``topics`` (only ``partitions`` of them, if given), in offset order per partition."""
    # Closed with this generator: a caller that stops reading early stops the consumer now, not at garbage collection.
    async with contextlib.aclosing(read_batches_to_end(kafka, topics, fetch_max_bytes, partitions)) as batches:
        async for tp, messages in batches:
            for m in messages:
                yield Record(tp.topic, tp.partition, m.offset, m.key, m.value, m.timestamp)


async def read_batches_to_end(kafka: KafkaAccess, topics: list[str], fetch_max_bytes: int = 16 * 1024 * 1024,
                              partitions: set[int] | None = None) -> AsyncGenerator[Batch, None]:  # fmt: skip
    """:func:`read_to_end` a fetched batch at a time, as aiokafka returns it: for readers of millions of
    records (a lägesbild state partition), where a generator step and a :class:`Record` per record cost
    about a sixth of the time."""
    consumer = clients.consumer(kafka, auto_offset_reset="earliest", fetch_max_bytes=fetch_max_bytes,
                                max_partition_fetch_bytes=fetch_max_bytes)
    try:  # stopped even when starting fails (the broker may be down)
        await consumer.start()
        await consumer._client.force_metadata_update()
        cluster = consumer._client.cluster
        tps = [TopicPartition(t, p) for t in topics for p in sorted(cluster.partitions_for_topic(t) or ())
               if partitions is None or p in partitions]  # fmt: skip
        if not tps:
            return
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        async for batch in _batches(consumer, tps):
            yield batch
    finally:
        await consumer.stop()


async def read_batches_from(kafka: KafkaAccess, starts: dict[TopicPartition, int],
                            fetch_max_bytes: int = 16 * 1024 * 1024) -> AsyncGenerator[Batch, None]:  # fmt: skip
    """The committed records of each partition from its offset in ``starts`` to its end now, a fetched batch
    at a time (a start before the log's start reads from there)."""
    consumer = clients.consumer(kafka, auto_offset_reset="earliest", fetch_max_bytes=fetch_max_bytes,
                                max_partition_fetch_bytes=fetch_max_bytes)
    try:  # stopped even when starting fails (the broker may be down)
        await consumer.start()
        if not starts:
            return
        consumer.assign(list(starts))
        for tp, start in starts.items():
            consumer.seek(tp, start)
        async for batch in _batches(consumer, list(starts)):
            yield batch
    finally:
        await consumer.stop()


async def _batches(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> AsyncGenerator[Batch, None]:
    """From each partition's position to its end when called."""
    end = await consumer.end_offsets(tps)
    remaining = {tp for tp in tps if end[tp] > 0 and await consumer.position(tp) < end[tp]}
    while remaining:
        batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=10000)
        for tp, messages in batch.items():
            if messages and messages[-1].offset >= end[tp]:  # written after the start: not ours to read
                messages = [m for m in messages if m.offset < end[tp]]
            if messages:
                yield tp, messages
        # Done with a partition once its position passed the end taken at the start (records may be
        # returned in several batches, and offsets need not be contiguous).
        for tp in list(remaining):
            if await consumer.position(tp) >= end[tp]:
                remaining.discard(tp)


async def _partitions(consumer: AIOKafkaConsumer, topics: list[str]) -> dict[str, list[int]]:
    """Partitions of each existing topic, asking for these topics' metadata explicitly."""
    client = consumer._client
    for t in topics:
        client.add_topic(t)
    found: dict[str, list[int]] = {}
    for _attempt in range(5):
        await client.force_metadata_update()
        found = {t: sorted(p) for t in topics if (p := client.cluster.partitions_for_topic(t))}
        if len(found) == len(topics):
            break
        await asyncio.sleep(0.2)
    missing = sorted(set(topics) - set(found))
    if missing:
        raise LookupError(f"topics not found in the cluster: {', '.join(missing[:5])}")
    return found


async def records_from(kafka: KafkaAccess, starts: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    """How many committed records each partition holds from its offset in ``starts`` to its current end.

    An offset distance is not a record count on a topic written in transactions: every transaction leaves a
    marker (an offset no reader sees), and an aborted one leaves records no ``read_committed`` reader sees.
    So "has the group consumed everything" is "no record after its committed offset", counted here."""
    counts = {tp: 0 for tp in starts}
    consumer = clients.consumer(kafka, auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024)
    try:  # stopped even when starting fails (the broker may be down)
        await consumer.start()
        tps = list(starts)
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        remaining = set()
        for tp, start in starts.items():
            if start < end[tp]:
                consumer.seek(tp, start)
                remaining.add(tp)
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=10000)
            for tp, messages in batch.items():
                counts[tp] += sum(1 for m in messages if m.offset < end[tp])
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return counts


async def read_compacted(kafka: KafkaAccess, topic: str, partitions: set[int]) -> dict[int, dict[Any, Any]]:
    """The committed state a compacted changelog of JSON keys and values holds for ``partitions``, one reader
    for all of them: the last value per key wins, a tombstone deletes. The hot path of a worker's restart
    (a million records take seconds)."""
    out: dict[int, dict[Any, Any]] = {p: {} for p in partitions}
    if not partitions:
        return out
    loads = orjson.loads
    async for tp, records in read_batches_to_end(kafka, [topic], partitions=partitions):
        held = out[tp.partition]
        for r in records:
            if r.key is None:
                continue
            if r.value is None:
                held.pop(loads(r.key), None)
            else:
                held[loads(r.key)] = loads(r.value)
    return out
