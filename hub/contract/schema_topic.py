"""The compacted ``hub.schemas`` topic: every writer schema, keyed by its fingerprint (hex).

Producers publish their schemas before the first message; consumers load the topic into their registry,
so a message written with a schema newer than the consumer's files can still be decoded.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition

from hub.contract.errors import SchemaError
from hub.contract.registry import SchemaRegistry
from hub.kafka import clients
from hub.kafka.clients import KafkaAccess

SCHEMAS_TOPIC = "hub.schemas"
TOPIC_CONFIG = {"cleanup.policy": "compact"}
"""Configuration to create the topic with (it must be compacted)."""


async def publish_schemas(producer: Any, registry: SchemaRegistry, topic: str = SCHEMAS_TOPIC) -> int:
    """Send every local schema version (expanded JSON) keyed by fingerprint hex; returns how many.

    ``producer`` is a started ``aiokafka.AIOKafkaProducer``. The event type travels in a header.
    """
    count = 0
    for sv in registry.all_versions():
        headers = [("type_name", (sv.type_name or "").encode())]
        await producer.send_and_wait(
            topic, key=sv.fingerprint_hex.encode(), value=sv.to_json().encode(), headers=headers
        )
        count += 1
    return count


async def load_from_topic(
    kafka: KafkaAccess, registry: SchemaRegistry, topic: str = SCHEMAS_TOPIC, timeout_s: float = 30.0
) -> int:
    """Read ``topic`` from the beginning to its current end and register every schema; returns how many.

    Records that are not a valid schema are skipped (and counted out): one bad record must not stop the hub.
    """
    consumer = clients.consumer(kafka, auto_offset_reset="earliest")
    await consumer.start()
    loaded = 0
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()  # aiokafka has no public call for this
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return 0
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        async with asyncio.timeout(timeout_s):
            while not await _at_end(consumer, end):
                batch = await consumer.getmany(*tps, timeout_ms=500)
                for records in batch.values():
                    for rec in records:
                        if rec.value is None:
                            continue
                        headers = dict(rec.headers or ())
                        type_name = headers.get("type_name", b"").decode() or None
                        try:
                            registry.register(rec.value.decode("utf-8"), type_name)
                        except (SchemaError, UnicodeDecodeError):
                            continue
                        loaded += 1
    finally:
        await consumer.stop()
    return loaded


async def _at_end(consumer: Any, end: dict[Any, int]) -> bool:
    for tp, offset in end.items():
        if await consumer.position(tp) < offset:
            return False
    return True
