"""What the benchmarks share: a broker for standalone runs, access to it, hub child processes, waits and
percentiles.

The broker is secured as every hub cluster is (TLS, SASL/SCRAM-SHA-512, deny-by-default ACLs): the benchmark
sets a namespace up and reads it as the super user ``admin`` (:func:`admin_access`, :func:`provision`), and
each hub child process connects as its own principal (``worker``, ``gateway``) with the CA and the credentials
folder named by ``HUB_KAFKA__CA_FILE`` and ``HUB_KAFKA__CREDENTIALS_DIR`` (:func:`hub_env` passes them on;
:func:`standalone_broker` and :func:`local_security_env` set them for a local broker).
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from hub import identity
from hub.deadline import Deadline
from hub.kafka.admin import ensure_topics, hub_topics
from hub.kafka.clients import KafkaAccess, access_as
from hub.kafka.local import LocalBroker, free_port
from hub.kafka.provision import apply_acls
from hub.settings import HubSettings, get_settings

REPO = Path(__file__).resolve().parent.parent

SECURITY_VARS = ("HUB_KAFKA__CA_FILE", "HUB_KAFKA__CREDENTIALS_DIR", "HUB_KAFKA__SECURITY_PROTOCOL")
"""How a process reaches the cluster (beside ``HUB_KAFKA_BOOTSTRAP``): passed on to every hub child process."""


@contextmanager
def local_security_env(broker: LocalBroker) -> Iterator[None]:
    """For the duration: ``HUB_KAFKA__CA_FILE`` and ``HUB_KAFKA__CREDENTIALS_DIR`` name ``broker``'s CA and
    credentials folder (and ``HUB_ENV=dev``), for this process's clients and, through :func:`hub_env`, its
    children; the previous values afterwards."""
    wanted = {"HUB_KAFKA__CA_FILE": str(broker.pki.ca_file), "HUB_KAFKA__CREDENTIALS_DIR": str(broker.pki.users_dir),
              "HUB_ENV": "dev"}  # fmt: skip
    saved = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


@contextmanager
def standalone_broker(bootstrap: str | None, work: Path) -> Iterator[str]:
    """``bootstrap`` if given (``HUB_KAFKA__CA_FILE`` and ``HUB_KAFKA__CREDENTIALS_DIR`` say how to reach it),
    else a secured LocalBroker on free ports in ``work`` for the duration (a script run alone)."""
    if bootstrap:
        yield bootstrap
        return
    broker = LocalBroker(work / "kafka", port=free_port(), controller_port=free_port(), internal_port=free_port())
    print(f"starting a local Kafka broker in {broker.home} ...", file=sys.stderr, flush=True)
    try:
        with local_security_env(broker):
            yield broker.up()
    finally:
        broker.down()


def admin_access(bootstrap: str) -> KafkaAccess:
    """The cluster at ``bootstrap`` as its super user ``admin``: sets namespaces up and reads what the hub wrote."""
    return access_as(HubSettings(kafka_bootstrap=bootstrap), identity.ADMIN)


def bench_settings(bootstrap: str, namespace: str, state_dir: Path | None = None) -> HubSettings:
    """The settings of one benchmark hub: the same namespace and consumer group as :func:`hub_env` gives its
    child processes."""
    extra = {"state_dir": state_dir} if state_dir is not None else {}
    return HubSettings(kafka_bootstrap=bootstrap, topic_namespace=namespace, worker={"app_id": f"{namespace}hub"},
                       **extra)  # type: ignore[arg-type]  # fmt: skip


async def provision(settings: HubSettings) -> KafkaAccess:
    """``hub topics create`` for a benchmark hub, as ``admin``: every topic of its namespace (the broker
    creates none by itself) and the ACLs of its namespace and consumer group. Returns the admin access."""
    assert settings.kafka_bootstrap, "a benchmark hub names its cluster"
    admin = admin_access(settings.kafka_bootstrap)
    await ensure_topics(admin, hub_topics(settings))
    await asyncio.to_thread(apply_acls, admin, settings)
    return admin


def hub_env(bootstrap: str, namespace: str, state_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a hub child process on its own topic namespace and consumer group, reaching the
    cluster as this process does (:data:`SECURITY_VARS`), in development mode (the benchmark's secrets are
    the built-in ones)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update({k: os.environ[k] for k in SECURITY_VARS if k in os.environ})
    env.update(
        HUB_KAFKA_BOOTSTRAP=bootstrap, HUB_TOPIC_NAMESPACE=namespace, HUB_WORKER__APP_ID=f"{namespace}hub",
        HUB_STATE_DIR=str(state_dir), HUB_ENV="dev", HUB_WORKER__PROCESSES="1",  # one process unless asked
    )  # fmt: skip
    env.update(extra)
    return env


def spawn_hub(args: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m hub.cli <args>`` with its output in ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "hub.cli", *args], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


async def wait_http_ok(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 180,
                       interval: float = 0.1) -> float:  # fmt: skip
    """Poll ``url`` until it answers 200; return that moment (``time.perf_counter()``).

    Fails at once, with the end of ``log``, if the process exits first."""
    deadline = Deadline(timeout_s, f"{url} to answer 200")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args} exited with {proc.returncode}:\n{log_tail(log)}")
            try:
                async with http.get(url) as r:
                    if r.status == 200:
                        return time.perf_counter()
            except (aiohttp.ClientError, TimeoutError):
                pass
            deadline.check()
            await asyncio.sleep(interval)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
