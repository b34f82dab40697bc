"""`hub kafka up --nodes 3` as an operator runs it: three KRaft nodes from the pinned Maven artifact, secured
like the single node, every hub topic replicated 3 times with min.insync.replicas 2 (read back from the
brokers), one node killed and the cluster still taking acks=all writes, the node back, and nothing left
running after `down`."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.kafka import clients
from hub.kafka.cluster import LocalCluster
from hub.kafka.shape import node_port
from hub.kafka.topic_config import current_configs
from hub.topics import Topics
from tests import factories as f
from tests.hub.support import SERDE
from tests.kafka_env import kafka_processes_of

pytestmark = [pytest.mark.kafka, pytest.mark.cluster]
NODES = 3


def _hub(env: dict[str, str], *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False, stdin=subprocess.DEVNULL)  # fmt: skip


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_bases() -> tuple[int, int, int]:
    """Client, controller and internal base ports whose every node's port (base + 10 × i) is free now."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 60000, 100)
        bases = (base, base + 1, base + 2)
        if all(_free(node_port(b, n)) for b in bases for n in range(1, NODES + 1)):
            return bases
    raise RuntimeError("no free block of ports for a local cluster")



@pytest.fixture(scope="module")
def cluster_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    state = tmp_path_factory.mktemp("cluster") / "state"
    port, controller, internal = _port_bases()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_STATE_DIR=str(state), HUB_LOCAL_KAFKA__PORT=str(port),
               HUB_LOCAL_KAFKA__CONTROLLER_PORT=str(controller), HUB_LOCAL_KAFKA__INTERNAL_PORT=str(internal),
               HUB_ENV="dev", HUB_TOPIC_NAMESPACE="c1.")  # fmt: skip
    try:
        yield env
    finally:
        _hub(env, "kafka", "down")


def _cluster(env: dict[str, str]) -> LocalCluster:
    return LocalCluster(Path(env["HUB_STATE_DIR"]) / "kafka", NODES, port=int(env["HUB_LOCAL_KAFKA__PORT"]),
                        controller_port=int(env["HUB_LOCAL_KAFKA__CONTROLLER_PORT"]),
                        internal_port=int(env["HUB_LOCAL_KAFKA__INTERNAL_PORT"]))  # fmt: skip


async def _replicas(cluster: LocalCluster, names: list[str]) -> dict[str, int]:
    """Per topic: the smallest replica count of its partitions, as the brokers say."""
    admin = clients.admin(cluster.admin_access())
    await admin.start()
    try:
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    return {t["topic"]: min(len(p["replicas"]) for p in t["partitions"]) for t in described}


async def _acknowledged(cluster: LocalCluster, topic: str, n: int) -> int:
    producer = clients.producer(cluster.access_as("polisen"), acks="all", enable_idempotence=True,
                                request_timeout_ms=20000)  # fmt: skip
    await producer.start()
    try:
        sent = [await producer.send_and_wait(topic, SERDE.encode(f.incident_notice())) for _ in range(n)]
    finally:
        await producer.stop()
    return len(sent)


def test_a_three_node_cluster_replicates_every_hub_topic_and_survives_a_node(cluster_env: dict[str, str]) -> None:
    env = cluster_env
    home = Path(env["HUB_STATE_DIR"]) / "kafka"
    up = _hub(env, "kafka", "up", "--nodes", str(NODES))
    assert up.returncode == 0, up.stderr
    ports = [node_port(int(env["HUB_LOCAL_KAFKA__PORT"]), n) for n in range(1, NODES + 1)]
    assert up.stdout.strip() == ",".join(f"127.0.0.1:{p}" for p in ports)
    again = _hub(env, "kafka", "up")  # idempotent, and remembers the shape
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == up.stdout.strip()
    assert len(kafka_processes_of(home)) == NODES

    status = json.loads(_hub(env, "kafka", "status", "--json").stdout)
    assert status["running"] is True
    assert [(n["node"], n["running"]) for n in status["nodes"]] == [(1, True), (2, True), (3, True)]
    assert "--- node 3" in _hub(env, "kafka", "logs", "-n", "5").stdout

    created = _hub(env, "topics", "create")
    assert created.returncode == 0, created.stderr
    assert "with replication factor 3, min.insync.replicas 2" in created.stdout
    cluster = _cluster(env)
    from hub.kafka.admin import hub_topics
    from hub.settings import HubSettings

    names = [s.name for s in hub_topics(HubSettings(topic_namespace="c1."))]
    replicas = asyncio.run(_replicas(cluster, names))
    isr = {n: c.get("min.insync.replicas") for n, c in current_configs(cluster.admin_access(), names,
                                                                 keys=("min.insync.replicas",)).items()}
    assert set(replicas) == set(names)
    assert {name: n for name, n in replicas.items() if n != NODES} == {}
    assert {name: v for name, v in isr.items() if v != "2"} == {}

    # One node crashes: acks=all writes still succeed on the two in-sync replicas.
    assert _hub(env, "kafka", "stop-node", "2").stdout.strip() == "killed"
    down_one = _hub(env, "kafka", "status", "--json")
    assert down_one.returncode == 3  # not every node runs
    assert [n["running"] for n in json.loads(down_one.stdout)["nodes"]] == [True, False, True]
    assert asyncio.run(_acknowledged(cluster, Topics("c1.").agency("polisen"), 20)) == 20
    back = _hub(env, "kafka", "start-node", "2")
    assert back.returncode == 0, back.stderr
    assert _hub(env, "kafka", "status").returncode == 0

    down = _hub(env, "kafka", "down")
    assert down.stdout.strip() == "stopped"
    assert kafka_processes_of(home) == []
