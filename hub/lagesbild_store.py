"""Where the lägesbild stage keeps its state: per partition of ``hub.lagesbild``, in a compacted changelog.

The state (:class:`hub.flows.lagesbild.Counts`: one record per counted event) is written through to the
changelog partition with the same number as the ``hub.lagesbild`` partition the event came from, and read
back from there when the partition is assigned to this worker — directly with aiokafka, in large batches.
A faust table did the same at 2–7k records/s during recovery (an asyncio task and a debug f-string per
record); reading the changelog here is an order of magnitude faster, which is what bounds the time a
restarted or newly assigned worker needs before it counts again.

The worker (:mod:`hub.worker.batch`) loads a partition's state before it processes any increment of it,
and reports ready only once every assigned partition is loaded.
"""

from __future__ import annotations

import json
import logging
import time

import orjson

from hub.flows.lagesbild import Counts
from hub.kafka.clients import KafkaAccess
from hub.kafka.read import read_compacted

log = logging.getLogger(__name__)


def encode_record(key: str, aggregate_keys: list[str]) -> tuple[bytes, bytes]:
    """The state record of one counted event: ``receiver|municipality|event id`` → its aggregate keys (JSON).

    Encoded with the standard library: many small ``orjson.dumps`` results held at once were seen to take
    ~4 KiB of RSS each (1M records: 8 GB); decoding, the hot path on a restart, uses orjson."""
    return json.dumps(key).encode(), json.dumps(aggregate_keys, separators=(",", ":")).encode()


def decode_record(key: bytes, value: bytes | None) -> tuple[str, list[str] | None]:
    """The inverse of :func:`encode_record`; a tombstone (value None) decodes to None."""
    return orjson.loads(key), None if value is None else orjson.loads(value)


async def load_partitions(kafka: KafkaAccess, topic: str, partitions: set[int]) -> dict[int, Counts]:
    """The counts the changelog partitions hold, one reader for all of them (later records replace earlier
    ones; tombstones delete). Logs each partition's load (``bench.bench_recovery`` reads that line)."""
    started = time.monotonic()
    contributions = await read_compacted(kafka, topic, partitions)
    out = {p: Counts(c) for p, c in contributions.items()}
    elapsed = time.monotonic() - started
    for p, counts in sorted(out.items()):
        log.info("lägesbild partition %d loaded: %d counted events, %d aggregates in %.2f s", p,
                 len(counts.contributions), len(counts.counts), elapsed)  # fmt: skip
    return out
