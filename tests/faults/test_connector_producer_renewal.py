"""Regression: a connector whose idempotent producer is poisoned by a failed batch replaces the producer.

Found by ``test_broker_restart.py``: after the broker restarted, aiokafka had expired a numbered batch
(its partition had no leader for ``request_timeout_ms``), and from then on every send to that partition
failed with OutOfOrderSequenceNumber. The connector sent again through the same producer for ever —
``hub simulate`` never finished (2 of 3 runs). The fake below fails the same way: after its first
failure, every send fails.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, OutOfOrderSequenceNumber

from connectors.base import Connector
from hub.contract.envelope import Event
from hub.settings import HubSettings
from tests import factories as f


class Broken:
    """Accepts every send; the acknowledgement of the ``fail_at``-th fails with a non-Kafka error."""

    def __init__(self, fail_at: int) -> None:
        self.fail_at = fail_at
        self.sent = 0

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def flush(self) -> None: ...

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent += 1
        if self.sent == self.fail_at:
            fut.set_exception(KeyError("an internal error of the client library"))
        else:
            fut.set_result(None)
        return fut


class PoisonedAfterFailure:
    """Acknowledges sends until ``fail_at``; that send expires, and every later one fails for ever."""

    def __init__(self, fail_at: int | None) -> None:
        self.fail_at = fail_at
        self.sent = 0
        self.poisoned = False
        self.stopped = False
        self.acknowledged: list[bytes] = []

    async def start(self) -> None: ...

    async def stop(self) -> None:
        self.stopped = True

    async def flush(self) -> None: ...

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent += 1
        if self.fail_at is not None and self.sent >= self.fail_at:
            fut.set_exception(OutOfOrderSequenceNumber() if self.poisoned else KafkaTimeoutError())
            self.poisoned = True
        else:
            assert value is not None
            self.acknowledged.append(value)
            fut.set_result(None)
        return fut


class Events(Connector):
    def __init__(self, settings: HubSettings, events: list[Event], **kw: Any) -> None:
        super().__init__(settings, name="renewal", **kw)
        self.events = events

    async def run(self) -> AsyncIterator[Event]:
        for e in self.events:
            yield e


def test_connector_replaces_a_poisoned_producer_and_delivers_everything(tmp_path: Path) -> None:
    settings = HubSettings(kafka_bootstrap="127.0.0.1:1", state_dir=tmp_path, topic_namespace=f"{uuid.uuid4().hex}.")
    events: list[Event] = [f.youth_activity() for _ in range(20)]
    producers = [PoisonedAfterFailure(fail_at=5), PoisonedAfterFailure(fail_at=None)]
    made: list[PoisonedAfterFailure] = []

    def factory() -> PoisonedAfterFailure:
        made.append(producers[len(made)])
        return made[-1]

    connector = Events(settings, events, producer_factory=factory, backoff_initial_s=0.01, backoff_max_s=0.05)
    progress = asyncio.run(asyncio.wait_for(connector.execute(handle_signals=False), 20))

    assert progress["produced"] == 20
    assert len(made) == 2, "the poisoned producer was not replaced"
    assert producers[0].stopped
    # Every event the poisoned producer did not acknowledge went through the new one.
    assert len(producers[0].acknowledged) + len(producers[1].acknowledged) == 20
    assert len(producers[1].acknowledged) == 16


def test_an_event_whose_send_breaks_stops_the_connector_loudly(tmp_path: Path) -> None:
    """Before, the event's task died unobserved: the connector finished normally with one event fewer
    acknowledged (``hub simulate`` exited 0 having produced 9,999 of 10,000)."""
    settings = HubSettings(kafka_bootstrap="127.0.0.1:1", state_dir=tmp_path, topic_namespace=f"{uuid.uuid4().hex}.")
    events: list[Event] = [f.youth_activity() for _ in range(20)]
    producer = Broken(fail_at=3)
    connector = Events(settings, events, producer_factory=lambda: producer, checkpoint_every=1)

    with pytest.raises(KeyError):
        asyncio.run(asyncio.wait_for(connector.execute(handle_signals=False), 20))
    assert connector.progress()["produced"] < 20
    assert connector.stopping
