"""The worker's state, kept per partition number and written to compacted changelog topics.

Every state kind — dedup marks (``hub.dedup``), consent (``hub.consent``), burglary-wave alert flags
(``hub.lagesbild-alerts``) — lives in the changelog partition with the number of the source partition that
changed it. The agency topics and ``hub.lagesbild`` have the same partition count and the group's range
assignment gives a worker the same partition numbers of every topic, and the connectors key by person, so
one person's consent and events meet in one partition number and one worker.

A :class:`PartitionedTable` is what :class:`hub.pipeline.Pipeline` reads and writes as a mapping: lookups
and writes go to the partition being processed (:attr:`PartitionedTable.current`), every write is remembered
until the batch collects it (:meth:`PartitionedTable.drain`) and writes it into the batch's transaction.
A revoked partition's state is dropped; an assigned one is loaded from its changelog (read_committed).
The tables that grow with history (dedup marks, consent) keep the same interface on disk
(:class:`hub.worker.disk.DiskTable`); this in-memory one holds the wave-alert flags.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class StateRecord:
    """One changelog record: ``key`` → ``value`` (None deletes) in ``partition`` of ``topic``."""

    topic: str
    partition: int
    key: bytes
    value: bytes | None


def encode_key(key: str) -> bytes:
    """Always the same bytes for one key (compaction keeps the last record per key's bytes): the standard
    library's ASCII-escaped form, as the faust tables before wrote it."""
    return json.dumps(key).encode()


def encode_value(value: Any) -> bytes:
    return orjson.dumps(value)


class PartitionedTable(MutableMapping[str, Any]):
    """A mapping per partition number, backed by the compacted changelog ``topic``."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.partitions: dict[int, dict[str, Any]] = {}
        self.current = 0
        """The partition whose message is being processed: where lookups and writes go."""
        self._dirty: dict[tuple[int, str], Any] = {}

    # -- partitions ------------------------------------------------------------------------------------

    def load(self, partition: int, records: dict[str, Any]) -> None:
        self.partitions[partition] = records

    def drop(self, partition: int) -> None:
        self.partitions.pop(partition, None)

    def at(self, partition: int) -> PartitionedTable:
        """This table with ``partition`` current (for the next message)."""
        self.current = partition
        return self

    def drain(self) -> list[StateRecord]:
        """The changelog records of every write since the last drain, the last value per key."""
        out = [StateRecord(self.topic, p, encode_key(k), None if v is None else encode_value(v))
               for (p, k), v in self._dirty.items()]  # fmt: skip
        self._dirty.clear()
        return out

    def size(self) -> int:
        return sum(len(d) for d in self.partitions.values())

    # -- the mapping (of the current partition) ------------------------------------------------------------

    def _here(self) -> dict[str, Any]:
        return self.partitions.setdefault(self.current, {})

    def __getitem__(self, key: str) -> Any:
        return self._here()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._here().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._here()

    def __setitem__(self, key: str, value: Any) -> None:
        self._here()[key] = value
        self._dirty[(self.current, key)] = value

    def __delitem__(self, key: str) -> None:
        del self._here()[key]
        self._dirty[(self.current, key)] = None

    def __iter__(self) -> Iterator[str]:
        return iter(self._here())

    def __len__(self) -> int:
        return len(self._here())
