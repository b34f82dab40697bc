"""Recording every human read: the tools that show hub data to a person write it to ``hub.access`` first.

A read is recorded *before* it is shown — a page after it was read and before it is sent, a live stream's
item before it is pushed, a ``hub tail`` batch before it is printed — and a tool that cannot record refuses
to show (the web app answers 503, ``hub tail`` stops): there is no read without its record. The worker
appends each record to the audit trail as an ``accessed`` record (:meth:`hub.pipeline.Pipeline.record_access`),
in the hash chain with the decisions, so a register extract (``hub audit subject``) can list who read what
about a person. A record holds who (``web:<user>`` or the Kafka principal), how (the channel), what (topic or
page, receiver, municipality), how many and which events' deliveries — never a personnummer.

Sessions (the live inbox stream, ``hub tail``) write ``start``, then ``progress`` records with what is about
to be shown, then ``end`` with the session's total; a process killed mid-session leaves no ``end``, but
nothing it showed goes unrecorded.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import KafkaTimeoutError

from hub.contract.outputs import AccessChannel, AccessPhase, AccessRecord
from hub.contract.serde import Serde
from hub.kafka import clients
from hub.kafka.clients import KafkaAccess
from hub.topics import Topics

MAX_IDS = 5000
"""Event ids per record (the contract's bound); a larger batch is recorded as several records."""


def web_accessor(user: str) -> str:
    """Who read, for a web login: ``web:<user name>`` (the web app authenticated the user)."""
    return f"web:{user}"


@dataclass(frozen=True)
class Read:
    """What one person reads through one tool (the fixed part of every record of a view or session)."""

    accessor: str
    channel: AccessChannel
    target: str
    receiver: str | None = None
    municipality_code: str | None = None
    revealed: bool = False
    subject: str | None = None


class AccessLog:
    """Writes access records to ``hub.access`` and waits for the broker's acknowledgement (acks=all)."""

    def __init__(self, kafka: KafkaAccess, topics: Topics, *, timeout_s: float = 10.0) -> None:
        self.kafka = kafka
        self.topic = topics.access
        self.timeout_s = timeout_s
        self.serde = Serde()
        self._producer: Any = None
        self._starting = asyncio.Lock()

    async def _started(self) -> Any:
        async with self._starting:
            if self._producer is None:
                producer = clients.producer(self.kafka, acks="all", enable_idempotence=True)
                await asyncio.wait_for(producer.start(), self.timeout_s)
                self._producer = producer
        return self._producer

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def record(self, read: Read, phase: AccessPhase = AccessPhase.view, *, items: int = 0,
                     event_ids: Iterable[str] = (), session_id: str | None = None) -> None:  # fmt: skip
        """Record one read and return once the broker has it; raises aiokafka's ``KafkaError`` (a
        ``KafkaTimeoutError`` after ``timeout_s``) when it cannot be recorded — the caller then shows nothing."""
        ids = list(event_ids)
        chunks = [ids[i : i + MAX_IDS] for i in range(0, len(ids), MAX_IDS)] or [[]]
        producer = await self._started()
        for n, chunk in enumerate(chunks):
            record = AccessRecord(
                access_id=str(uuid.uuid4()), session_id=session_id, accessor=read.accessor, channel=read.channel,
                target=read.target, receiver=read.receiver, municipality_code=read.municipality_code, phase=phase,
                items=items if n == 0 else 0, event_ids=chunk, revealed=read.revealed, subject=read.subject,
                at=datetime.now(UTC),
            )  # fmt: skip
            try:
                await asyncio.wait_for(
                    producer.send_and_wait(self.topic, self.serde.encode(record), key=read.accessor.encode()),
                    self.timeout_s,
                )
            except TimeoutError:
                raise KafkaTimeoutError(
                    f"the read was not recorded on {self.topic} within {self.timeout_s:g} s") from None

    def session(self, read: Read) -> AccessSession:
        return AccessSession(self, read)


@dataclass
class AccessSession:
    """A session's records: :meth:`start`, :meth:`showing` before each batch shown, :meth:`end`."""

    log: AccessLog
    read: Read
    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    shown: int = 0
    started: bool = False

    async def start(self) -> None:
        await self.log.record(self.read, AccessPhase.start, session_id=self.session_id)
        self.started = True

    async def showing(self, items: int, event_ids: Iterable[str] = ()) -> None:
        """Record what is about to be shown (``items`` records, the deliveries' event ids among them)."""
        if items:
            await self.log.record(self.read, AccessPhase.progress, items=items, event_ids=event_ids,
                                  session_id=self.session_id)  # fmt: skip
            self.shown += items

    async def end(self) -> None:
        """The session's end, with how many records it showed in all (only after a recorded start)."""
        if self.started:
            await self.log.record(self.read, AccessPhase.end, items=self.shown, session_id=self.session_id)
