"""Reading one receiver topic for a page: its newest messages, then everything after them, live.

A page shows the newest messages and the position it read up to (next offset per partition); its live
stream starts exactly there, so nothing that arrives between the page and the stream is lost or shown
twice. The position travels as ``0:17,1:4`` (partition:next offset) in the stream URL and as each server-sent
event's id, so a browser that reconnects (``Last-Event-ID``) continues where it stopped.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from hub.kafka import clients
from hub.kafka.clients import KafkaAccess

Positions = dict[int, int]

_POSITIONS = re.compile(r"^\d{1,5}:\d{1,19}(,\d{1,5}:\d{1,19}){0,1023}$")


def format_positions(positions: Positions) -> str:
    return ",".join(f"{p}:{o}" for p, o in sorted(positions.items()))


def parse_positions(text: str) -> Positions:
    """``"0:17,1:4"`` -> ``{0: 17, 1: 4}``; ValueError for anything else (the empty text is no position)."""
    if text == "":
        return {}
    if not _POSITIONS.match(text):
        raise ValueError("malformed position")
    return {int(p): int(o) for p, o in (pair.split(":") for pair in text.split(","))}


@dataclass(frozen=True, slots=True)
class Message:
    partition: int
    offset: int
    timestamp_ms: int
    value: bytes


class TopicFeed:
    """One topic of one cluster, read without a consumer group (nothing is committed)."""

    def __init__(self, kafka: KafkaAccess, topic: str, fetch_wait_ms: int = 200) -> None:
        self.kafka = kafka
        self.topic = topic
        self.fetch_wait_ms = fetch_wait_ms

    def _consumer(self) -> AIOKafkaConsumer:
        consumer: AIOKafkaConsumer = clients.consumer(self.kafka, auto_offset_reset="earliest",
                                                      fetch_max_wait_ms=self.fetch_wait_ms)
        return consumer

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        client = consumer._client
        client.add_topic(self.topic)
        await client.force_metadata_update()
        return [TopicPartition(self.topic, p) for p in sorted(client.cluster.partitions_for_topic(self.topic) or ())]

    async def recent(self, limit: int) -> tuple[list[Message], Positions]:
        """Up to ``limit`` newest messages (newest first) and the position just after the end."""
        consumer = self._consumer()
        try:  # stopped even when starting fails (the broker may be down)
            await consumer.start()
            tps = await self._partitions(consumer)
            if not tps:
                return [], {}
            consumer.assign(tps)
            end = await consumer.end_offsets(tps)
            begin = await consumer.beginning_offsets(tps)
            for tp in tps:
                consumer.seek(tp, max(begin[tp], end[tp] - limit))
            got: list[Message] = []
            remaining = {tp for tp in tps if end[tp] > max(begin[tp], end[tp] - limit)}
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=500)
                for tp, messages in batch.items():
                    got += [Message(tp.partition, m.offset, m.timestamp, m.value)
                            for m in messages if m.offset < end[tp]]  # fmt: skip
                for tp in list(remaining):
                    if await consumer.position(tp) >= end[tp]:
                        remaining.discard(tp)
            got.sort(key=lambda m: (m.timestamp_ms, m.partition, m.offset), reverse=True)
            return got[:limit], {tp.partition: end[tp] for tp in tps}
        finally:
            await consumer.stop()

    async def follow(self, start: Positions, stop: asyncio.Event, idle_s: float = 1.0
                     ) -> AsyncGenerator[tuple[Message | None, Positions], None]:  # fmt: skip
        """Every message from ``start`` on, as it arrives, with the position after it; ``(None, position)``
        after each ``idle_s`` without one, so the caller can send keep-alives and notice a closed client.
        A partition missing from ``start`` is read from its beginning (all of it arrived after the page)."""
        consumer = self._consumer()
        try:  # stopped even when starting fails (the broker may be down)
            await consumer.start()
            tps = await self._partitions(consumer)
            positions: Positions = {}
            if tps:
                consumer.assign(tps)
                begin = await consumer.beginning_offsets(tps)
                end = await consumer.end_offsets(tps)
                for tp in tps:
                    at = min(max(start.get(tp.partition, begin[tp]), begin[tp]), end[tp])
                    consumer.seek(tp, at)
                    positions[tp.partition] = at
            while not stop.is_set():
                if not tps:
                    await asyncio.sleep(idle_s)  # the topic does not exist (yet); the page shows an empty inbox
                    yield None, dict(positions)
                    continue
                batch = await consumer.getmany(timeout_ms=int(idle_s * 1000))
                if not batch:
                    yield None, dict(positions)
                for tp, messages in batch.items():
                    for m in messages:
                        positions[tp.partition] = m.offset + 1
                        yield Message(tp.partition, m.offset, m.timestamp, m.value), dict(positions)
        finally:
            await consumer.stop()
