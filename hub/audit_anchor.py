"""The anchor store: the audit checkpoints kept outside the Kafka cluster, where a broker's writer cannot go.

:class:`AnchorStore` is what the worker and ``hub audit verify`` need; :class:`FileAnchors` (the default) is
one append-only JSON-lines file per audit partition (``partition-<n>.jsonl``) under one folder, each append
fsynced (and the folder, when a file is new). Another store (WORM object storage, a timestamping service)
implements the same three methods.

A line is a checkpoint as its signature covers it: ``partition``, ``seq``, ``head``, ``at`` (ms), ``key_id``,
``signature``. The worker appends a batch's checkpoints after the batch's transaction committed, so every
anchored checkpoint is one the topic held; a crash in between leaves a checkpoint unanchored (the next one
anchors the chain again).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson


class AnchorStore(Protocol):
    def append(self, checkpoints: Sequence[dict[str, Any]]) -> None:
        """Store these checkpoints durably (returns once they are)."""

    def read(self, partition: int) -> list[dict[str, Any]]:
        """Every checkpoint anchored for ``partition``, in the order appended."""

    def partitions(self) -> list[int]:
        """The partitions with anchored checkpoints."""


def anchor_line(cp: dict[str, Any]) -> dict[str, Any]:
    at = cp["at"]
    return {"partition": cp["partition"], "seq": cp["seq"], "head": cp["head"],
            "at": at if isinstance(at, int) else int(at.timestamp() * 1000), "key_id": cp["key_id"],
            "signature": cp["signature"]}  # fmt: skip


class FileAnchors:
    """One fsynced, append-only JSON-lines file per partition under ``directory`` (made 0700)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, partition: int) -> Path:
        return self.directory / f"partition-{partition}.jsonl"

    def append(self, checkpoints: Sequence[dict[str, Any]]) -> None:
        if not checkpoints:
            return
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        lines: dict[int, bytes] = {}
        for cp in checkpoints:
            line = anchor_line(cp)
            lines[line["partition"]] = lines.get(line["partition"], b"") + orjson.dumps(line) + b"\n"
        for partition, data in lines.items():
            path = self.path(partition)
            new = not path.exists()
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            if new:
                dir_fd = os.open(self.directory, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)

    def read(self, partition: int) -> list[dict[str, Any]]:
        path = self.path(partition)
        if not path.exists():
            return []
        out = []
        for n, line in enumerate(path.read_bytes().splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise AnchorError(f"{path} line {n} is not JSON") from exc
            if not isinstance(entry, dict):
                raise AnchorError(f"{path} line {n} is not a checkpoint")
            out.append(entry)
        return out

    def partitions(self) -> list[int]:
        if not self.directory.exists():
            return []
        found = []
        for p in self.directory.glob("partition-*.jsonl"):
            number = p.stem.removeprefix("partition-")
            if number.isdigit():
                found.append(int(number))
        return sorted(found)


class AnchorError(RuntimeError):
    """The anchor store holds something that is not a checkpoint."""
