"""``hub worker --processes 2`` as an operator runs it: two members of the group share the partitions,
every event is accounted for exactly once, and killing the supervisor leaves no worker behind.

The backlog is there before the workers start, so the first process to join reads batches that the
second one's arrival rebalances away mid-stream (the two-process benchmark lost 2,000 events that way:
a batch dropped at a rebalance had moved its partition's position past it)."""

from __future__ import annotations

import os
import re
import signal
import uuid
from pathlib import Path

import pytest

from hub.deadline import Deadline
from tests import factories as f
from tests.hub.support import HubUnderTest, wait_ready

pytestmark = pytest.mark.kafka


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_two_processes_share_the_work_and_die_with_the_supervisor(kafka_bootstrap: str, tmp_path: Path) -> None:
    hub = HubUnderTest(kafka_bootstrap, f"procs{uuid.uuid4().hex[:6]}.", tmp_path)
    hub.create_topics()
    n = 6000
    hub.publish(f.mixed_events(n))
    supervisor = hub.start_cli("worker", "worker", "-l", "info", "--processes", "2")
    try:
        for i in range(2):  # process i serves /ready on the hub's port + i
            wait_ready(hub, supervisor, port=hub.web_port + i)
        workers = _children(supervisor.pid)
        assert len(workers) == 2, workers
        Deadline(300, "every event accounted for by the two processes").wait_for(
            lambda: hub.reconcile_cli()[1]["accounted"] == n, interval=1.0)
        code, report = hub.reconcile_cli()
        assert code == 0, report
        assert (report["source_messages"], report["lost"], report["duplicate_deliveries"]) == (n, 0, 0)
        # both members were given partitions (each logs its assignment to the shared log)
        log = (hub.state_dir / "worker.log").read_text(errors="replace")
        assert len(re.findall(r"assigned partitions \[\d", log)) >= 2, log[-3000:]

        os.kill(supervisor.pid, signal.SIGKILL)
        supervisor.wait(timeout=30)
        Deadline(30, "the worker processes to die with their supervisor").wait_for(
            lambda: not any(_alive(p) for p in workers), interval=0.2)
    finally:
        hub.stop_all()
