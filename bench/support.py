"""What the benchmarks share: a broker for standalone runs, hub child processes, waits and percentiles."""

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

from hub.deadline import Deadline
from hub.kafka.local import LocalBroker, free_port

REPO = Path(__file__).resolve().parent.parent


@contextmanager
def standalone_broker(bootstrap: str | None, work: Path) -> Iterator[str]:
    """``bootstrap`` if given, else a LocalBroker on free ports in ``work`` for the duration (a script run alone)."""
    if bootstrap:
        yield bootstrap
        return
    broker = LocalBroker(work / "kafka", port=free_port(), controller_port=free_port())
    print(f"starting a local Kafka broker in {broker.home} ...", file=sys.stderr, flush=True)
    try:
        yield broker.up()
    finally:
        broker.down()


def hub_env(bootstrap: str, namespace: str, state_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a hub child process on its own topic namespace and consumer group."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(
        HUB_KAFKA_BOOTSTRAP=bootstrap, HUB_TOPIC_NAMESPACE=namespace, HUB_WORKER__APP_ID=f"{namespace}hub",
        HUB_STATE_DIR=str(state_dir),
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
