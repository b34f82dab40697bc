"""``hub worker --processes N``: N worker processes on one machine, one per core by default.

Python runs one core per process, so the worker scales out the way Kafka consumers do: each process is a
member of the consumer group with its own static membership id (``<instance>-<i>``, hence its own
transactional id) and its own web port (``web_port + i``: ``/health``, ``/ready``, ``/metrics`` per process).
The supervising process starts them, restarts one that stops unexpectedly (after a second, so a crash loop
does not spin), and passes SIGTERM/SIGINT on. The children die with it (``PR_SET_PDEATHSIG``): killing the
supervisor never leaves workers behind.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from hub.kafka.clients import KafkaAccess
from hub.settings import HubSettings

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def process_count(settings: HubSettings, requested: int | None) -> int:
    n = requested or settings.worker.processes or os.cpu_count() or 1
    return max(1, n)


def run(settings: HubSettings, kafka: KafkaAccess, *, loglevel: str, processes: int | None) -> int:
    n = process_count(settings, processes)
    if n == 1:
        from hub.worker.app import run_worker

        run_worker(settings, kafka, loglevel=loglevel)
        return 0
    return supervise(settings, n, loglevel)


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _child_env(settings: HubSettings, i: int) -> dict[str, str]:
    from hub.worker.app import instance_name

    env = dict(os.environ)
    env["HUB_WORKER__INSTANCE_ID"] = f"{instance_name(settings)}-{i}"
    env["HUB_WORKER__WEB_PORT"] = str(settings.worker.web_port + i)
    env["HUB_WORKER__PROCESSES"] = "1"
    return env


def supervise(settings: HubSettings, n: int, loglevel: str) -> int:
    command = [sys.executable, "-m", "hub.cli", "worker", "--processes", "1", "--loglevel", loglevel]
    stopping = False

    def start(i: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, env=_child_env(settings, i), preexec_fn=_die_with_parent)

    children = {i: start(i) for i in range(n)}
    print(f"hub worker: {n} processes, pids {' '.join(str(c.pid) for c in children.values())}", flush=True)

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        time.sleep(0.5)
        for i, child in list(children.items()):
            code = child.poll()
            if code is None:
                continue
            if stopping:
                del children[i]
                continue
            log.error("worker process %d (pid %d) stopped with exit code %s: restarting it", i, child.pid, code)
            print(f"hub worker: process {i} stopped ({code}); restarting it", file=sys.stderr, flush=True)
            time.sleep(1.0)
            children[i] = start(i)
        if stopping and not children:
            return 0
