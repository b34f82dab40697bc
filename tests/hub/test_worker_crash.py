"""SIGKILL the worker mid-stream and restart it: every event is accounted for, none lost, none twice."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import uuid

import pytest

from hub.contract.outputs import AuditRecord
from hub.deadline import Deadline
from hub.reconcile import reconcile
from tests import factories as f
from tests.hub.support import REPO, HubUnderTest, wait_ready

pytestmark = pytest.mark.kafka


def test_sigkill_mid_stream_loses_nothing(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory,
                                          full_run: bool) -> None:  # fmt: skip
    n = 100_000 if full_run else 10_000
    hub = HubUnderTest(kafka_bootstrap, f"crash{uuid.uuid4().hex[:6]}.", tmp_path_factory.mktemp("crash"))
    hub.create_topics()
    events = list(f.mixed_events(n))
    worker = hub.start_worker("worker-1", instance_id="worker-a")
    try:
        wait_ready(hub, worker)
        # Half the stream first, the rest after the kill: the kill comes mid-stream however fast the worker is.
        publisher = threading.Thread(target=hub.publish, args=(events[: n // 2],))
        publisher.start()

        # Kill it once it is well into the stream.
        t = hub.topics
        hub.read([t.audit], until=lambda g: sum(isinstance(r, AuditRecord) for r in g[t.audit]) >= n // 4,
                 quiet_s=0, timeout_s=300)  # fmt: skip
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        publisher.join(timeout=300)
        assert not publisher.is_alive(), "publishing the first half took over 300 s"
        hub.publish(events[n // 2 :])

        restarted = hub.start_worker("worker-2", instance_id="worker-a")  # the same worker, restarted
        wait_ready(hub, restarted)

        async def settled() -> bool:
            r = await reconcile(hub.admin, hub.settings())
            print(f"reconcile: {r.source_messages} in, {r.accounted} accounted, {r.lost} not yet", flush=True)
            return r.source_messages == n and r.lost == 0

        async def wait() -> None:
            await Deadline(600, "every event to be accounted for").async_wait_for(settled, interval=2.0)

        asyncio.run(wait())
    finally:
        hub.stop_all()

    done = subprocess.run([sys.executable, "-m", "hub.cli", "reconcile", "--json"], cwd=REPO, env=hub.env,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    report = json.loads(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert report["source_messages"] == n
    assert report["lost"] == 0
    assert report["accounted"] == n
    # Exactly once: what the killed worker wrote after its last committed batch was aborted with its transaction.
    assert report["duplicate_deliveries"] == 0
    print(f"\n{n} events, 1 SIGKILL: {report}")
