"""SIGKILL the ingest gateway while agencies' clients post, restart it, three times: every event id a
client got a 202 for is accounted for once, and nothing reaches a receiver twice (the worker never
crashed; a batch a client re-sent after losing its connection is dropped by the hub's deduplication)."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
import uuid

import pytest

from hub.deadline import Deadline
from hub.kafka.local import free_port
from tests.factories import mixed_events
from tests.faults.ledger import read_ledger, wait_accounted
from tests.faults.support import (
    CLIENTS,
    Background,
    Posting,
    batches,
    held_for,
    kill_points,
    post_all,
    start_gateway_process,
)
from tests.hub.support import HubUnderTest, wait_ready

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

KILLS = 3


@pytest.mark.timeout(5400)
def test_gateway_killed_while_clients_post(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory,
                                           full_run: bool) -> None:  # fmt: skip
    n = 100_000 if full_run else 10_000
    seed = random.randrange(2**31)
    rng = random.Random(seed)
    # The last tenth of the events is held back until the third kill, and every kill point lies before it
    # (the middle 80 % of the first 90 %): the clients are still posting when the gateway is killed,
    # however fast the machine acknowledges (a run once acknowledged the last 1,026 within 0.35 s).
    points = kill_points(rng, int(n * 0.9), KILLS)
    print(f"\nseed {seed}: {n} events posted by {CLIENTS} clients, gateway SIGKILL after {points} acknowledged")
    hub = HubUnderTest(kafka_bootstrap, f"gw{uuid.uuid4().hex[:6]}.", tmp_path_factory.mktemp("gw"))
    hub.create_topics()
    events = list(mixed_events(n, seed=seed))
    port = free_port()

    def start_gateway(i: int) -> subprocess.Popen[bytes]:
        return start_gateway_process(hub, f"gateway-{i}", port)

    work = batches(events, rng)
    hold = held_for(work, 0.1)
    posting = Posting()
    started = time.monotonic()
    worker = hub.start_worker()
    try:
        wait_ready(hub, worker)
        gateway = start_gateway(0)
        clients = Background(asyncio.run, post_all(f"http://127.0.0.1:{port}/v1/events", work, posting, hold=hold))
        for i, point in enumerate(points, start=1):

            def reached(point: int = point) -> bool:
                return len(posting.acknowledged) >= point or not clients.running

            Deadline(600 if full_run else 300, f"{point} acknowledged events").wait_for(reached, interval=0.05)
            time.sleep(rng.uniform(0.0, 0.3))  # not synchronisation: a random moment within the requests
            if not clients.running:
                clients.join(0)  # raises what stopped them
                raise AssertionError("the clients finished before the gateway was killed")
            gateway.send_signal(signal.SIGKILL)
            gateway.wait(timeout=30)
            print(f"kill {i}: SIGKILL with {len(posting.acknowledged)} of {n} acknowledged", flush=True)
            gateway = start_gateway(i)
        hold.release.set()
        clients.join(1800 if full_run else 600)
        assert len(posting.acknowledged) == n  # every client got every event through in the end
        wait_accounted(kafka_bootstrap, hub.settings(), n, timeout_s=1800 if full_run else 600, at_least=True)
        assert worker.poll() is None, f"the worker exited:\n{hub.log()}"
    finally:
        hold.release.set()  # lets the clients' thread end when the test fails early
        hub.stop_all()
    elapsed = time.monotonic() - started

    ledger = read_ledger(kafka_bootstrap, hub.settings())
    accounting = ledger.check(posting.acknowledged)
    accounting.assert_exactly_accounted()
    # No worker crash: exactly once to every receiver, re-sent batches included.
    assert accounting.duplicate_deliveries == 0
    assert accounting.duplicate_audits == 0
    code, audit = hub.audit_verify_cli()
    assert audit["ok"], f"the audit trail's hash chains are broken: {audit}"
    assert code == 0, audit
    code, report = hub.reconcile_cli()
    assert code == 0, report
    assert report["lost"] == 0
    assert report["source_event_ids"] == n
    assert report["duplicate_deliveries"] == 0
    print(f"{n} events, {KILLS} gateway SIGKILLs in {elapsed:.0f} s: {accounting.summary()}; "
          f"client outcomes {dict(posting.outcomes)}; reconcile {report}")
