"""The base every connector builds on: reliable, ordered, checkpointed publishing onto the agency topics.

A connector reads an agency's system and turns what it finds into contract events. The base sends each
event Avro-encoded (:class:`hub.contract.serde.Serde`) to ``agency.<envelope.source_agency>.events``
with an idempotent ``acks="all"`` producer, keyed by the subject's internal person key
(:meth:`hub.pseudonym.Pseudonymiser.person_key`) or, without a subject, by the municipality code, so
events about one person (or one municipality) stay in order.

Guarantees:

* **Never drops an event.** Starting the producer and sending are retried with capped exponential
  backoff while Kafka is unreachable; a send that fails is sent again.
* **Backpressure.** At most ``max_in_flight`` events are unacknowledged; :meth:`Connector.produce`
  waits when that many are in flight.
* **Checkpoint after acknowledgement.** ``self.checkpoint`` is the subclass's position (any JSON data).
  Each produced event carries a copy of it taken when it was produced; the checkpoint file
  (``<state_dir>/connectors/<name>.json``, written atomically) only ever holds the copy of an event
  that the broker acknowledged together with every event produced before it. After a restart the
  connector resumes from there: an acknowledged event is not published again unless the process died
  between the acknowledgement and the next checkpoint save (at least once, never lost; the hub drops
  duplicates by ``event_id``).
* **Graceful shutdown.** SIGTERM or SIGINT (or :meth:`Connector.request_stop`) stops reading, waits for
  every in-flight event, flushes, saves the checkpoint and stops the producer.
* **Progress and metrics.** :meth:`Connector.progress` and the Prometheus counters
  ``hub_connector_events_produced_total``, ``hub_connector_send_failures_total`` and
  ``hub_connector_retries_total`` (label ``connector``).

Set the position *before* yielding (or producing) the event it covers. Runnable example (needs a broker
at ``HUB_KAFKA_BOOTSTRAP`` or ``hub kafka up``)::

    import asyncio, uuid
    from collections.abc import AsyncIterator
    from datetime import UTC, datetime

    from connectors.base import Connector
    from hub.contract.envelope import Envelope
    from hub.contract.events import YouthActivity, YouthActivityPayload
    from hub.settings import get_settings


    class Counting(Connector):
        async def run(self) -> AsyncIterator[YouthActivity]:
            for i in range(self.checkpoint.get("next", 0), 10):
                if self.stopping:
                    return
                now = datetime.now(UTC)
                self.checkpoint["next"] = i + 1          # the position this event moves us to
                yield YouthActivity(
                    envelope=Envelope(
                        event_id=uuid.uuid4(), event_type="kommun.youth_activity", schema_version=1,
                        source_agency="kommun", source_unit="fritid", municipality_code="1381",
                        occurred_at=now, recorded_at=now, data_class="aggregated",
                    ),
                    payload=YouthActivityPayload(
                        activity_id=f"a-{i}", activity_kind="drop_in", participants=12,
                        participants_13_17=8, participants_18_24=4,
                    ),
                )


    print(asyncio.run(Counting(get_settings(), name="counting").execute()))

A connector that prefers to push may instead implement ``async def run(self) -> None`` and call
``await self.produce(event)`` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import inspect
import json
import logging
import os
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError
from prometheus_client import Counter

from hub.contract.base import ContractRecord
from hub.contract.envelope import Event
from hub.contract.serde import Serde
from hub.identity import PER_MUNICIPALITY
from hub.kafka import clients
from hub.kafka.clients import KafkaAccess
from hub.logsafety import protect_kafka_logs
from hub.pseudonym import Pseudonymiser
from hub.settings import HubSettings
from hub.topics import Topics

log = logging.getLogger(__name__)

PRODUCED = Counter(
    "hub_connector_events_produced", "Events the broker acknowledged, per connector", ["connector"]
)
FAILED = Counter(
    "hub_connector_send_failures", "Failed send attempts (each is retried), per connector", ["connector"]
)
RETRIES = Counter(
    "hub_connector_retries", "Retries of a producer start or a send after a failure, per connector", ["connector"]
)

#: What counts as "Kafka is down or refused for now": retried, never dropped.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (KafkaError, OSError, asyncio.TimeoutError)


class ProducerLike(Protocol):
    """The part of :class:`aiokafka.AIOKafkaProducer` the hub's producing code uses."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def flush(self) -> None: ...

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any: ...


ProducerT = TypeVar("ProducerT", bound=ProducerLike)


def make_producer(access: KafkaAccess, **overrides: Any) -> AIOKafkaProducer:
    """The hub's producer as ``access``'s principal: idempotent, ``acks="all"``, small linger for batching."""
    options: dict[str, Any] = {
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 5,
        "request_timeout_ms": 30000,
        "client_id": "samverkan-hub",
    }
    options.update(overrides)
    producer: AIOKafkaProducer = clients.producer(access, **options)
    return producer


def event_topic(event: Event, topics: Topics) -> str:
    """The topic of the event's source unit: ``agency.polisen.events``, ``agency.kommun.1381.events``."""
    agency = str(event.envelope.source_agency.value)
    return topics.agency(agency, event.envelope.municipality_code if agency in PER_MUNICIPALITY else None)


def event_key(event: Event, pseudonymiser: Pseudonymiser) -> bytes:
    """The Kafka message key: the subject's person key, else the municipality code."""
    env = event.envelope
    if env.subject is not None:
        return pseudonymiser.person_key(env.subject.personnummer).encode()
    return env.municipality_code.encode()


async def close_producer(producer: ProducerLike, timeout_s: float) -> bool:
    """Stop a producer, waiting at most ``timeout_s`` for pending sends; True if all were delivered.

    aiokafka's ``stop()`` waits for every pending batch, which never happens while the broker is down
    (the idempotent producer retries forever). After the timeout the sender is cancelled: pending sends
    are abandoned, which is safe for callers that never acknowledged or checkpointed them.
    """
    stopping = asyncio.ensure_future(producer.stop())
    try:
        await asyncio.wait_for(asyncio.shield(stopping), timeout_s)
        return True
    except TimeoutError:
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            await sender.close()
        await stopping
        return False


async def start_producer(
    factory: Callable[[], ProducerT], *, what: str, initial_s: float, max_s: float,
    pause: Callable[[float], Awaitable[bool]], on_retry: Callable[[], None] | None = None,
) -> ProducerT:  # fmt: skip
    """A started producer, retrying with capped backoff while Kafka is unreachable.

    ``pause(delay)`` waits between attempts and returns True to give up (then CancelledError is raised).
    """
    attempt = 0
    while True:
        producer = factory()
        try:
            await producer.start()
        except TRANSIENT_ERRORS as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            attempt += 1
            if on_retry is not None:
                on_retry()
            delay = backoff_delay(attempt, initial_s, max_s)
            log.warning("%s: Kafka unreachable (%s); retry %d in %.1f s", what, type(exc).__name__, attempt, delay)
            if await pause(delay):
                raise asyncio.CancelledError("stopped before Kafka became reachable") from exc
            continue
        return producer


def backoff_delay(attempt: int, initial_s: float, max_s: float) -> float:
    """Capped exponential backoff: ``initial_s * 2**(attempt-1)``, at most ``max_s``."""
    return float(min(max_s, initial_s * (2 ** max(0, min(attempt - 1, 30)))))


def write_json_atomically(path: Path, data: Any) -> None:
    """Write JSON to ``path`` via a temporary file, fsync and rename (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Connector(ABC):
    """Abstract connector: implement :meth:`run`; call :meth:`execute` (or :meth:`run_sync`)."""

    def __init__(
        self,
        settings: HubSettings,
        name: str | None = None,
        *,
        max_in_flight: int = 1000,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 30.0,
        checkpoint_every: int = 100,
        checkpoint_interval_s: float = 1.0,
        stop_grace_s: float = 10.0,
        shutdown_timeout_s: float = 60.0,
        producer_factory: Callable[[], ProducerLike] | None = None,
        principal: str | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        protect_kafka_logs()
        self.settings = settings
        self.name = name or type(self).__name__.lower()
        if not self.name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"connector name {self.name!r} must be letters, digits, '-' or '_'")
        self.max_in_flight = max_in_flight
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval_s = checkpoint_interval_s
        self.stop_grace_s = stop_grace_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self.principal = principal or self.default_principal
        """The Kafka principal this connector publishes as (ACLs let it write only its unit's topic)."""
        self._producer_factory = producer_factory or (
            lambda: make_producer(clients.access_for(settings, self.principal)))
        self._serde = Serde()
        self._pseudonymiser = Pseudonymiser(settings)
        self.topics = Topics(settings.topic_namespace)
        self._producer: ProducerLike | None = None
        self._generation = 0
        """How often the producer was replaced (:meth:`_renew_producer`); a send remembers its generation."""
        self._renewing = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        """The first error an event's task died of (see :meth:`_task_done`); :meth:`drain` raises it."""
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        # Checkpoint bookkeeping: sequence number -> position copy; committed in sequence order.
        self._seq = 0
        self._next_commit = 0
        self._positions: dict[int, dict[str, Any]] = {}
        self._acked: set[int] = set()
        self._durable: dict[str, Any] = self._load_checkpoint()
        self._saved_seq = -1
        self._last_save = time.monotonic()
        #: The subclass's position; starts as the last durable checkpoint.
        self.checkpoint: dict[str, Any] = copy.deepcopy(self._durable)
        self._produced = 0
        self._failed = 0
        self._retries = 0
        self._started_at: float | None = None
        self._labels = {"connector": self.name}

    # -- what a subclass implements ------------------------------------------------------------------

    #: The principal a connector of this kind publishes as unless ``HUB_KAFKA__USERNAME`` says otherwise.
    default_principal: str = "connector-simulator"

    @abstractmethod
    def run(self) -> AsyncIterator[ContractRecord] | Awaitable[None]:
        """Yield events (``async def run(self) -> AsyncIterator[...]``) or produce them yourself
        (``async def run(self) -> None`` calling :meth:`produce`). Return when done or when
        :attr:`stopping` becomes true."""

    # -- state -----------------------------------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path:
        """``<state_dir>/connectors/<name>.json``."""
        return self.settings.state_dir / "connectors" / f"{self.name}.json"

    @property
    def ready(self) -> bool:
        """True while the producer is up and no stop was requested (the connector's ``/ready``)."""
        return self._producer is not None and not self.stopping

    @property
    def stopping(self) -> bool:
        """True once a stop was requested (signal or :meth:`request_stop`)."""
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Ask the connector to stop: reading ends, in-flight events are finished, the checkpoint saved."""
        if not self._stop.is_set():
            log.info("connector %s: stop requested", self.name)
        self._stop.set()

    async def wait_stopping(self, timeout_s: float) -> bool:
        """Sleep up to ``timeout_s`` (polling pause); True at once when a stop is requested."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout_s)
        return self.stopping

    @property
    def durable_checkpoint(self) -> dict[str, Any]:
        """The position every acknowledged event up to now is covered by (what the file holds)."""
        return copy.deepcopy(self._durable)

    def progress(self) -> dict[str, Any]:
        """Counters and state for people and health checks."""
        elapsed = time.monotonic() - self._started_at if self._started_at is not None else 0.0
        return {
            "connector": self.name,
            "produced": self._produced,
            "failed": self._failed,
            "retries": self._retries,
            "in_flight": self._seq - self._next_commit,
            "rate_per_s": round(self._produced / elapsed, 1) if elapsed > 0 else 0.0,
            "stopping": self.stopping,
            "checkpoint": self.durable_checkpoint,
        }

    def _load_checkpoint(self) -> dict[str, Any]:
        try:
            data = json.loads(self.checkpoint_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        if not isinstance(data, dict):
            raise ValueError(f"checkpoint {self.checkpoint_path} is not a JSON object")
        return data

    def save_checkpoint(self) -> None:
        """Write the durable checkpoint now (only acknowledged positions are ever written)."""
        write_json_atomically(self.checkpoint_path, self._durable)
        self._saved_seq = self._next_commit
        self._last_save = time.monotonic()

    # -- producing -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the producer, retrying with backoff while Kafka is unreachable (until stopped)."""
        if self._producer is not None:
            return
        self._producer = await start_producer(
            self._producer_factory, what=f"connector {self.name}", initial_s=self.backoff_initial_s,
            max_s=self.backoff_max_s, pause=self.wait_stopping, on_retry=self._count_retry,
        )  # fmt: skip
        self._started_at = time.monotonic()

    async def produce(self, event: ContractRecord, position: Mapping[str, Any] | None = None) -> None:
        """Send one event; returns once it is handed to the producer (not yet acknowledged).

        Waits while ``max_in_flight`` events are unacknowledged. ``position`` is the checkpoint that
        becomes durable once this event and all before it are acknowledged (default: a copy of
        ``self.checkpoint`` now).
        """
        if not isinstance(event, Event):
            raise TypeError(f"a connector produces agency events, not {type(event).__name__}")
        if self._producer is None:
            await self.start()
        topic = event_topic(event, self.topics)
        key = event_key(event, self._pseudonymiser)
        value = self._serde.encode(event)
        snapshot = copy.deepcopy(dict(position if position is not None else self.checkpoint))
        await self._slots.acquire()
        seq = self._seq
        self._seq += 1
        self._positions[seq] = snapshot
        try:
            sent = await self._send(topic, key, value)
        except BaseException:
            # Cancelled before the event reached the producer: it is not covered by any checkpoint.
            self._positions.pop(seq, None)
            self._slots.release()
            raise
        task = asyncio.create_task(self._await_ack(seq, topic, key, value, sent, str(event.envelope.event_id)))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    async def _send(self, topic: str, key: bytes, value: bytes) -> tuple[Any, int]:
        """Hand one message to the producer: (its acknowledgement future, the producer's generation)."""
        attempt = 0
        while True:
            if self._producer is None:
                raise RuntimeError("the producer is not started")
            generation = self._generation
            try:
                return await self._producer.send(topic, value=value, key=key), generation
            except TRANSIENT_ERRORS as exc:
                attempt += 1
                self._count_failure()
                self._count_retry()
                delay = backoff_delay(attempt, self.backoff_initial_s, self.backoff_max_s)
                log.warning("connector %s: send to %s failed (%s); retry %d in %.1f s",
                            self.name, topic, type(exc).__name__, attempt, delay)
                await asyncio.sleep(delay)

    async def _await_ack(
        self, seq: int, topic: str, key: bytes, value: bytes, sent: tuple[Any, int], event_id: str
    ) -> None:
        future, generation = sent
        attempt = 0
        try:
            while True:
                try:
                    await future
                    break
                except TRANSIENT_ERRORS as exc:
                    attempt += 1
                    self._count_failure()
                    self._count_retry()
                    delay = backoff_delay(attempt, self.backoff_initial_s, self.backoff_max_s)
                    log.warning("connector %s: event %s not acknowledged (%s); resend %d in %.1f s",
                                self.name, event_id, type(exc).__name__, attempt, delay)
                    await asyncio.sleep(delay)
                    await self._renew_producer(generation)
                    future, generation = await self._send(topic, key, value)
        finally:
            self._slots.release()
        self._produced += 1
        PRODUCED.labels(**self._labels).inc()
        self._acked.add(seq)
        self._advance()

    async def _renew_producer(self, failed_generation: int) -> None:
        """Replace the producer after a send it had accepted failed (once per generation).

        The idempotent producer numbers its batches per partition. When a batch fails after it was
        numbered (aiokafka expires a batch whose partition has had no leader for ``request_timeout_ms``,
        e.g. while the broker restarts), the broker never sees that number, and every later batch to
        that partition fails with OutOfOrderSequenceNumber, for ever: sending again through the same
        producer cannot succeed. A new producer has a new producer id and numbers afresh; the old one
        is retired (:meth:`_retire`) and the failed events are sent again through the new one (at least
        once: the hub drops an event it already has by its event id).
        """
        async with self._renewing:
            old = self._producer
            if old is None or failed_generation != self._generation:
                return  # another failed send has renewed it already
            new = await start_producer(
                self._producer_factory, what=f"connector {self.name}", initial_s=self.backoff_initial_s,
                max_s=self.backoff_max_s, pause=self.wait_stopping, on_retry=self._count_retry,
            )  # fmt: skip
            self._producer = new
            self._generation += 1
            log.warning("connector %s: a send failed; replaced the Kafka producer and sending again", self.name)
            if old is not new:
                retiring = asyncio.create_task(self._retire(old))
                self._retiring.add(retiring)
                retiring.add_done_callback(self._retiring.discard)

    async def _retire(self, producer: ProducerLike) -> None:
        """Close a replaced producer once the sends it holds are settled (acknowledged or failed, each
        awaited by its event's task); whatever it still holds after ``shutdown_timeout_s`` is failed,
        so those events are sent again through the current producer. Never raises."""
        try:
            if not await close_producer(producer, self.shutdown_timeout_s):
                accumulator = getattr(producer, "_message_accumulator", None)
                if accumulator is not None:  # the sender is closed now: nothing else touches these batches
                    accumulator.fail_all(KafkaConnectionError("the producer was replaced after a failed send"))
        except Exception as exc:  # a broken producer must not take an event's task down with it
            log.warning("connector %s: closing the replaced producer failed (%s)", self.name, type(exc).__name__)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """An event's task ended. One that raised (not a Kafka error: those are retried) leaves its event
        unacknowledged: stop, and let :meth:`drain` raise it, rather than carry on without the event."""
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        if self._failure is None:
            self._failure = task.exception()
            log.error("connector %s: an event could not be sent (%s); stopping", self.name,
                      type(self._failure).__name__)  # fmt: skip
        self.request_stop()

    def _advance(self) -> None:
        while self._next_commit in self._acked:
            self._acked.discard(self._next_commit)
            self._durable = self._positions.pop(self._next_commit)
            self._next_commit += 1
        due = self._next_commit - self._saved_seq >= self.checkpoint_every
        if self._next_commit > self._saved_seq and (
            due or time.monotonic() - self._last_save >= self.checkpoint_interval_s
        ):
            self.save_checkpoint()

    def _count_failure(self) -> None:
        self._failed += 1
        FAILED.labels(**self._labels).inc()

    def _count_retry(self) -> None:
        self._retries += 1
        RETRIES.labels(**self._labels).inc()

    async def drain(self) -> None:
        """Wait until every produced event is acknowledged, flush and save the checkpoint.

        Raises the error an event's task died of, if any (that event is not acknowledged, and the
        checkpoint does not pass it)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._producer is not None:
            await self._producer.flush()
        self.save_checkpoint()
        if self._retiring:
            await asyncio.gather(*list(self._retiring), return_exceptions=True)
        if self._failure is not None:
            raise self._failure

    async def stop(self) -> None:
        """Finish in-flight events, flush, save the checkpoint and stop the producer.

        Waits at most ``shutdown_timeout_s`` for acknowledgements (Kafka may be down): events still
        unacknowledged then are abandoned, but they are not covered by the saved checkpoint, so the
        next start reads and publishes them again.
        """
        try:
            try:
                await asyncio.wait_for(self.drain(), self.shutdown_timeout_s)
            except TimeoutError:
                pending = list(self._tasks)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                self.save_checkpoint()
                log.warning("connector %s: %d events unacknowledged after %.0f s; not checkpointed, "
                            "they are read again on the next start", self.name, len(pending),
                            self.shutdown_timeout_s)
        finally:
            retiring = list(self._retiring)
            for task in retiring:
                task.cancel()
            await asyncio.gather(*retiring, return_exceptions=True)
            if self._producer is not None:
                producer, self._producer = self._producer, None
                await close_producer(producer, 5.0)

    # -- running -----------------------------------------------------------------------------------------

    async def _consume_run(self) -> None:
        result = self.run()
        if inspect.isawaitable(result):
            await result
            return
        iterator = result
        try:
            async for event in iterator:
                await self.produce(event)
                if self.stopping:
                    break
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()

    async def execute(self, *, handle_signals: bool = True) -> dict[str, Any]:
        """Start, run until :meth:`run` returns or a stop is requested, shut down gracefully.

        With ``handle_signals`` SIGTERM and SIGINT request a stop. :meth:`run` gets ``stop_grace_s``
        to notice :attr:`stopping`; after that it is cancelled (events it had not produced are not in
        the checkpoint, so they are read again on the next start). Returns :meth:`progress`.
        """
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, self.request_stop)
                    installed.append(sig)
        try:
            try:
                await self.start()
            except asyncio.CancelledError:
                if not self.stopping:
                    raise
                return self.progress()
            runner = asyncio.create_task(self._consume_run())
            stopper = asyncio.create_task(self._stop.wait())
            try:
                await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if not runner.done():
                    await asyncio.wait({runner}, timeout=self.stop_grace_s)
                    if not runner.done():
                        log.warning("connector %s: run() ignored the stop for %.0f s; cancelling",
                                    self.name, self.stop_grace_s)
                        runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner
            finally:
                stopper.cancel()
                if not runner.done():
                    runner.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await runner
                await self.stop()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
        summary = self.progress()
        log.info("connector %s: stopped after %d events (%d retries)", self.name,
                 summary["produced"], summary["retries"])
        return summary

    def run_sync(self) -> dict[str, Any]:
        """``asyncio.run(self.execute())`` for scripts and the CLI."""
        return asyncio.run(self.execute())
