"""The worker's transactional writer on the real broker: where keyed records go, whatever the producer knows."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from hub.kafka import clients
from hub.kafka.admin import TopicSpec, ensure_topics
from hub.kafka.clients import KafkaAccess
from hub.kafka.read import read_to_end
from hub.kafka.transactions import LoopConfig, TransactionalLoop

pytestmark = pytest.mark.kafka


@dataclass(frozen=True)
class Out:
    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None


class _NoHandler:
    """The loop is driven by hand here: no batch is ever read."""


async def _write(loop: TransactionalLoop, records: list[Out]) -> None:
    await loop.producer.begin_transaction()
    await loop._send_all(records)
    await loop.producer.commit_transaction()


def test_keyed_records_go_where_send_would_put_them_also_from_a_producer_without_the_topics_metadata(
    kafka_admin: KafkaAccess, unique: Callable[[str], str]
) -> None:
    """After a failed transaction the loop makes a new producer; just after a broker restart its metadata may
    not hold the topics yet. Its first batch must still be written, each keyed record to the partition the
    producer's own ``send()`` picks (a per-loop "topics known" set once let aiokafka's partitioner read None
    partitions there: TypeError, and the worker stopped)."""
    topic = unique("txn-place")
    keys = [b"person-%03d" % i for i in range(60)]

    async def run() -> tuple[dict[bytes, set[int]], dict[bytes, int]]:
        await ensure_topics(kafka_admin, [TopicSpec(topic, 4)])
        loop = TransactionalLoop(kafka_admin, [], LoopConfig(group_id=unique("g"), transactional_id=unique("t")),
                                 _NoHandler())  # type: ignore[arg-type]  # fmt: skip
        loop.producer = await loop._new_producer()
        try:
            await _write(loop, [Out(topic, k, b"first") for k in keys[:30]])  # the topic is known from here on
            await loop.producer.stop()
            loop.producer = await loop._new_producer()  # as after a failed transaction
            loop.producer.client.cluster._partitions.pop(topic, None)  # ... just after a broker restart
            await _write(loop, [Out(topic, k, b"second") for k in keys])
        finally:
            await loop.producer.stop()
        placed: dict[bytes, set[int]] = {}
        async for r in read_to_end(kafka_admin, [topic]):
            assert r.key is not None
            placed.setdefault(r.key, set()).add(r.partition)
        plain = clients.producer(kafka_admin, acks="all")
        await plain.start()
        try:
            expected = {k: (await (await plain.send(topic + "-x", b"v", key=k))).partition for k in keys}
        finally:
            await plain.stop()
        return placed, expected

    async def with_reference_topic() -> tuple[dict[bytes, set[int]], dict[bytes, int]]:
        await ensure_topics(kafka_admin, [TopicSpec(topic + "-x", 4)])  # same partition count: same choice
        return await run()

    placed, expected = asyncio.run(with_reference_topic())
    assert set(placed) == set(keys)  # every record of both transactions was written and committed
    assert placed == {k: {expected[k]} for k in keys}
