"""Where the lägesbild stage keeps its state: per partition of ``hub.lagesbild``, in a compacted changelog.

The state (:class:`hub.flows.lagesbild.Counts`: one record per aggregate key, its count) is written to the
changelog partition with the same number as the ``hub.lagesbild`` partition the increments came from, one
record per key a batch changed, and read back from there when the partition is assigned to this worker —
directly with aiokafka, in large batches. Its size is the number of aggregate keys, not of events counted.

Records of the older form (``receiver|municipality|event id`` → the aggregate keys that event counted in,
written before the counts were kept per key) are converted on load: their keys are counted, and the first
batch writes the counts and a tombstone for each old record.
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
from typing import Any

import orjson

from hub.flows.lagesbild import Counts, Horizon
from hub.kafka.clients import KafkaAccess
from hub.kafka.read import read_compacted

log = logging.getLogger(__name__)


def encode_record(key: str, count: int) -> tuple[bytes, bytes]:
    """The state record of one aggregate key: ``receiver|municipality|area|category|period`` → its count."""
    return json.dumps(key).encode(), str(count).encode()


def decode_record(key: bytes, value: bytes | None) -> tuple[str, int | None]:
    """The inverse of :func:`encode_record`; a tombstone (value None) decodes to None."""
    return orjson.loads(key), None if value is None else int(orjson.loads(value))


def counts_of(records: dict[str, Any], horizon: Horizon | None = None) -> Counts:
    """The counts a changelog partition's records make, older per-event records converted (see above)."""
    counts: dict[str, int] = {}
    legacy: list[str] = []
    for key, value in records.items():
        if isinstance(value, list):  # an older per-event record: the keys that event counted in
            legacy.append(key)
            for aggregate in value:
                counts[aggregate] = counts.get(aggregate, 0) + 1
        elif isinstance(value, int) and not isinstance(value, bool):
            counts[key] = counts.get(key, 0) + value
    out = Counts(counts, horizon)
    if legacy:
        out.dirty.update(out.counts)
        out.retired.extend(legacy)
    return out


async def load_partitions(kafka: KafkaAccess, topic: str, partitions: set[int],
                          horizon: Horizon | None = None) -> dict[int, Counts]:  # fmt: skip
    """The counts the changelog partitions hold, one reader for all of them (later records replace earlier
    ones; tombstones delete). Logs each partition's load (``bench.bench_recovery`` reads that line)."""
    started = time.monotonic()
    records = await read_compacted(kafka, topic, partitions)
    out = {p: counts_of(r, horizon) for p, r in records.items()}
    elapsed = time.monotonic() - started
    for p, counts in sorted(out.items()):
        log.info("lägesbild partition %d loaded: %d aggregates (%d older per-event records converted) in %.2f s",
                 p, len(counts.counts), len(counts.retired), elapsed)  # fmt: skip
    return out
