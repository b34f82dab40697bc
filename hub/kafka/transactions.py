"""Consume, process and produce a batch at a time, exactly once: aiokafka's group consumer and a
transactional producer.

One loop per worker process. It reads a batch with ``getmany`` from the partitions the group gave it and
hands it to the :class:`BatchHandler` (pure: no Kafka in it); the batch's outputs, the changelog records of
the state it changed and the batch's source offsets are then written in **one transaction**. Either all of
it becomes visible to ``read_committed`` readers or none of it does, so a crash (kill -9) at any point
leaves nothing half done: the restarted worker fences the old producer (same transactional id, which aborts
its open transaction), reloads the committed state and reads on from the committed offsets.

Rebalances are explicit (:class:`_Rebalance`):
- *revoked*: waits for the batch in hand to be committed (the lock), so no commit ever goes past
  unproduced outputs, and a batch fetched before a rebalance is dropped unprocessed (its partitions restart
  from their committed offsets);
- *assigned*: the new partitions' state is loaded before any of their messages is processed; the state of
  partitions kept across the rebalance stays in memory.

A failed transaction (the broker away longer than the producer's retries) is abandoned with its producer,
whose unsent records are dropped unsent; a new producer of the same transactional id fences it and aborts the
transaction on the broker; before anything else it *sweeps* every partition the given-up transaction wrote to
(one aborted transaction over all of them, so each ends in an abort marker of the new epoch: a record of the
given-up transaction the broker's own abort missed cannot be committed by the redo, docs/reliability.md
defect 22); the state is reloaded and the partitions sought back to their committed offsets: the batch is
processed again from scratch. Only a fenced producer (another process took this transactional id
over) makes the loop stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError, ProducerFenced

from hub import metrics
from hub.identity import HEADER_CREDENTIAL
from hub.kafka import clients
from hub.kafka.clients import KafkaAccess
from hub.pipeline import Message

log = logging.getLogger(__name__)

HEADER_SWEEP = "hub-sweep"
"""Marks the one record per partition of a sweep transaction, which is always aborted (never read committed)."""


class Produce(Protocol):
    """One record to write in the batch's transaction."""

    @property
    def topic(self) -> str: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def partition(self) -> int | None: ...


class BatchHandler(Protocol):
    async def load(self, partitions: set[int]) -> None:
        """Load the state of these partition numbers (before any of their messages is processed)."""

    def drop(self, partitions: set[int]) -> None:
        """Forget the state of partition numbers no longer assigned here."""

    def process(self, messages: list[Message]) -> Sequence[Produce]:
        """Every record to produce for ``messages`` (outputs and state changelog records)."""

    def idle(self) -> Sequence[Produce]:
        """Records to write when no message came (written in a transaction of their own)."""

    async def committed(self) -> None:
        """Called after each batch's transaction committed."""

    async def close(self) -> None:
        """Called once when the loop stops, after its last commit."""


class Fenced(RuntimeError):
    """Another process took this worker's transactional id over: this one must stop."""


@dataclass(frozen=True)
class LoopConfig:
    group_id: str
    transactional_id: str
    instance_id: str | None = None
    session_timeout_ms: int = 10_000
    max_records: int = 2000
    transaction_timeout_ms: int = 10_000
    """How long an open transaction of a crashed worker can hold back ``read_committed`` readers."""


class TransactionalLoop:
    """The consume → process → produce-and-commit loop of one worker process."""

    def __init__(self, access: KafkaAccess, topics: list[str], config: LoopConfig, handler: BatchHandler) -> None:
        self.access = access
        self.topics = topics
        self.config = config
        self.handler = handler
        self.consumer: Any = None
        self.producer: Any = None
        self._lock = asyncio.Lock()
        self._epoch = 0
        self._held: set[int] = set()
        self._pending: set[int] | None = None
        """Partition numbers assigned but not yet loaded; None before the first assignment."""
        self._unfinished = False
        """A transaction of this producer was begun and neither committed nor abandoned."""
        self._sent: list[asyncio.Future[Any]] = []
        """The delivery futures of the transaction's record batches."""
        self._touched: set[TopicPartition] = set()
        """Every partition the open transaction handed records to."""
        self._to_sweep: set[TopicPartition] = set()
        """Partitions written by given-up transactions and not yet closed by a sweep's abort marker."""
        self._placed: dict[tuple[str, bytes], tuple[frozenset[int], int]] = {}
        """Where a keyed record went, with the topic's partitions then: the default partitioner's choice
        (murmur2 of the key, in pure Python, and two sets per call) is the same while they are. Bounded small:
        the keys that recur are the municipality and lägesbild keys (hundreds); person keys seldom do."""

    @property
    def _commit_limit_s(self) -> float:
        return 3 * self.config.transaction_timeout_ms / 1000

    @property
    def ready(self) -> bool:
        return self._pending is not None and not self._pending

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        # The producer first, with its producer id: getting it fences a crashed predecessor with this
        # transactional id and completes that one's last transaction (aborted if open, finished if it was
        # committing), so the offsets and state read next are the committed ones.
        self.producer = await self._new_producer()
        c = self.config
        self.consumer = clients.consumer(
            self.access, group_id=c.group_id, group_instance_id=c.instance_id, enable_auto_commit=False,
            isolation_level="read_committed", auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),  # the same partition numbers of every topic
            session_timeout_ms=c.session_timeout_ms, heartbeat_interval_ms=max(1000, c.session_timeout_ms // 5),
            max_poll_records=c.max_records, fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )  # fmt: skip
        self.consumer.subscribe(self.topics, listener=_Rebalance(self))
        await self.consumer.start()
        try:
            while not stopping.is_set():
                await self._step()
        finally:
            await self._stop()

    async def _stop(self) -> None:
        try:
            await self.handler.close()
        except Exception as exc:  # best effort, as below
            log.warning("closing the state: %r", exc)
        if self.producer is not None and self._unfinished:
            await self._abandon()  # a transaction is open: nothing of it is sent on the way out
        for part in (self.consumer, self.producer):
            if part is not None:
                try:
                    await part.stop()
                except Exception as exc:  # stopping is best effort: the broker may be away
                    log.warning("stopping %s: %r", type(part).__name__, exc)

    async def _new_producer(self) -> Any:
        c = self.config
        producer = clients.producer(
            self.access, transactional_id=c.transactional_id, enable_idempotence=True, acks="all",
            transaction_timeout_ms=c.transaction_timeout_ms, linger_ms=5, max_batch_size=262144,
        )  # fmt: skip
        await producer.start()
        # start() does not wait for InitProducerId, and that is what fences the previous producer of this
        # transactional id and completes its last transaction (commit or abort, markers written). Until then
        # the committed offsets and the changelogs need not show that transaction: read then, a batch whose
        # commit went through after all is processed again (after a broker restart in CI, 11 deliveries twice).
        # begin_transaction waits for the producer id; the empty transaction ends without a request.
        await producer.begin_transaction()
        await producer.commit_transaction()
        return producer

    # -- one batch -----------------------------------------------------------------------------------------

    async def _step(self) -> None:
        epoch = self._epoch
        fetched = await self.consumer.getmany(timeout_ms=200, max_records=self.config.max_records)
        async with self._lock:
            if epoch != self._epoch:  # a rebalance came in between: the batch is dropped unprocessed ...
                await self._rewind(fetched)
                return
            if self._pending:
                await self._load(self._pending)
            if not fetched:
                records = self.handler.idle() if self.ready else ()
                if records:  # e.g. audit checkpoints due by time: a transaction without source offsets
                    await self._commit_and_confirm(records, {}, 0)
                return
            messages = [Message(tp.topic, tp.partition, r.offset, r.key, r.value, _credential(r.headers))
                        for tp, records in fetched.items() for r in records]  # fmt: skip
            offsets = {tp: records[-1].offset + 1 for tp, records in fetched.items() if records}
            started = time.perf_counter()
            records = self.handler.process(messages)
            metrics.child(metrics.BATCH_PHASE, "process").observe(time.perf_counter() - started)
            metrics.BATCH_MESSAGES.observe(len(messages))
            await self._commit_and_confirm(records, offsets, len(messages))

    async def _commit_and_confirm(self, records: Sequence[Produce], offsets: dict[TopicPartition, int],
                                  messages: int) -> None:  # fmt: skip
        """One transaction, then the handler's after-commit step; a failed one is aborted and its messages
        are processed again (under the lock)."""
        started = time.perf_counter()
        try:
            # Bounded: a transaction that neither commits nor fails (seen once after a broker restart, the
            # loop waiting for 10 minutes) is given up and redone like a failed one.
            await asyncio.wait_for(self._commit(records, offsets), self._commit_limit_s)
        except ProducerFenced as exc:
            raise Fenced(f"transactional id {self.config.transactional_id} was taken over") from exc
        except (KafkaError, TimeoutError) as exc:
            log.error("a batch of %d messages was not committed (%r): aborted; reprocessing it", messages, exc)
            await self._recover()
            return
        committed = time.perf_counter()
        metrics.child(metrics.BATCH_PHASE, "commit").observe(committed - started)
        try:
            await asyncio.wait_for(self.handler.committed(), self._commit_limit_s)
        except TimeoutError:
            log.warning("the state's after-commit step took over %.0f s; skipped", self._commit_limit_s)
        metrics.child(metrics.BATCH_PHASE, "after_commit").observe(time.perf_counter() - committed)

    async def _rewind(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        """... and its partitions still assigned here are sought back to their committed offsets: getmany
        may have returned them under the new assignment, which moved the positions past the dropped records
        (found by the two-process benchmark: 2,000 events of a partition skipped)."""
        assigned = self.consumer.assignment()
        for tp in fetched:
            if tp in assigned:
                await self._seek_to_committed(tp)

    async def _seek_to_committed(self, tp: TopicPartition) -> None:
        committed = await self.consumer.committed(tp)
        if committed is None:
            await self.consumer.seek_to_beginning(tp)
        else:
            self.consumer.seek(tp, committed)

    async def _commit(self, records: Sequence[Produce], offsets: dict[TopicPartition, int]) -> None:
        """One transaction. On any failure it is left open, for :meth:`_recover` to abandon with its producer
        (no abort from this producer: see :func:`_abandon`)."""
        p = self.producer
        await p.begin_transaction()
        self._unfinished = True
        sent = self._sent = []
        self._touched = set()
        await self._send_all(records, sent)
        if offsets:
            await p.send_offsets_to_transaction(offsets, self.config.group_id)
        # Every batch acknowledged before the commit: aiokafka commits a transaction even when one of its
        # batches failed (expired waiting for a partition leader, say), which would commit the offsets
        # without those records. A failed batch raises here and the transaction is redone instead.
        await asyncio.gather(*sent)
        await p.commit_transaction()
        self._unfinished = False

    async def _send_all(self, records: Sequence[Produce], sent: list[asyncio.Future[Any]]) -> None:
        """Append the records to one batch builder per partition and hand each full builder to the producer:
        a ``send()`` per record cost ~13 µs each, more than the hub's own work on some outputs. The partition
        of a keyed record is the producer's own partitioner's choice, as ``send()`` would make it (remembered per key
        while the topic's partitions stay the same). Each batch's delivery future goes to ``sent``."""
        p = self.producer
        builders: dict[TopicPartition, Any] = {}
        partitions: dict[str, tuple[frozenset[int], list[int]]] = {}  # each topic's, read once per batch
        placed = self._placed
        for r in records:
            partition = r.partition
            if partition is None:
                known = partitions.get(r.topic)
                if known is None:
                    # Asked of this producer's own metadata every batch: a producer made after a failed
                    # transaction starts without any (a per-loop "known" set once crashed the worker here after
                    # a broker restart: aiokafka's partitioner read None partitions). Chosen from this snapshot,
                    # not from the live metadata, which a refresh may replace between two records.
                    found = await p.client._wait_on_metadata(r.topic)
                    known = partitions[r.topic] = (frozenset(found), sorted(found))
                parts, ordered = known
                hit = None if r.key is None else placed.get((r.topic, r.key))
                if hit is not None and (hit[0] is parts or hit[0] == parts):
                    partition = hit[1]
                else:
                    partition = p._partitioner(r.key, ordered, ordered)  # the default partitioner's choice
                    if r.key is not None:
                        if len(placed) >= 4096:
                            placed.clear()
                        placed[(r.topic, r.key)] = (parts, partition)
            tp = TopicPartition(r.topic, partition)
            builder = builders.get(tp)
            if builder is None:
                # Touched from here: a full builder goes to the producer below, before the loop ends. A commit
                # given up in the middle of it (its time limit, during a broker restart) must sweep those too.
                self._touched.add(tp)
                builder = builders[tp] = p.create_batch()
            if builder.append(key=r.key, value=r.value, timestamp=None) is not None:
                continue
            if builder.record_count():  # full: send it, start the next one
                sent.append(await p.send_batch(builder, tp.topic, partition=tp.partition))
                builder = builders[tp] = p.create_batch()
                if builder.append(key=r.key, value=r.value, timestamp=None) is not None:
                    continue
            # larger than a batch: on its own
            sent.append(await p.send(r.topic, r.value, key=r.key, partition=tp.partition))
        for tp, builder in builders.items():
            if builder.record_count():
                sent.append(await p.send_batch(builder, tp.topic, partition=tp.partition))

    async def _abandon(self) -> None:
        self._to_sweep |= self._touched  # what it may have written, whether acknowledged or not
        self._touched = set()
        for future in self._sent:  # their failure is known: not "never retrieved" when they fail below
            future.cancel()
        self._sent = []
        await _abandon(self.producer)
        self.producer = None
        self._unfinished = False

    async def _recover(self) -> None:
        """After a failed transaction: a new producer, the committed state, the committed offsets."""
        if self.producer is not None:
            await self._abandon()
        while True:
            try:
                self.producer = await self._new_producer()
                await asyncio.wait_for(self._sweep(), self._commit_limit_s)
                for tp in set(self.consumer.assignment()):
                    await self._seek_to_committed(tp)
                await self._load(self._held)
                return
            except ProducerFenced as exc:
                raise Fenced(f"transactional id {self.config.transactional_id} was taken over") from exc
            except (KafkaError, TimeoutError) as exc:
                log.warning("recovering from a failed transaction: %r; retrying", exc)
                if self.producer is not None:  # e.g. the sweep's own transaction failed: abandoned the same way
                    await self._abandon()
                await asyncio.sleep(1.0)

    async def _sweep(self) -> None:
        """Close every partition a given-up transaction wrote to with an abort marker of this producer's epoch.

        The new producer's ``InitProducerId`` makes the broker abort the given-up transaction, but only on the
        partitions its coordinator had in that transaction: after a broker restart a record of it was seen on a
        partition without any marker (epoch 0), and the redo's commit marker (epoch 1) then committed it with
        the redo — a delivery twice (defect 22). One record per such partition in a transaction that is then
        aborted ends each of them in an abort marker of the new epoch, which aborts whatever of this producer
        id is still open there, and fences the old epoch from writing there again. The swept records are
        aborted: ``read_committed`` readers (every reader of the hub) never see them."""
        if not self._to_sweep:
            return
        p = self.producer
        tps = sorted(self._to_sweep)
        await p.begin_transaction()
        self._unfinished = True  # a failed sweep is abandoned; its partitions stay in _to_sweep for the next
        mark = [(HEADER_SWEEP, b"1")]
        sent = self._sent = [await p.send(tp.topic, b"", key=b"", partition=tp.partition, headers=mark) for tp in tps]
        await asyncio.gather(*sent)
        await p.abort_transaction()
        self._unfinished = False
        self._sent = []
        self._to_sweep.clear()
        log.warning("closed the %d partitions of a given-up transaction with an abort marker", len(tps))

    async def _load(self, partitions: set[int]) -> None:
        started = time.monotonic()
        wanted = set(partitions)
        await self.handler.load(wanted)
        if self._pending is not None:
            self._pending -= wanted
        log.info("state of partitions %s loaded in %.2f s", sorted(wanted), time.monotonic() - started)

    # -- rebalances ------------------------------------------------------------------------------------

    async def revoked(self) -> None:
        async with self._lock:  # the batch in hand is committed first
            self._epoch += 1

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        async with self._lock:
            numbers = {tp.partition for tp in assigned}
            self.handler.drop(self._held - numbers)
            self._pending = numbers - self._held
            self._held = numbers
            log.info("assigned partitions %s (%d to load)", sorted(numbers), len(self._pending))


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: TransactionalLoop) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.loop.revoked()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.loop.assigned(set(assigned))


def _credential(headers: Sequence[tuple[str, bytes]] | None) -> str | None:
    """The ``hub-credential`` header the gateway sets (which credential sent the event), if any."""
    for name, value in headers or ():
        if name == HEADER_CREDENTIAL and isinstance(value, bytes | bytearray):
            return bytes(value).decode("utf-8", "replace")[:200]
    return None


async def _abandon(producer: Any) -> None:
    """Drop a transactional producer whose transaction failed, sending nothing more of it.

    Neither ``abort_transaction()`` nor ``stop()``: aiokafka never expires a transactional batch, so both first
    send the failed transaction's unsent records (after a broker restart: once the broker is back). Here its
    unsent batches are failed, its sender is stopped and its connections closed; the next producer of the
    transactional id fences it (``InitProducerId`` aborts the open transaction under a new epoch). This does
    not close docs/reliability.md defect 22: after a broker restart the broker can leave a partition of the
    aborted transaction without its abort marker, and the next transaction's commit then commits that record.
    """
    producer._closed = True  # its stop() would flush
    unsent = producer._message_accumulator
    batches = [b for queue in unsent._batches.values() for b in queue] + list(unsent._pending_batches)
    unsent.fail_all(KafkaError("the transaction was abandoned"))
    for batch in batches:  # their failure is known here: no "exception was never retrieved" at shutdown
        for future in (batch.future, batch._drain_waiter):
            if future.done() and not future.cancelled():
                future.exception()
    task = producer._sender.sender_task
    if task is not None and not task.done():
        task.cancel()
    try:
        await asyncio.wait_for(producer.client.close(), 10.0)
    except Exception as exc:  # best effort: the broker may be away
        log.debug("closing an abandoned producer's connections: %r", exc)
    if task is not None:
        await asyncio.wait({task}, timeout=10.0)  # its in-flight requests end with the connections
