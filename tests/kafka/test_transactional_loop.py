"""The worker's transactional writer on the real broker: where keyed records go, whatever the producer knows."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from aiokafka import TopicPartition

from hub.deadline import Deadline
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
    await loop._send_all(records, [])
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


async def _ends(kafka: KafkaAccess, topic: str, partitions: int) -> list[int]:
    """Each partition's high watermark: every record and marker written to it, aborted ones included."""
    consumer = clients.consumer(kafka, isolation_level="read_uncommitted")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        return [ends[tp] for tp in tps]
    finally:
        await consumer.stop()


def test_a_failed_transaction_is_abandoned_with_nothing_more_of_it_sent(
    kafka_admin: KafkaAccess, unique: Callable[[str], str]
) -> None:
    """A transaction the loop gives up on (the broker away, say) is redone by a new producer; the old one must
    send nothing more of it. aiokafka's ``abort_transaction()`` and ``stop()`` would first send its unsent
    records (they never expire): after a broker restart, records of the given-up transaction then reached the
    broker while the redo was under way. Held here with records lingering unsent when the loop gives up: not
    one of them may reach the topic, not even as an aborted record."""
    topic = unique("txn-abandon")
    transactional_id = unique("t")

    async def run() -> tuple[list[bytes | None], list[int]]:
        await ensure_topics(kafka_admin, [TopicSpec(topic, 2)])
        loop = TransactionalLoop(kafka_admin, [], LoopConfig(group_id=unique("g"), transactional_id=transactional_id),
                                 _NoHandler())  # type: ignore[arg-type]  # fmt: skip
        lingering = clients.producer(kafka_admin, transactional_id=transactional_id, enable_idempotence=True,
                                     acks="all", linger_ms=600_000)  # fmt: skip
        await lingering.start()
        loop.producer = lingering
        await lingering.begin_transaction()
        loop._unfinished = True
        await loop._send_all([Out(topic, b"k%d" % i, b"given up", 1) for i in range(20)], loop._sent)
        await loop._abandon()  # what _recover does first
        assert loop.producer is None
        loop.producer = await loop._new_producer()  # fences the old one, aborting its open transaction
        try:
            await _write(loop, [Out(topic, b"k", b"redone", 0)])
        finally:
            await loop.producer.stop()
        committed: list[bytes | None] = []

        async def readable() -> bool:  # the commit's markers are written after commit_transaction() returns
            committed[:] = [r.value async for r in read_to_end(kafka_admin, [topic])]
            return bool(committed)

        await Deadline(60, "the redone transaction to be readable").async_wait_for(readable, interval=0.2)
        return committed, await _ends(kafka_admin, topic, 2)

    committed, ends = asyncio.run(run())
    assert committed == [b"redone"]
    # Partition 1 had only the given-up transaction's records: nothing of it was ever written there (the
    # former abort-then-stop wrote all 20 and an abort marker). Partition 0: the redo and its commit marker.
    assert ends == [2, 0]


async def _partition_verification(kafka: KafkaAccess, enabled: bool) -> None:
    """Turn the broker's KIP-890 partition verification off (a per-broker dynamic config) or back to its
    configured default, and wait until the broker reports it so."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = clients.admin(kafka)
    await admin.start()
    try:
        node = str(next(iter(admin._client.cluster.brokers())).nodeId)
        configs = {} if enabled else {"transaction.partition.verification.enable": "false"}
        await admin.alter_configs([ConfigResource(ConfigResourceType.BROKER, node, configs=configs)])

        async def applied() -> bool:
            name = "transaction.partition.verification.enable"
            [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, node, {name: None})])
            values = {entry[0]: entry[1] for resource in response.resources for entry in resource[4]}
            return values.get(name) == ("true" if enabled else "false")

        await Deadline(30, "the broker to apply partition verification").async_wait_for(applied, interval=0.2)
    finally:
        await admin.close()


def test_a_partition_a_given_up_transaction_left_open_is_aborted_before_the_redo_commits(
    kafka_admin: KafkaAccess, unique: Callable[[str], str]
) -> None:
    """docs/reliability.md defect 22: after a broker restart a record of the given-up transaction (epoch 0) sat
    on a partition the broker's abort had not covered, and the redo's commit marker (epoch 1) committed it
    with the redo: a delivery twice. Made here on purpose: a record written to a partition its transaction's
    coordinator never heard of (possible with the broker's partition verification off). The recovery must end
    that partition in an abort marker before the redo, so only the redo is ever read committed."""
    topic = unique("txn-hang")
    transactional_id = unique("t")

    async def run() -> list[bytes | None]:
        await ensure_topics(kafka_admin, [TopicSpec(topic, 2)])
        loop = TransactionalLoop(kafka_admin, [], LoopConfig(group_id=unique("g"), transactional_id=transactional_id),
                                 _NoHandler())  # type: ignore[arg-type]  # fmt: skip
        loop.producer = await loop._new_producer()
        try:
            await _partition_verification(kafka_admin, enabled=False)
            hanging = TopicPartition(topic, 1)
            await loop.producer.begin_transaction()
            loop._unfinished = True
            loop._touched = set()
            loop.producer._txn_manager._txn_partitions.add(hanging)  # the coordinator is never told
            await loop._send_all([Out(topic, b"k", b"given up", 1)], loop._sent)
            await asyncio.gather(*loop._sent)  # on the partition, in no transaction the coordinator knows
        finally:
            await _partition_verification(kafka_admin, enabled=True)
        loop.consumer = _NoAssignment()
        loop._load = _nothing_to_load  # type: ignore[method-assign]
        await loop._recover()  # abandon, new producer (epoch + 1), sweep
        try:
            await _write(loop, [Out(topic, b"k", b"redone", 1)])
        finally:
            await loop.producer.stop()
        committed: list[bytes | None] = []

        async def readable() -> bool:
            committed[:] = [r.value async for r in read_to_end(kafka_admin, [topic])]
            return bool(committed)

        await Deadline(60, "the redone transaction to be readable").async_wait_for(readable, interval=0.2)
        return committed

    assert asyncio.run(run()) == [b"redone"]  # without the sweep: [b"given up", b"redone"]


class _NoAssignment:
    def assignment(self) -> set[TopicPartition]:
        return set()


async def _nothing_to_load(partitions: set[int]) -> None:
    return None
