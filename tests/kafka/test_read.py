"""Reading whole topics to their end (reconciliation, reports, the lägesbild state load) on the real broker."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer

from hub.kafka import clients
from hub.kafka.admin import TopicSpec, ensure_topics
from hub.kafka.clients import KafkaAccess
from hub.kafka.read import read_batches_to_end, read_to_end

pytestmark = pytest.mark.kafka


async def _write(kafka: KafkaAccess, topic: str, n: int) -> None:
    await ensure_topics(kafka, [TopicSpec(topic, 3)])
    producer = clients.producer(kafka, acks="all")
    await producer.start()
    try:
        for i in range(n):
            await producer.send(topic, key=b"k%d" % (i % 7), value=b"v%05d" % i, partition=i % 3)
        await producer.flush()
    finally:
        await producer.stop()


def _open_consumers() -> list[AIOKafkaConsumer]:
    return [o for o in gc.get_objects() if isinstance(o, AIOKafkaConsumer) and not o._closed]


def test_every_record_once_in_offset_order_per_partition_by_record_and_by_batch(
    kafka_admin: KafkaAccess, unique: Callable[[str], str]
) -> None:
    topic, n = unique("read"), 3000

    async def run() -> tuple[list[tuple[int, int, bytes]], list[tuple[int, int, bytes]], list[int]]:
        await _write(kafka_admin, topic, n)
        records = [(r.partition, r.offset, r.value) async for r in read_to_end(kafka_admin, [topic])]
        batched, sizes = [], []
        async for tp, batch in read_batches_to_end(kafka_admin, [topic], partitions={0, 2}):
            sizes.append(len(batch))
            batched += [(tp.partition, m.offset, m.value) for m in batch]
        return records, batched, sizes

    records, batched, sizes = asyncio.run(run())
    assert sorted(v for _p, _o, v in records) == [b"v%05d" % i for i in range(n)]
    for p in range(3):
        assert [o for q, o, _v in records if q == p] == list(range(n // 3))  # offset order, none twice
    assert sorted(batched) == sorted(r for r in records if r[0] in (0, 2))
    assert len(sizes) < len(batched)  # batches, not one record at a time


def test_a_reader_that_stops_early_closes_its_consumer(kafka_admin: KafkaAccess, unique: Callable[[str], str]) -> None:
    topic = unique("read-early")

    async def run() -> tuple[int, int]:
        await _write(kafka_admin, topic, 300)
        reader = read_to_end(kafka_admin, [topic])
        await anext(reader)
        reading = len(_open_consumers())
        await reader.aclose()  # what `break` out of `async for` leads to, without waiting for garbage collection
        return reading, len(_open_consumers())

    assert asyncio.run(run()) == (1, 0)
