"""A local Apache Kafka cluster of several KRaft nodes (each a combined broker + controller) on this machine.

The operators' topology (docker-compose.yml: three brokers, replication 3, min.insync.replicas 2) made real
here from the same Maven artifact as the single node (:class:`hub.kafka.local.LocalBroker`): node ``i`` (1-based)
listens on the configured client, controller and internal ports plus ``10 × (i - 1)``, keeps its data and logs
under ``<home>/node-<i>``, and all nodes share one cluster id, one controller quorum and one security folder
(``<home>/security``: CA, broker certificate, SCRAM passwords). Secured as the single node is; users and ACLs
are provisioned once, when the quorum answers. ``<home>/cluster.json`` remembers the shape, so ``hub kafka
status | down | logs`` (and a later ``up``) cover every node.

Example::

    cluster = LocalCluster(Path(".hub/kafka"), nodes=3)
    cluster.up()                 # idempotent; returns "127.0.0.1:19092,127.0.0.1:19102,127.0.0.1:19112"
    cluster.stop_node(2)         # kill -9, as a crash
    cluster.start_node(2)
    cluster.down()
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hub.deadline import Deadline, DeadlineExceeded
from hub.kafka.clients import KafkaAccess
from hub.kafka.local import ADMIN, BrokerError, BrokerStatus, LocalBroker, new_cluster_id
from hub.kafka.metadata import wait_until_ready
from hub.kafka.pki import Pki
from hub.kafka.shape import Shape, node_port, read_shape, write_shape
from hub.settings import HubSettings


class LocalCluster:
    """Start, check, stop and break a local cluster of ``nodes`` KRaft nodes."""

    def __init__(
        self, home: Path, nodes: int = 3, *, version: str = "4.4.0", host: str = "127.0.0.1", port: int = 19092,
        controller_port: int = 19093, internal_port: int = 19094, heap: str = "384m", num_partitions: int = 4,
        start_timeout_s: float = 120.0, provision: Callable[[KafkaAccess, Pki], None] | None = None,
    ) -> None:  # fmt: skip
        if nodes < 2:
            raise ValueError("a cluster has at least two nodes (one node: LocalBroker)")
        self.home = home.resolve()
        shape = read_shape(self.home)
        if shape is not None and shape.nodes != nodes:
            raise BrokerError(f"{self.home} holds a cluster of {shape.nodes} nodes; `hub kafka down` and remove "
                              f"{self.home} to make one of {nodes}")  # fmt: skip
        self.cluster_id = shape.cluster_id if shape else new_cluster_id()
        self.host = host
        self.start_timeout_s = start_timeout_s
        self.provision = provision
        numbers = range(1, nodes + 1)
        voters = {n: node_port(controller_port, n) for n in numbers}
        self.nodes = [
            LocalBroker(
                self.home / f"node-{n}", version=version, host=host, port=node_port(port, n),
                controller_port=node_port(controller_port, n), internal_port=node_port(internal_port, n), heap=heap,
                num_partitions=num_partitions, start_timeout_s=start_timeout_s, node_id=n, voters=voters,
                cluster_id=self.cluster_id, replication=min(3, nodes), pki_root=self.home / "security",
            )
            for n in numbers
        ]  # fmt: skip

    # -- what clients need -------------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    @property
    def pki(self) -> Pki:
        return self.nodes[0].pki

    @property
    def version(self) -> str:
        return self.nodes[0].version

    def admin_access(self) -> KafkaAccess:
        return self.access_as(ADMIN)

    def access_as(self, principal: str) -> KafkaAccess:
        from pydantic import SecretStr

        return KafkaAccess(self.bootstrap, principal=principal, password=SecretStr(self.pki.ensure_password(principal)),
                           ca_file=self.pki.ca_file)  # fmt: skip

    def node(self, number: int) -> LocalBroker:
        """Node ``number`` (1-based)."""
        if not 1 <= number <= len(self.nodes):
            raise ValueError(f"no node {number}: the cluster has nodes 1–{len(self.nodes)}")
        return self.nodes[number - 1]

    def classpath(self) -> str:
        return self.nodes[0].classpath()

    def pid(self) -> int | None:
        """The first running node's pid, or None when no node runs."""
        return next((p for n in self.nodes if (p := n.pid()) is not None), None)

    # -- lifecycle ---------------------------------------------------------------------------------------

    def up(self) -> str:
        """Start every node that is not running; return the bootstrap list once the cluster answers as ``admin``
        (users and ACLs provisioned). A failed start stops what it started and prints the nodes' logs."""
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_shape(self.home, Shape(len(self.nodes), self.cluster_id))
        classpath = self.classpath()
        started = [n for n in self.nodes if n.pid() is None]
        procs = [n.launch(classpath) for n in started]
        deadline = Deadline(self.start_timeout_s, f"the Kafka cluster at {self.bootstrap}")

        def alive() -> bool:
            return all(p.poll() is None for p in procs)

        try:
            first = self.nodes[0]
            wait_until_ready(first.broker_access(), deadline, alive=alive)
            self._provision(first)
            wait_until_ready(self.admin_access(), deadline, alive=alive)
            self._wait_all_registered(deadline)
        except (RuntimeError, DeadlineExceeded) as exc:
            for n in started:
                n.kill()
            raise BrokerError(f"the Kafka cluster did not start: {exc}\n{self.failure_report()}") from exc
        return self.bootstrap

    def _provision(self, first: LocalBroker) -> None:
        if self.provision is not None:
            self.provision(first.broker_access(), self.pki)
            return
        from hub.kafka.provision import provision_local
        from hub.settings import HubSettings

        provision_local(first.broker_access(), self.pki, HubSettings())

    def _wait_all_registered(self, deadline: Deadline) -> None:
        """Until every node is a registered broker (topics of replication 3 can be created)."""
        import asyncio

        from hub.kafka.metadata import broker_ids

        want = {n.node_id for n in self.nodes}
        deadline.wait_for(lambda: asyncio.run(broker_ids(self.admin_access())) >= want, interval=0.5)

    def down(self, timeout_s: float = 60.0) -> bool:
        """Stop every node (SIGTERM to all at once: one by one, the last would wait for a quorum that has gone;
        SIGKILL after ``timeout_s``); True if any ran."""
        import threading

        running = [n for n in self.nodes if n.pid() is not None]
        threads = [threading.Thread(target=n.down, args=(timeout_s,)) for n in running]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return bool(running)

    def stop_node(self, number: int) -> bool:
        """kill -9 node ``number`` (a crash); True if it was running."""
        return self.node(number).kill()

    def start_node(self, number: int) -> None:
        """Start node ``number`` again and wait until the cluster lists it as a broker."""
        node = self.node(number)
        if node.pid() is None:
            proc = node.launch(self.classpath())
            try:
                deadline = Deadline(self.start_timeout_s, f"node {number} to rejoin")
                wait_until_ready(node.broker_access(), deadline, alive=lambda: proc.poll() is None)
                self._wait_all_registered(deadline)
            except (RuntimeError, DeadlineExceeded) as exc:
                node.kill()
                raise BrokerError(f"node {number} did not start: {exc}\n{node.failure_report(40)}") from exc

    def status(self) -> BrokerStatus:
        pids = [n.pid() for n in self.nodes]
        return ClusterStatus(all(p is not None for p in pids), next((p for p in pids if p), None), self.bootstrap,
                             self.version, self.home, self.pki.ca_file, self.pki.password_file(ADMIN),
                             nodes=[{"node": n.node_id, "running": p is not None, "pid": p, "bootstrap": n.bootstrap,
                                     "home": str(n.home)} for n, p in zip(self.nodes, pids, strict=True)])  # fmt: skip

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(f"--- node {n.node_id} ({n.server_log}) ---\n{n.log_tail(lines)}" for n in self.nodes)

    def failure_report(self, lines: int = 20) -> str:
        return "\n".join(f"--- node {n.node_id} ---\n{n.failure_report(lines)}" for n in self.nodes)


@dataclass
class ClusterStatus(BrokerStatus):
    nodes: list[dict[str, object]] | None = None

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "nodes": self.nodes}


def local_kafka(settings: HubSettings, nodes: int | None = None) -> LocalBroker | LocalCluster:
    """The local Kafka ``settings`` describe: the cluster ``<kafka home>/cluster.json`` records, else one node;
    ``nodes`` (``hub kafka up --nodes N``) chooses the shape instead."""
    from hub.kafka.local import broker_from_settings

    if nodes is None:
        shape = read_shape(settings.kafka_home)
        nodes = shape.nodes if shape else 1
    if nodes <= 1:
        return broker_from_settings(settings)
    lk = settings.local_kafka
    return LocalCluster(settings.kafka_home, nodes, version=lk.version, host=lk.host, port=lk.port,
                        controller_port=lk.controller_port, internal_port=lk.internal_port, heap=lk.cluster_heap,
                        num_partitions=lk.num_partitions, start_timeout_s=max(lk.start_timeout_s, 120.0))  # fmt: skip
