"""Where the lägesbild stage keeps its state: per partition of ``hub.lagesbild``, in a compacted changelog.

The state (:class:`hub.flows.lagesbild.Counts`: one record per counted event) is written through to the
changelog partition with the same number as the ``hub.lagesbild`` partition the event came from, and read
back from there when the partition is assigned to this worker — directly with aiokafka, in large batches.
A faust table did the same at 2–7k records/s during recovery (an asyncio task and a debug f-string per
record); reading the changelog here is an order of magnitude faster, which is what bounds the time a
restarted or newly assigned worker needs before it counts again.

The agent awaits :meth:`LagesbildStore.counts` for the partition of each increment, so nothing is counted
before that partition's state is loaded; the worker reports ready only once every assigned partition is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable

import orjson

from hub.flows.lagesbild import Counts
from hub.kafka.clients import KafkaAccess
from hub.kafka.read import read_batches_to_end

log = logging.getLogger(__name__)


def encode_record(key: str, aggregate_keys: list[str]) -> tuple[bytes, bytes]:
    """The state record of one counted event: ``receiver|municipality|event id`` → its aggregate keys (JSON).

    Encoded with the standard library: many small ``orjson.dumps`` results held at once were seen to take
    ~4 KiB of RSS each (1M records: 8 GB); decoding, the hot path on a restart, uses orjson."""
    return json.dumps(key).encode(), json.dumps(aggregate_keys, separators=(",", ":")).encode()


def decode_record(key: bytes, value: bytes | None) -> tuple[str, list[str] | None]:
    """The inverse of :func:`encode_record`; a tombstone (value None) decodes to None."""
    return orjson.loads(key), None if value is None else orjson.loads(value)


async def load_partition(kafka: KafkaAccess, topic: str, partition: int) -> Counts:
    """The counts one changelog partition holds (later records replace earlier ones; tombstones delete)."""
    contributions: dict[str, list[str]] = {}
    async for _tp, records in read_batches_to_end(kafka, [topic], partitions={partition}):
        for r in records:  # the hot path of a restart: a million records take seconds
            if r.key is None:
                continue
            key, keys = decode_record(r.key, r.value)
            if keys is None:
                contributions.pop(key, None)
            else:
                contributions[key] = keys
    return Counts(contributions)


class LagesbildStore:
    """The loaded state of the ``hub.lagesbild`` partitions assigned to this worker."""

    def __init__(self, kafka: KafkaAccess, changelog: str) -> None:
        self.kafka = kafka
        self.changelog = changelog
        self._loading: dict[int, asyncio.Task[Counts]] = {}

    def assign(self, partitions: Iterable[int]) -> None:
        """Start loading newly assigned partitions (in the background)."""
        for p in partitions:
            if p not in self._loading:
                self._loading[p] = asyncio.ensure_future(self._load(p))

    def revoke(self, partitions: Iterable[int]) -> None:
        """Forget revoked partitions: another worker owns their state now. (A load under way is not
        cancelled: an increment of that partition still in the agent may be waiting for it; what it writes
        then is the same record the new owner writes.)"""
        for p in partitions:
            self._loading.pop(p, None)

    async def counts(self, partition: int) -> Counts:
        """The state of ``partition``, once loaded (loading it now if it was not assigned through :meth:`assign`)."""
        self.assign([partition])
        return await self._loading[partition]

    def ready(self) -> bool:
        return all(t.done() and not t.cancelled() and t.exception() is None for t in self._loading.values())

    async def _load(self, partition: int) -> Counts:
        started = time.monotonic()
        counts = await load_partition(self.kafka, self.changelog, partition)
        log.info("lägesbild partition %d loaded: %d counted events, %d aggregates in %.2f s", partition,
                 len(counts.contributions), len(counts.counts), time.monotonic() - started)  # fmt: skip
        return counts
