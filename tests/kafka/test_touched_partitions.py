"""The transactional loop remembers every partition a transaction handed records to *as it hands them over*:
a commit given up in the middle of sending (its time limit, while a broker restart keeps a topic's metadata
away) must still sweep the partitions it already wrote (docs/reliability.md, defect 24). No broker: a
producer that accepts one topic's batches and never learns the second topic's partitions."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import TopicPartition

from hub.kafka.clients import KafkaAccess
from hub.kafka.transactions import LoopConfig, TransactionalLoop
from hub.pipeline import Output


class _Builder:
    """Holds one record: the next append says "full", so each record's batch is handed over at once."""

    def __init__(self) -> None:
        self.records = 0

    def append(self, **_: Any) -> object | None:
        if self.records:
            return None
        self.records += 1
        return object()

    def record_count(self) -> int:
        return self.records


@dataclass
class _Client:
    known: dict[str, list[int]]

    async def _wait_on_metadata(self, topic: str) -> set[int]:
        if topic not in self.known:
            await asyncio.Event().wait()  # the broker is away: this topic's metadata never comes
        return set(self.known[topic])


class _Producer:
    def __init__(self) -> None:
        self.client = _Client({"hub.audit": [0]})
        self.handed: list[TopicPartition] = []

    def create_batch(self) -> _Builder:
        return _Builder()

    def _partitioner(self, key: bytes | None, all_: list[int], available: list[int]) -> int:
        return all_[0]

    async def send_batch(self, builder: _Builder, topic: str, partition: int) -> asyncio.Future[Any]:
        self.handed.append(TopicPartition(topic, partition))
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def test_a_commit_given_up_while_sending_still_sweeps_the_partitions_it_already_wrote() -> None:
    loop = TransactionalLoop(KafkaAccess("127.0.0.1:1"), [], LoopConfig("g", "t"), handler=None)  # type: ignore[arg-type]
    producer = loop.producer = _Producer()
    records = [Output("hub.audit", None, b"a", None), Output("hub.audit", None, b"b", None),
               Output("deliver.sig.1381", b"k", b"c", None)]  # fmt: skip

    async def give_up() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(loop._send_all(records, []), 0.5)

    asyncio.run(give_up())
    assert TopicPartition("hub.audit", 0) in producer.handed  # a batch of it went to the producer ...
    assert TopicPartition("hub.audit", 0) in loop._touched  # ... so the sweep after the give-up closes it
