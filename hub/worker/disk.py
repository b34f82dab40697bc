"""The worker's state that grows with history, on disk: one RocksDB per table and partition number.

Two tables are kept here, the others in memory (:mod:`hub.worker.state`):

- the **dedup marks** (``source unit|event id`` → first seen at, and where), kept for the dedup window
  (``HUB_DEDUP_WINDOW_HOURS``, default 7 days): their number is window × rate — at 400 events/s ~240M marks
  a week, far more than memory should hold. Marks older than the window are deleted, oldest first (an index
  by first-seen time), at most :data:`SWEEP_LIMIT` per batch, each with a tombstone in the batch's
  transaction, so the changelog — and a rebuild from it — stays window-sized too (the broker drops
  tombstones after the topic's ``delete.retention.ms``);
- the **consent state** (person × scope × recording municipality → the latest consent decision), which
  grows with the people who ever had a consent on record.

They live under ``<state dir>/worker/<instance>/<table>/<partition>`` (``rocksdict``); the worker's memory
does not grow with them (RocksDB's own is capped: :func:`_options`). Each table's compacted changelog
(``hub.dedup``, ``hub.consent``) stays the source of truth, written in each batch's transaction as before;
the local store is a cache of it that survives a restart:

- a batch's changes are written to the store only once its transaction has committed
  (:meth:`DiskTable.write_committed`); a batch that aborted leaves the store as it was, and is processed
  again from its committed offsets against the state it was first processed against;
- each store records the changelog offset up to which it holds the changelog (the *checkpoint*); loading a
  partition replays only the changelog after the checkpoint, so a restarted worker is ready in seconds
  whatever the window holds. The checkpoint moves up after a committed batch (at most every
  :data:`CHECKPOINT_EVERY_S`), to the changelog's end then, which every write of this store precedes;
- a store whose checkpoint lies beyond the changelog's end (the topic was recreated) or that was written for
  another topic is discarded and rebuilt from the changelog.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import orjson
from aiokafka import TopicPartition
from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch

from hub import metrics
from hub.kafka import clients
from hub.kafka.clients import KafkaAccess
from hub.kafka.read import read_batches_from
from hub.worker.state import StateRecord, encode_key

log = logging.getLogger(__name__)

SWEEP_LIMIT = 20_000
"""Expired marks deleted per batch at most (a backlog of expired marks is worked off over several batches)."""
CHECKPOINT_EVERY_S = 30.0

_VALUE = b"m"
_INDEX = b"t"
_META = b"\x00meta"


def _index_key(at_ms: int, key: bytes) -> bytes:
    return _INDEX + max(at_ms, 0).to_bytes(8, "big") + key


WRITE_BUFFER_BYTES = 2 * 1024 * 1024
"""Per store, at most two memtables of this size before RocksDB flushes them to disk."""
BLOCK_CACHE_BYTES = 8 * 1024 * 1024
"""One block cache for every store of the process (reads of marks not in a memtable)."""
_CACHE: Cache | None = None


def _options() -> Options:
    """RocksDB's memory bounded by the constants above, whatever the marks' number."""
    global _CACHE
    if _CACHE is None:
        _CACHE = Cache(BLOCK_CACHE_BYTES)
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(WRITE_BUFFER_BYTES)
    options.set_max_write_buffer_number(2)
    table = BlockBasedOptions()
    table.set_block_cache(_CACHE)
    table.set_cache_index_and_filter_blocks(True)
    options.set_block_based_table_factory(table)
    return options


class _Store:
    """One table's records of one partition number; ``indexed``: with the index by first-seen time (the
    value's first element, epoch ms) that expiry walks."""

    def __init__(self, path: Path, topic: str, indexed: bool) -> None:
        self.path = path
        self.topic = topic
        self.indexed = indexed
        self.db = self._open()
        meta = self.db.get(_META)
        state = orjson.loads(meta) if meta else {}
        self.checkpoint: int = int(state.get("checkpoint", 0)) if state.get("topic") == topic else -1
        """Changelog records below this offset are in the store; -1: the store is not this topic's."""

    def _open(self) -> Rdict:
        self.path.mkdir(parents=True, exist_ok=True)
        return Rdict(str(self.path), _options())

    def reset(self) -> None:
        """Empty the store (it does not match its changelog)."""
        self.db.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self.db = self._open()
        self.checkpoint = 0

    def set_checkpoint(self, offset: int) -> None:
        self.checkpoint = offset
        self.db[_META] = orjson.dumps({"topic": self.topic, "checkpoint": offset})

    def get(self, key: str) -> Any:
        raw = self.db.get(_VALUE + key.encode())
        return None if raw is None else orjson.loads(raw)

    def write(self, changes: dict[str, Any]) -> None:
        """Apply ``key → value`` (None deletes) in one write."""
        batch = WriteBatch(raw_mode=True)
        for key, value in changes.items():
            raw = key.encode()
            if self.indexed:
                old = self.db.get(_VALUE + raw)
                if old is not None:
                    batch.delete(_index_key(orjson.loads(old)[0], raw))
            if value is None:
                batch.delete(_VALUE + raw)
            else:
                batch.put(_VALUE + raw, orjson.dumps(value))
                if self.indexed:
                    batch.put(_index_key(int(value[0]), raw), b"")
        self.db.write(batch)

    def expired(self, before_ms: int, limit: int) -> list[str]:
        """Keys of up to ``limit`` marks first seen before ``before_ms``, oldest first."""
        out: list[str] = []
        it = self.db.iter()
        it.seek(_INDEX)
        end = _index_key(before_ms, b"")
        while it.valid() and len(out) < limit:
            k = it.key()
            if not k.startswith(_INDEX) or k >= end:
                break
            out.append(k[9:].decode())
            it.next()
        del it
        return out

    def count(self) -> int:
        """The number of records (counted: an estimate is not good enough for the tests)."""
        n = 0
        it = self.db.iter()
        it.seek(_VALUE)
        while it.valid() and it.key().startswith(_VALUE):
            n += 1
            it.next()
        del it
        return n

    def close(self) -> None:
        self.db.close()


class DiskTable(MutableMapping[str, Any]):
    """A table :class:`hub.pipeline.Pipeline` reads and writes (``get``, ``in``, ``[key] = value``) for the
    partition being processed (:attr:`current`), on disk; the batch's writes are collected for its
    transaction by :meth:`drain`, as :class:`hub.worker.state.PartitionedTable` does. ``window_ms``: records
    expire that long after their first element (epoch ms) — the dedup marks; None: they never expire."""

    def __init__(self, topic: str, directory: Path, window_ms: int | None = None) -> None:
        self.topic = topic
        self.directory = directory
        self.window_ms = window_ms
        self.current = 0
        self.stores: dict[int, _Store] = {}
        self._dirty: dict[int, dict[str, Any]] = {}
        """The batch being processed: its writes per partition."""
        self._pending: dict[int, dict[str, Any]] = {}
        """Drained into a transaction, written to the stores once it committed."""
        self._checkpointed = time.monotonic()
        self._offsets: Any = None
        """A consumer kept for the changelog's end offsets (one ListOffsets request per checkpoint)."""

    # -- partitions --------------------------------------------------------------------------------------

    async def recover(self, kafka: KafkaAccess, partitions: set[int]) -> None:
        """Open the stores of ``partitions`` and bring each up to the committed end of its changelog (what a
        batch not known to have committed changed is forgotten: it is processed again)."""
        for p in partitions:
            self._pending.pop(p, None)
            self._dirty.pop(p, None)
        tps = {TopicPartition(self.topic, p): self.open(p) for p in partitions}
        ends = await self._ends(kafka, list(tps))
        starts: dict[TopicPartition, int] = {}
        for tp, store in tps.items():
            if store.checkpoint < 0 or store.checkpoint > ends[tp]:
                log.warning("the local store of partition %d does not match %s (checkpoint %d, end %d): rebuilt from "
                            "the changelog", tp.partition, self.topic, store.checkpoint, ends[tp])  # fmt: skip
                store.reset()
            starts[tp] = store.checkpoint
        started = time.monotonic()
        replayed = {tp.partition: 0 for tp in tps}
        async for tp, records in read_batches_from(kafka, starts):
            changes: dict[str, Any] = {}
            for r in records:
                if r.key is not None:
                    changes[orjson.loads(r.key)] = None if r.value is None else orjson.loads(r.value)
            tps[tp].write(changes)
            replayed[tp.partition] += len(records)
        for tp, store in tps.items():
            store.set_checkpoint(ends[tp])
        for p in sorted(replayed):
            log.info("%s partition %d: %d changelog records replayed onto the local store in %.2f s",
                     self.topic, p, replayed[p], time.monotonic() - started)  # fmt: skip

    def open(self, partition: int) -> _Store:
        """The local store of ``partition``, opened (as it is on disk: :meth:`recover` brings it up to date)."""
        store = self.stores.get(partition)
        if store is None:
            store = self.stores[partition] = _Store(self.directory / str(partition), self.topic,
                                                    indexed=self.window_ms is not None)  # fmt: skip
        return store

    def drop(self, partition: int) -> None:
        store = self.stores.pop(partition, None)
        if store is not None:
            store.close()
        self._dirty.pop(partition, None)
        self._pending.pop(partition, None)

    async def checkpoint(self, kafka: KafkaAccess, force: bool = False) -> None:
        """After a committed batch: move every store's checkpoint up to its changelog's end (at most every
        :data:`CHECKPOINT_EVERY_S` unless ``force``)."""
        if not self.stores or (not force and time.monotonic() - self._checkpointed < CHECKPOINT_EVERY_S):
            return
        self._checkpointed = time.monotonic()
        stores = dict(self.stores)
        ends = await self._ends(kafka, [TopicPartition(self.topic, p) for p in stores])
        for tp, end in ends.items():
            store = stores.get(tp.partition)
            if store is not None and self.stores.get(tp.partition) is store:
                store.set_checkpoint(end)

    async def _ends(self, kafka: KafkaAccess, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """The committed end (last stable offset) of each changelog partition."""
        if not tps:
            return {}
        if self._offsets is None:
            consumer = clients.consumer(kafka, isolation_level="read_committed")
            await consumer.start()
            self._offsets = consumer
        return dict(await self._offsets.end_offsets(tps))

    async def close(self) -> None:
        for p in list(self.stores):
            self.drop(p)
        if self._offsets is not None:
            consumer, self._offsets = self._offsets, None
            await consumer.stop()

    # -- the batch ----------------------------------------------------------------------------------------

    def drain(self, now_ms: int | None = None) -> list[StateRecord]:
        """The changelog records of the batch's writes and, with a window, of the records it expired
        (tombstones); the changes are written to the stores by :meth:`write_committed`."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        out: list[StateRecord] = []
        for p, store in self.stores.items():
            changes = self._dirty.pop(p, {})
            if self.window_ms is not None:
                pending = self._pending.get(p, {})
                expired = [k for k in store.expired(now_ms - self.window_ms, SWEEP_LIMIT)
                           if k not in changes and k not in pending]  # fmt: skip
                changes.update(dict.fromkeys(expired))
                if expired:
                    metrics.DEDUP_EXPIRED.inc(len(expired))  # one lock per batch, not per mark
            if changes:
                self._pending.setdefault(p, {}).update(changes)
                out += [StateRecord(self.topic, p, encode_key(k), None if v is None else orjson.dumps(v))
                        for k, v in changes.items()]  # fmt: skip
        self._dirty.clear()
        return out

    def write_committed(self) -> None:
        """The drained changes' transaction committed: write them to the stores."""
        for p, changes in self._pending.items():
            store = self.stores.get(p)
            if store is not None:
                store.write(changes)
        self._pending.clear()

    def size(self) -> int:
        return sum(s.count() for s in self.stores.values())

    # -- the mapping the pipeline uses (of the current partition) -------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        for layer in (self._dirty, self._pending):
            changes = layer.get(self.current)
            if changes is not None and key in changes:
                value = changes[key]
                return default if value is None else value
        store = self.stores.get(self.current)
        if store is None:
            raise KeyError(f"partition {self.current} of {self.topic} is not loaded here")
        value = store.get(key)
        return default if value is None else value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __getitem__(self, key: str) -> Any:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self._dirty.setdefault(self.current, {})[key] = value

    def __delitem__(self, key: str) -> None:
        self._dirty.setdefault(self.current, {})[key] = None

    def __len__(self) -> int:  # not used on the hot path
        return sum(1 for _ in self)

    def __iter__(self) -> Iterator[str]:  # not used on the hot path
        store = self.stores.get(self.current)
        if store is None:
            return iter(())
        it = store.db.iter()
        it.seek(_VALUE)
        keys = []
        while it.valid() and it.key().startswith(_VALUE):
            keys.append(it.key()[1:].decode())
            it.next()
        del it
        return iter(keys)

