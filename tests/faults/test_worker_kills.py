"""SIGKILL the worker at random points of a long stream, restart it, three times: nothing is lost, and
no delivery or audit record is written twice (each batch is one transaction)."""

from __future__ import annotations

import random
import signal
import time
import uuid

import pytest

from tests.factories import mixed_events
from tests.faults.ledger import (
    committed,
    committed_on,
    read_ledger,
    unexplained_duplicates,
    wait_accounted,
    wait_committed,
)
from tests.faults.support import Background, kill_points
from tests.hub.support import HubUnderTest, wait_ready

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

KILLS = 3


@pytest.mark.timeout(5400)
def test_repeated_sigkill_loses_nothing(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory,
                                        full_run: bool) -> None:  # fmt: skip
    n = 100_000 if full_run else 10_000
    seed = random.randrange(2**31)
    rng = random.Random(seed)
    # Points in the middle of the first eight tenths: each kill comes as soon as its point is seen committed.
    points = kill_points(rng, int(n * 0.8), KILLS)
    # The stream is published in stages, each ending a little past its kill point, and the last stage only
    # after the last kill: the worker cannot finish the stream before a kill, however fast it is (one CI run
    # processed all 10,000 events between two polls of the committed offsets).
    headroom = (n - points[-1]) // 2
    ends = [*(min(n, p + headroom) for p in points), n]
    print(f"\nseed {seed}: {n} events, SIGKILL after {points} committed, published in stages ending at {ends}")
    hub = HubUnderTest(kafka_bootstrap, f"kills{uuid.uuid4().hex[:6]}.", tmp_path_factory.mktemp("kills"))
    group = f"{hub.namespace}hub"
    hub.create_topics()
    events = list(mixed_events(n, seed=seed))
    started = time.monotonic()
    worker = hub.start_worker("worker-0", instance_id="worker-a")
    committed_at_kills = []
    try:
        wait_ready(hub, worker, name="worker-0")
        publisher = Background(hub.publish, events[: ends[0]])
        for i, point in enumerate(points, start=1):
            wait_committed(hub, worker, f"worker-{i - 1}", point, 600 if full_run else 300)
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
            at_kill = committed(kafka_bootstrap, group)  # the dead worker commits nothing more
            committed_at_kills.append(at_kill)
            done = committed_on(kafka_bootstrap, group, hub.settings())
            assert done < n, f"kill {i} came after the stream was processed ({done} of {n}): not mid-stream"
            print(f"kill {i}: SIGKILL with {done} of {n} committed, {ends[i - 1]} published", flush=True)
            publisher.join(600)
            publisher = Background(hub.publish, events[ends[i - 1] : ends[i]])
            worker = hub.start_worker(f"worker-{i}", instance_id="worker-a")  # the same worker, restarted
            wait_ready(hub, worker, name=f"worker-{i}")
        publisher.join(600)
        wait_accounted(kafka_bootstrap, hub.settings(), n, timeout_s=1800 if full_run else 600)
    finally:
        hub.stop_all()
    elapsed = time.monotonic() - started

    ledger = read_ledger(kafka_bootstrap, hub.settings())
    accounting = ledger.check(str(e.envelope.event_id) for e in events)
    accounting.assert_exactly_accounted()
    # Exactly once: what a killed worker did after its last commit was aborted with its transaction.
    assert unexplained_duplicates(ledger, committed_at_kills) == []
    assert (ledger.duplicate_deliveries, ledger.duplicate_audits) == (0, 0), accounting.summary()

    code, audit = hub.audit_verify_cli()
    assert audit["ok"], f"the audit trail's hash chains are broken: {audit}"
    assert code == 0, audit
    code, report = hub.reconcile_cli()
    assert code == 0, report
    assert (report["source_messages"], report["accounted"], report["lost"]) == (n, n, 0)
    assert report["duplicate_deliveries"] == ledger.duplicate_deliveries
    print(f"{n} events, {KILLS} SIGKILLs in {elapsed:.0f} s: {accounting.summary()}; reconcile {report}")
