"""The shape of the local Kafka cluster ``hub kafka up --nodes N`` made: how many nodes, which cluster id.

Kept in ``<kafka home>/cluster.json`` so every later command (``status``, ``down``, ``logs``, a client's
bootstrap list) sees every node. Node ``i`` (1-based) listens on the configured ports plus
``PORT_STEP × (i - 1)``. Nothing here starts or talks to anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

PORT_STEP = 10
SHAPE_FILE = "cluster.json"


@dataclass(frozen=True)
class Shape:
    nodes: int
    cluster_id: str


def read_shape(home: Path) -> Shape | None:
    """The cluster recorded in ``home`` (N > 1 nodes), or None: a single node."""
    try:
        data = json.loads((home / SHAPE_FILE).read_text())
        shape = Shape(int(data["nodes"]), str(data["cluster_id"]))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    return shape if shape.nodes > 1 else None


def write_shape(home: Path, shape: Shape) -> None:
    (home / SHAPE_FILE).write_text(json.dumps({"nodes": shape.nodes, "cluster_id": shape.cluster_id}))


def forget_shape(home: Path) -> None:
    (home / SHAPE_FILE).unlink(missing_ok=True)


def node_port(port: int, node: int) -> int:
    """Node ``node``'s (1-based) port for the first node's ``port``."""
    return port + PORT_STEP * (node - 1)


def bootstrap_list(host: str, port: int, nodes: int) -> str:
    return ",".join(f"{host}:{node_port(port, n)}" for n in range(1, nodes + 1))


def min_isr_for(replication: int) -> int:
    """min.insync.replicas for a replication factor: 2 of 3 or more (one node may be down), else all of them."""
    return 2 if replication >= 3 else replication
