"""Running a real hub worker process and talking to its topics, for end-to-end tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.base import event_key, event_topic
from hub.contract.base import ContractRecord
from hub.contract.envelope import Event
from hub.contract.serde import Serde
from hub.deadline import Deadline
from hub.kafka import clients
from hub.kafka.admin import ensure_topics, hub_topics, replication_policy
from hub.kafka.clients import KafkaAccess
from hub.kafka.local import free_port
from hub.kafka.provision import apply_acls
from hub.pseudonym import Pseudonymiser
from hub.settings import HubSettings
from hub.topics import Topics
from tests.kafka_env import access, security_env

REPO = Path(__file__).resolve().parents[2]
SERDE = Serde()


@dataclass
class HubUnderTest:
    """One hub (its own topic namespace and consumer group) on the shared test broker."""

    bootstrap: str
    namespace: str
    state_dir: Path
    web_port: int = field(default_factory=free_port)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    """More settings for every process of this hub (``HUB_AUDIT__CHECKPOINT_EVERY``, say)."""

    @property
    def topics(self) -> Topics:
        return Topics(self.namespace)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env.update(
            HUB_KAFKA_BOOTSTRAP=self.bootstrap, HUB_TOPIC_NAMESPACE=self.namespace,
            HUB_WORKER__APP_ID=f"{self.namespace}hub", HUB_STATE_DIR=str(self.state_dir),
            HUB_WORKER__WEB_PORT=str(self.web_port), HUB_WORKER__PROCESSES="1", **security_env(),
        )  # fmt: skip
        env.update(self.extra_env)
        return env

    @property
    def admin(self) -> KafkaAccess:
        """The broker's super user: sets the hub up and reads what it wrote, as an operator's script would."""
        return access(self.bootstrap)

    def kafka_as(self, principal: str) -> KafkaAccess:
        return access(self.bootstrap, principal)

    def settings(self) -> HubSettings:
        return HubSettings(kafka_bootstrap=self.bootstrap, topic_namespace=self.namespace, state_dir=self.state_dir,
                           worker={"app_id": f"{self.namespace}hub"})  # type: ignore[arg-type]  # fmt: skip

    def create_topics(self) -> None:
        """``hub topics create`` for this hub: its topics and the ACLs of its namespace and group."""
        settings = self.settings()
        policy = asyncio.run(replication_policy(self.admin, settings))  # as the topics job and the worker ask
        asyncio.run(ensure_topics(self.admin, hub_topics(settings), policy))
        apply_acls(self.admin, settings)

    def start_worker(self, name: str = "worker", instance_id: str | None = None) -> subprocess.Popen[bytes]:
        log = (self.state_dir / f"{name}.log").open("ab")
        env = {**self.env, **({"HUB_WORKER__INSTANCE_ID": instance_id} if instance_id else {})}
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "worker", "-l", "info"], cwd=REPO, env=env,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def start_cli(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Any ``hub`` command as a child process with this hub's settings (plus ``env``), output to
        ``<state_dir>/<name>.log``; stopped by :meth:`stop_all` like the workers."""
        log = (self.state_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", *args], cwd=REPO, env={**self.env, **(env or {})},
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def start_named_worker(self, name: str, instance_id: str, web_port: int) -> subprocess.Popen[bytes]:
        """Another worker of the same group, with its own static membership id and web port."""
        return self.start_cli(name, "worker", "-l", "info",
                              env={"HUB_WORKER__INSTANCE_ID": instance_id, "HUB_WORKER__WEB_PORT": str(web_port)})

    def cli_json(self, *args: str, timeout_s: float = 300) -> tuple[int, dict[str, Any]]:
        """A ``hub`` command that prints one JSON object (its last line of output), as an operator runs
        it with this hub's settings: (exit code, that object)."""
        done = subprocess.run([sys.executable, "-m", "hub.cli", *args], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=timeout_s, check=False)  # fmt: skip
        try:
            report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError) as exc:
            raise AssertionError(f"hub {' '.join(args)} printed no JSON (exit {done.returncode}):\n"
                                 f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}") from exc
        return done.returncode, report

    def reconcile_cli(self, *args: str, timeout_s: float = 300) -> tuple[int, dict[str, Any]]:
        """``hub reconcile --json [args]``: (exit code, report)."""
        return self.cli_json("reconcile", "--json", *args, timeout_s=timeout_s)

    def audit_verify_cli(self, timeout_s: float = 300) -> tuple[int, dict[str, Any]]:
        """``hub audit verify --json``: (exit code, report)."""
        return self.cli_json("audit", "verify", "--json", timeout_s=timeout_s)

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs:
            self.stop(proc)

    def log(self, name: str = "worker") -> str:
        path = self.state_dir / f"{name}.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    # -- producing and reading -------------------------------------------------------------------------

    def publish(self, events: Iterable[Event | bytes], agency: str | None = None) -> None:
        asyncio.run(self._publish(list(events), agency))

    async def _publish(self, events: list[Event | bytes], agency: str | None) -> None:
        pseudonyms = Pseudonymiser(HubSettings())
        producer = clients.producer(self.admin, enable_idempotence=True, acks="all", linger_ms=5)
        await producer.start()
        try:
            for e in events:
                if isinstance(e, bytes):
                    await producer.send(self._topic(agency or "polisen"), e)
                    continue
                topic = self._topic(agency) if agency else event_topic(e, self.topics)
                await producer.send(topic, SERDE.encode(e), key=event_key(e, pseudonyms))
            await producer.flush()
        finally:
            await producer.stop()

    def _topic(self, unit: str) -> str:
        """The agency topic of a source unit name: ``polisen``, ``kommun-1381`` (plain ``kommun``: Laholm's)."""
        if unit == "kommun":
            unit = "kommun-1381"
        agency, _, code = unit.partition("-")
        return self.topics.agency(agency, code or None)

    def read(self, topic_names: list[str], until: Any = None, quiet_s: float = 3.0,
             timeout_s: float = 90.0) -> dict[str, list[ContractRecord]]:  # fmt: skip
        """Decode every record on ``topic_names`` from the beginning; stop when ``until(records)`` holds
        (then wait ``quiet_s`` more for stragglers) or after ``timeout_s``."""
        return asyncio.run(self._read(topic_names, until, quiet_s, timeout_s))

    async def _read(self, names: list[str], until: Any, quiet_s: float, timeout_s: float
                    ) -> dict[str, list[ContractRecord]]:  # fmt: skip
        consumer = clients.consumer(self.admin, *names, auto_offset_reset="earliest")
        await consumer.start()
        got: dict[str, list[ContractRecord]] = {n: [] for n in names}
        deadline = time.monotonic() + timeout_s
        satisfied_at: float | None = None
        try:
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for tp, messages in batch.items():
                    got[tp.topic].extend(SERDE.decode(m.value) for m in messages)
                if satisfied_at is None and until is not None and until(got):
                    satisfied_at = time.monotonic()
                if satisfied_at is not None and time.monotonic() - satisfied_at >= quiet_s:
                    break
        finally:
            await consumer.stop()
        return got


def wait_ready(hub: HubUnderTest, proc: subprocess.Popen[bytes], timeout_s: float = 120, *,
               port: int | None = None, name: str = "worker") -> None:  # fmt: skip
    """Until the worker's /ready answers 200 (fails at once, with its log, if the worker exits).

    ``port``: the worker's web port when it is not the hub's (a second worker); ``name``: its log name.
    """

    def ready() -> bool:
        assert proc.poll() is None, f"worker exited:\n{hub.log(name)}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port or hub.web_port}/ready", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    Deadline(timeout_s, "the worker to be ready").wait_for(ready, interval=0.5)


@contextmanager
def running_hub(bootstrap: str, state_dir: Path, prefix: str,
                extra_env: dict[str, str] | None = None) -> Iterator[HubUnderTest]:  # fmt: skip
    """A hub with its own topics and one ready worker, stopped afterwards."""
    hub = HubUnderTest(bootstrap, f"{prefix}{uuid.uuid4().hex[:6]}.", state_dir, extra_env=dict(extra_env or {}))
    hub.create_topics()
    proc = hub.start_worker()
    try:
        wait_ready(hub, proc)
        yield hub
    finally:
        hub.stop_all()
