"""One batch's walk through the worker, and the state it needs.

:class:`BatchProcessor` (no Kafka in it) takes a batch of messages as the transactional loop read them:
agency messages go through :class:`hub.pipeline.Pipeline` one by one, in offset order per partition, with
the partitioned state tables pointed at the message's partition, and the lägesbild increments they make are
coalesced into one per key with its count (county copies included) for ``hub.lagesbild``; the increments
read from ``hub.lagesbild`` are counted per partition (:meth:`LagesbildStage.process_batch`). It returns
every record to write in the batch's transaction: the outputs and the changelog records of the state the
batch changed.

:class:`WorkerState` is the handler the loop calls: it loads an assigned partition number's state (dedup
marks, consent, wave-alert flags, lägesbild counts, the audit chain's head) from the committed changelogs
before the partition's first message — the dedup marks and consent from their on-disk stores, brought up to
date from their changelogs (:mod:`hub.worker.disk`) — and drops it when the partition goes to another worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from hub.audit_anchor import AnchorStore
from hub.contract.outputs import AuditCheckpoint, AuditRecord
from hub.flows.lagesbild import Counts, coalesce
from hub.kafka.admin import last_records
from hub.kafka.clients import KafkaAccess
from hub.kafka.read import read_compacted
from hub.lagesbild_stage import LagesbildStage
from hub.lagesbild_store import load_partitions
from hub.pipeline import Message, Output, Pipeline
from hub.topics import Topics
from hub.worker.disk import DiskTable
from hub.worker.state import PartitionedTable, StateRecord

log = logging.getLogger(__name__)


@dataclass
class BatchProcessor:
    """Processes a batch of agency messages and lägesbild increments into the records to write."""

    pipeline: Pipeline
    stage: LagesbildStage
    topics: Topics
    tables: Sequence[PartitionedTable | DiskTable]
    """Every state table the pipeline and the stage write (dedup marks, consent, wave-alert flags)."""
    counts: dict[int, Counts]
    """The lägesbild counts per ``hub.lagesbild`` partition (loaded by :class:`WorkerState`)."""

    def process(self, messages: list[Message]) -> list[Output | StateRecord]:
        out: list[Output | StateRecord] = []
        increments: dict[int, list[tuple[bytes, int]]] = {}
        made: list[dict[str, Any]] = []
        lagesbild, access = self.topics.lagesbild, self.topics.access
        with self.pipeline.batch():  # its metrics reach /metrics once per batch
            for m in messages:
                if m.topic == lagesbild:
                    increments.setdefault(m.partition, []).append((m.value or b"", m.offset))
                    continue
                if m.topic == access:
                    out += self.pipeline.record_access(m).outputs
                    continue
                for table in self.tables:
                    table.current = m.partition
                result = self.pipeline.process(m)
                out += result.outputs
                made += result.increments
        for inc in coalesce(made, self.stage.county_code):
            key = f"{inc['receiver']}|{inc['municipality_code']}".encode()
            out.append(Output(lagesbild, key, orjson.dumps(inc)))
        for partition, values in increments.items():
            for table in self.tables:
                table.current = partition
            counts = self.counts.get(partition)
            if counts is None:
                counts = self.counts[partition] = Counts(horizon=self.stage.horizon)
            out += self.stage.process_batch(counts, values, partition)
        out += self.seal()
        for table in self.tables:
            out += table.drain()
        return out

    def seal(self) -> list[Output]:
        """Checkpoints of the audit chains not sealed for ``HUB_AUDIT__CHECKPOINT_SECONDS`` (after each batch,
        and when the loop is idle: :meth:`WorkerState.idle`)."""
        now = datetime.now(UTC)
        return [self.pipeline.checkpoint(p, now) for p in self.pipeline.chain.stale(int(now.timestamp() * 1000))]


class WorkerState:
    """The transactional loop's handler: state loading per partition number, and the batch processor."""

    def __init__(self, kafka: KafkaAccess, processor: BatchProcessor, anchors: AnchorStore | None = None) -> None:
        self.kafka = kafka
        self.processor = processor
        self.topics = processor.topics
        self.anchors = anchors
        """Where the audit checkpoints go once their batch committed (outside Kafka)."""

    def idle(self) -> list[Output]:
        """What to write when no message came: the checkpoints now due."""
        return self.processor.seal()

    def process(self, messages: list[Message]) -> list[Output | StateRecord]:
        return self.processor.process(messages)

    async def load(self, partitions: set[int]) -> None:
        if not partitions:
            return
        memory = [t for t in self.processor.tables if isinstance(t, PartitionedTable)]
        disk = [t for t in self.processor.tables if isinstance(t, DiskTable)]
        states, counts, heads, *_ = await asyncio.gather(
            asyncio.gather(*(read_compacted(self.kafka, t.topic, partitions) for t in memory)),
            load_partitions(self.kafka, self.topics.lagesbild_state, partitions, self.processor.stage.horizon),
            last_records(self.kafka, self.topics.audit, partitions),
            *(t.recover(self.kafka, partitions) for t in disk),
        )  # fmt: skip
        for table, records in zip(memory, states, strict=True):
            for p in partitions:
                table.load(p, records.get(p, {}))
        self.processor.counts.update(counts)
        chain = self.processor.pipeline.chain
        chain.made.clear()  # of a batch not known to have committed: its partitions are loaded again
        serde = self.processor.pipeline.serde
        for p, last in heads.items():
            record = serde.decode(last) if last is not None else None
            chain.set_head(p, record if isinstance(record, AuditRecord | AuditCheckpoint) else None)

    async def committed(self) -> None:
        """After a batch's transaction committed: its audit checkpoints are anchored, its changes to the
        on-disk state are written, and the stores' checkpoints move up (now and then)."""
        made = self.processor.pipeline.chain.made
        if made and self.anchors is not None:
            try:
                await asyncio.to_thread(self.anchors.append, list(made))  # fsynced: off the event loop
                made.clear()
            except OSError as exc:  # kept, and tried again after the next commit
                log.error("%d audit checkpoints not anchored yet (%s); trying again after the next batch",
                          len(made), exc)  # fmt: skip
        elif made:
            made.clear()
        await self._write_state()

    async def _write_state(self) -> None:
        for table in self.processor.tables:
            if isinstance(table, DiskTable):
                table.write_committed()
                try:
                    await table.checkpoint(self.kafka)
                except Exception as exc:  # best effort: a later checkpoint (or a longer replay) makes up for it
                    log.warning("%s not checkpointed: %r", table.topic, exc)

    async def close(self) -> None:
        """When the loop stops (after its last commit): checkpoint and close the on-disk state."""
        for table in self.processor.tables:
            if isinstance(table, DiskTable):
                try:
                    await table.checkpoint(self.kafka, force=True)
                finally:
                    await table.close()

    def drop(self, partitions: set[int]) -> None:
        for p in partitions:
            for table in self.processor.tables:
                table.drop(p)
            self.processor.counts.pop(p, None)
            self.processor.pipeline.chain.forget(p)
