"""Produce → consume on the real broker with the settings every hub producer uses."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka.admin import NewTopic

from hub.kafka import clients
from hub.kafka.clients import KafkaAccess

Record = tuple[bytes | None, bytes | None]


async def _roundtrip(kafka: KafkaAccess, topic: str, group: str, n: int) -> list[Record]:
    admin = clients.admin(kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    producer = clients.producer(kafka, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for i in range(n):
            await producer.send(topic, key=b"person-%d" % (i % 5), value=b"event-%04d" % i)
        await producer.flush()
    finally:
        await producer.stop()
    consumer = clients.consumer(kafka, topic, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    got: list[Record] = []
    try:
        async with asyncio.timeout(30):
            while len(got) < n:
                batches = await consumer.getmany(timeout_ms=1000)
                for messages in batches.values():
                    got.extend((m.key, m.value) for m in messages)
    finally:
        await consumer.stop()
    return got


def test_idempotent_acks_all_roundtrip_keeps_per_key_order(
    kafka_admin: KafkaAccess, unique: Callable[[str], str]
) -> None:
    n = 500
    got = asyncio.run(_roundtrip(kafka_admin, unique("rt"), unique("grp"), n))
    assert sorted(v for _, v in got) == [b"event-%04d" % i for i in range(n)]
    # Same key → same partition → the order the producer sent them in.
    for person in range(5):
        seq = [v for k, v in got if k == b"person-%d" % person]
        assert seq == sorted(seq)
        assert len(seq) == n // 5
