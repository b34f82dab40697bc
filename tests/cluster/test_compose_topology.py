"""The compose topology, exercised: the services docker-compose.yml defines — the `topics` job, the worker
(as many replicas as it says), the ingest gateway and the police-feed connector — run as the processes their
`command` names, with the environment the compose file and its env files give them, against a local
three-node cluster. Container paths are mapped to a folder per service holding exactly what the service
mounts from the trust volume; the hostnames kafka-N, worker and polisen.se to the local ports. Then traffic
goes through the gateway and the feed, and every acknowledged event must be accounted for. A change that
breaks a service of the compose file (its command, its environment, its secrets) breaks this test.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from connectors.gateway.auth import hash_token
from hub.contract.outputs import AuditRecord
from hub.deadline import Deadline
from hub.kafka.cluster import LocalCluster
from hub.kafka.read import read_to_end
from tests import factories as f
from tests.cluster.test_local_cluster import NODES, _port_bases
from tests.faults.support import TOKENS, Posting, batches, post_all
from tests.hub.support import REPO, SERDE
from tests.kafka_env import kafka_processes_of
from tests.monitoring.test_prometheus import DATA, _Feed
from tests.test_compose import _env_files, _environment, _services, _volumes

pytestmark = [pytest.mark.kafka, pytest.mark.cluster]

STARTED = ("worker", "ingest", "polisen-feed")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    port, controller, internal = _port_bases()
    c = LocalCluster(tmp_path_factory.mktemp("topology") / "kafka", NODES, port=port, controller_port=controller,
                     internal_port=internal)  # fmt: skip
    try:
        c.up()
        yield c
    finally:
        c.down()
        assert kafka_processes_of(c.home) == []


@pytest.fixture(scope="module")
def feed() -> Iterator[str]:
    """polisen.se's events API, mapped: the real Halland sample where ../shared/data has it."""
    if DATA.exists():
        _Feed.body = DATA.read_bytes()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Feed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@functools.cache
def _secrets() -> dict[str, dict[str, str]]:
    """What an operator puts in the env files the services name (deploy/env/*.env, from their examples): made
    once, as an operator does (the trail's MACs are keyed by the secret key, the cluster outlives a test)."""
    return {
        "deploy/env/secret-key.env": {"HUB_SECRET_KEY": secrets.token_urlsafe(48)},
        "deploy/env/worker.env": {"HUB_PSEUDONYM_KEYS": json.dumps({"sig": secrets.token_urlsafe(40),
                                                                   "socialtjanst": secrets.token_urlsafe(40)})},
        "deploy/env/ingest.env": {"HUB_INGEST__TOKENS": json.dumps({u: [hash_token(t)] for u, t in TOKENS.items()})},
    }  # fmt: skip


class Topology:
    """The compose services as local processes: each with its compose environment, mapped."""

    def __init__(self, cluster: LocalCluster, root: Path, feed_url: str) -> None:
        self.cluster = cluster
        self.root = root
        self.feed_url = feed_url
        self.services = _services()
        self.env_files = _secrets()
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def _map(self, value: str, service_root: Path) -> str:
        def broker(m: re.Match[str]) -> str:
            n, port = int(m.group(1)), int(m.group(2))
            node = self.cluster.node(n)
            return f"127.0.0.1:{node.port if port == 9092 else node.internal_port}"

        value = re.sub(r"kafka-(\d+):(\d+)", broker, value)
        if value.startswith(("/run/", "/var/lib/hub")):
            return str(service_root / value.lstrip("/"))
        if value.startswith("/app/"):  # the image copies the repository's schemas and rules there
            return str(REPO / value.removeprefix("/app/"))
        return "127.0.0.1" if value == "0.0.0.0" else value  # the container's bind-all address

    def env(self, name: str, instance: str, overrides: dict[str, str]) -> dict[str, str]:
        service = self.services[name]
        service_root = self.root / instance
        (service_root / "var/lib/hub").mkdir(parents=True, exist_ok=True)  # the image's state dir (Dockerfile)
        for v in _volumes(service):  # what the service mounts from the trust volume, at its target path
            if v["source"] == "hub-pki" and v["subpath"]:
                target = service_root / v["target"].lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.cluster.pki.root / v["subpath"], target)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        for env_file in _env_files(service):
            env.update(self.env_files[env_file])  # a KeyError: the compose file names an env file unknown here
        env.update({k: self._map(v, service_root) for k, v in _environment(service).items()})
        env.update(overrides)
        return env

    def command(self, name: str) -> list[str]:
        command = [str(c) for c in self.services[name]["command"]]
        if name == "polisen-feed":  # polisen.se, mapped to the local feed with the real Halland sample
            command += ["--base-url", self.feed_url]
        return [sys.executable, "-m", "hub.cli", *command]

    def run(self, name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(name), cwd=REPO, env=self.env(name, name, {}), capture_output=True,
                              text=True, timeout=300, check=False, stdin=subprocess.DEVNULL)  # fmt: skip

    def start(self, name: str, instance: str, overrides: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.root / f"{instance}.log").open("ab")
        proc = subprocess.Popen(self.command(name), cwd=REPO, env=self.env(name, instance, overrides), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
        self.procs.append((instance, proc))
        return proc

    def log(self, instance: str) -> str:
        path = self.root / f"{instance}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def wait_ready(self, instance: str, port: int, path: str = "/ready") -> None:
        proc = dict(self.procs)[instance]

        def ready() -> bool:
            assert proc.poll() is None, f"{instance} exited:\n{self.log(instance)}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        Deadline(180, f"{instance} to be ready").wait_for(ready, interval=0.5)

    def stop_all(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for _, proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _bring_up(topology: Topology) -> dict[str, int]:
    """The long-running services as compose starts them (the worker with its replicas); their ports."""
    from hub.kafka.local import free_port

    replicas = int(topology.services["worker"].get("deploy", {}).get("replicas", 1))
    assert replicas == 2
    ports = {}
    for i in range(1, replicas + 1):  # each replica a container of its own: its own host name and port
        ports[f"worker-{i}"] = free_port()
        topology.start("worker", f"worker-{i}", {"HUB_WORKER__WEB_PORT": str(ports[f"worker-{i}"]),
                                                "HUB_WORKER__INSTANCE_ID": f"worker-{i}"})  # fmt: skip
    ports["ingest"], ports["polisen-feed"] = free_port(), free_port()
    topology.start("ingest", "ingest", {"HUB_INGEST__PORT": str(ports["ingest"])})
    topology.start("polisen-feed", "polisen-feed", {"HUB_CONNECTOR__STATUS_PORT": str(ports["polisen-feed"])})
    for instance, port in ports.items():
        topology.wait_ready(instance, port)
    return ports


async def _audited(cluster: LocalCluster) -> tuple[set[str], set[str]]:
    """The event ids in the audit trail: all of them, and those of events that did not come through the
    gateway (no credential: the police-feed connector's)."""
    ids: set[str] = set()
    direct: set[str] = set()
    async for m in read_to_end(cluster.admin_access(), ["hub.audit"]):
        record = SERDE.decode(m.value)
        if isinstance(record, AuditRecord):
            ids.add(record.event_id)
            if record.credential is None and record.source_unit == "polisen":
                direct.add(record.event_id)
    return ids, direct


def test_the_compose_services_run_on_a_three_node_cluster_and_account_for_every_acknowledged_event(
    cluster: LocalCluster, feed: str, tmp_path: Path
) -> None:
    topology = Topology(cluster, tmp_path, feed)
    try:
        job = topology.run("topics")
        assert job.returncode == 0, job.stdout + job.stderr
        assert "with replication factor 3" in job.stdout

        ports = _bring_up(topology)
        events = list(f.mixed_events(300, seed=11))
        posting = Posting()
        asyncio.run(post_all(f"http://127.0.0.1:{ports['ingest']}/v1/events", batches(events, random.Random(5)),
                             posting))  # fmt: skip
        assert len(posting.acknowledged) == len({str(e.envelope.event_id) for e in events})
        expected = set(posting.acknowledged)
        state: dict[str, Any] = {}

        def accounted() -> bool:
            state["audited"], state["from_feed"] = asyncio.run(_audited(cluster))
            # ... and the police feed's notices (the real Halland sample, where ../shared/data has it)
            return expected <= state["audited"] and (bool(state["from_feed"]) or not DATA.exists())

        try:
            Deadline(300, "every acknowledged event in the audit trail").wait_for(accounted, interval=2.0)
        except Exception:
            missing = expected - state.get("audited", set())
            raise AssertionError(f"{len(missing)} acknowledged events not audited; worker log:\n"
                                 f"{topology.log('worker-1')}") from None
        ops = topology.env("ops-cli", "ops-cli", {})
        done = subprocess.run([sys.executable, "-m", "hub.cli", "reconcile", "--json"], cwd=REPO, env=ops,
                              capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert (report["lost"], report["duplicate_deliveries"], report["ok"]) == (0, 0, True), report
        assert report["source_event_ids"] >= len(expected) + len(state["from_feed"])
    finally:
        topology.stop_all()


async def _busiest_leader(cluster: LocalCluster, topics: list[str]) -> int:
    """The node that leads the agency partition holding the most records now."""
    from aiokafka import TopicPartition

    from hub.kafka import clients

    admin = clients.admin(cluster.admin_access())
    consumer = clients.consumer(cluster.admin_access())
    await admin.start()
    await consumer.start()
    try:
        described = await admin.describe_topics(topics)
        leaders = {TopicPartition(t["topic"], p["partition"]): p["leader"] for t in described for p in t["partitions"]}
        ends = await consumer.end_offsets(list(leaders))
    finally:
        await admin.close()
        await consumer.stop()
    busiest = max(ends, key=lambda tp: ends[tp])
    return int(leaders[busiest])


def test_acknowledged_events_survive_broker_crashes_a_rolling_restart_and_a_worker_lost_with_a_broker(
    cluster: LocalCluster, feed: str, tmp_path: Path, full_run: bool
) -> None:
    """Under steady load through the gateway: kill -9 the leader of the busiest agency partition; later a
    second broker; a rolling restart of all three; one worker killed while a broker is down. Each step waits
    for the gateway to acknowledge more events (producers recovered) and the trail to grow (the workers'
    consumers recovered), without restarting a hub process (but the killed worker, as compose restarts it).
    Then every acknowledged event is in the trail, no delivery is there twice, and the chains are intact."""
    from hub.settings import HubSettings
    from hub.topics import Topics

    topology = Topology(cluster, tmp_path, feed)
    try:
        ports = _bring_up(topology)
        url = f"http://127.0.0.1:{ports['ingest']}/v1/events"
        load = list(f.mixed_events(100_000 if full_run else 2000, seed=23))
        posting = Posting()  # the steady load and every step's own events
        sender = threading.Thread(target=lambda: asyncio.run(post_all(url, batches(load, random.Random(29)), posting,
                                                                      spread_s=120.0)))  # fmt: skip
        sender.start()
        steps: list[str] = []
        probes = iter(range(1, 100))

        def progress(what: str) -> None:
            """After ``what``: 50 new events are acknowledged by the gateway (its producer recovered) and reach
            the audit trail (the workers' consumers and transactions recovered)."""
            probe = list(f.mixed_events(50, seed=1000 + next(probes)))
            step = Posting()
            asyncio.run(asyncio.wait_for(post_all(url, batches(probe, random.Random(31)), step), 240))
            posting.acknowledged |= step.acknowledged
            wanted = {str(e.envelope.event_id) for e in probe}
            Deadline(240, f"the trail after {what}").wait_for(
                lambda: wanted <= asyncio.run(_audited(cluster))[0], interval=1.0)
            steps.append(what)

        agency = Topics().sources(HubSettings().municipality_codes)
        progress("the start")
        leader = asyncio.run(_busiest_leader(cluster, agency))
        cluster.stop_node(leader)
        progress(f"node {leader} (the busiest partition's leader) killed")
        cluster.start_node(leader)
        second = next(n.node_id for n in cluster.nodes if n.node_id != leader)
        cluster.stop_node(second)
        progress(f"node {second} killed")
        cluster.start_node(second)
        for node in cluster.nodes:  # a rolling restart: one node at a time, each back before the next
            node.down()
            cluster.start_node(node.node_id)
        progress("a rolling restart")
        worker = dict(topology.procs)["worker-1"]
        cluster.stop_node(3)
        worker.kill()
        worker.wait()
        progress("worker-1 killed while node 3 is down")
        cluster.start_node(3)
        topology.start("worker", "worker-1b", {"HUB_WORKER__WEB_PORT": str(ports["worker-1"]),
                                              "HUB_WORKER__INSTANCE_ID": "worker-1"})  # fmt: skip
        sender.join(timeout=600)
        assert not sender.is_alive(), "the steady load did not finish"
        events = load

        state: dict[str, Any] = {}

        def accounted() -> bool:
            state["audited"] = asyncio.run(_audited(cluster))[0]
            return posting.acknowledged <= state["audited"]

        try:
            Deadline(600, "every acknowledged event in the audit trail").wait_for(accounted, interval=2.0)
        except Exception:
            missing = posting.acknowledged - state.get("audited", set())
            raise AssertionError(f"{len(missing)} acknowledged events lost after {steps}") from None
        ops = topology.env("ops-cli", "ops-cli", {})
        # The MACs and signatures are checked with the worker's audit keys (here derived from its secret key):
        # the compose ops-cli holds none of them (README, known limits).
        keys = topology.env_files["deploy/env/secret-key.env"]
        for args, env in ((("reconcile", "--json"), ops), (("audit", "verify", "--json"), {**ops, **keys})):
            done = subprocess.run([sys.executable, "-m", "hub.cli", *args], cwd=REPO, env=env, capture_output=True,
                                  text=True, timeout=300, check=False)  # fmt: skip
            report = json.loads(done.stdout.strip().splitlines()[-1])
            assert report["ok"] is True, (args, report.get("first_break"), report, steps)
            if args[0] == "reconcile":
                assert (report["lost"], report["duplicate_deliveries"]) == (0, 0), report
        print(f"cluster faults: {len(events)} events, {dict(posting.outcomes)} answers, steps {steps}")
    finally:
        topology.stop_all()

