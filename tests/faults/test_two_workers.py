"""Two workers share the partitions; SIGKILL one mid-stream and do not restart it: the other takes its
partitions over after the session timeout and finishes the stream, losing nothing."""

from __future__ import annotations

import random
import signal
import time
import uuid

import pytest

from hub.deadline import Deadline
from hub.kafka.local import free_port
from hub.settings import HubSettings
from hub.topics import Topics
from tests.factories import mixed_events
from tests.faults.ledger import (
    assignments,
    committed,
    read_ledger,
    unexplained_duplicates,
    wait_accounted,
    wait_committed,
)
from tests.faults.support import Background
from tests.hub.support import HubUnderTest, wait_ready

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TAKEOVER_MARGIN_S = 60.0
"""Beyond the session timeout: the rebalance itself and table recovery on a shared, noisy machine."""


def agency_partitions(hub: HubUnderTest) -> dict[str, set[tuple[str, int]]]:
    """Each group member's agency-topic partitions (only members that hold some)."""
    agency = set(Topics(hub.namespace).sources(hub.settings().municipality_codes))
    _state, members = assignments(hub.bootstrap, f"{hub.namespace}hub")
    held = {m: {(tp.topic, tp.partition) for tp in tps if tp.topic in agency} for m, tps in members.items()}
    return {m: tps for m, tps in held.items() if tps}


@pytest.mark.timeout(5400)
def test_survivor_takes_over_from_a_killed_worker(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory,
                                                  full_run: bool) -> None:  # fmt: skip
    n = 100_000 if full_run else 10_000
    session_timeout_s = HubSettings().worker.session_timeout_s
    seed = random.randrange(2**31)
    rng = random.Random(seed)
    hub = HubUnderTest(kafka_bootstrap, f"pair{uuid.uuid4().hex[:6]}.", tmp_path_factory.mktemp("pair"))
    group = f"{hub.namespace}hub"
    hub.create_topics()
    every = len(hub.topics.sources(hub.settings().municipality_codes)) * hub.settings().topic_partitions
    events = list(mixed_events(n, seed=seed))
    ports = {"worker-a": hub.web_port, "worker-b": free_port()}
    workers = {name: hub.start_named_worker(name, name, port) for name, port in ports.items()}
    victim = rng.choice(sorted(workers))
    survivor = next(w for w in workers if w != victim)
    point = int(n * rng.uniform(0.2, 0.5))
    print(f"\nseed {seed}: {n} events, SIGKILL {victim} after {point} committed")
    try:
        for name, proc in workers.items():
            wait_ready(hub, proc, port=ports[name], name=name)
        # Both hold agency partitions before the kill, so the victim's share must move.
        Deadline(120, "both workers to hold agency partitions").wait_for(
            lambda: len(agency_partitions(hub)) == 2, interval=1.0)  # fmt: skip
        # The stream's last quarter or more is published only after the kill: the workers cannot have finished
        # it before, however fast they are.
        first = point + (n - point) // 2
        publisher = Background(hub.publish, events[:first])
        wait_committed(hub, workers[victim], victim, point, 600 if full_run else 300)
        workers[victim].send_signal(signal.SIGKILL)
        workers[victim].wait(timeout=30)
        killed_at = time.monotonic()
        at_kill = committed(kafka_bootstrap, group)
        done = sum(at_kill.values())
        assert done < n, f"the kill came after the stream was processed ({done} of {n})"
        print(f"SIGKILL {victim} with about {done} of {n} committed, {first} published", flush=True)
        publisher.join(600)
        publisher = Background(hub.publish, events[first:])

        def took_over() -> bool:
            assert workers[survivor].poll() is None, f"{survivor} exited:\n{hub.log(survivor)}"
            held = agency_partitions(hub)
            return len(held) == 1 and len(next(iter(held.values()))) == every

        budget = session_timeout_s + TAKEOVER_MARGIN_S
        Deadline(budget, f"{survivor} to hold every agency partition").wait_for(took_over, interval=0.5)
        takeover_s = time.monotonic() - killed_at
        publisher.join(600)
        wait_accounted(kafka_bootstrap, hub.settings(), n, timeout_s=1800 if full_run else 600)
        finished_s = time.monotonic() - killed_at
        assert workers[survivor].poll() is None, f"{survivor} exited:\n{hub.log(survivor)}"
    finally:
        hub.stop_all()

    ledger = read_ledger(kafka_bootstrap, hub.settings())
    accounting = ledger.check(str(e.envelope.event_id) for e in events)
    accounting.assert_exactly_accounted()
    assert unexplained_duplicates(ledger, [at_kill]) == []
    # Exactly once: the killed worker's unfinished transaction was aborted, the survivor read on from the commits.
    assert (ledger.duplicate_deliveries, ledger.duplicate_audits) == (0, 0), accounting.summary()
    code, audit = hub.audit_verify_cli()
    assert audit["ok"], f"the audit trail's hash chains are broken: {audit}"
    assert code == 0, audit
    code, report = hub.reconcile_cli()
    assert code == 0, report
    assert (report["source_messages"], report["accounted"], report["lost"]) == (n, n, 0)
    assert report["duplicate_deliveries"] == ledger.duplicate_deliveries
    print(f"{n} events, 1 of 2 workers killed: takeover after {takeover_s:.1f} s (session timeout "
          f"{session_timeout_s:g} s), stream done {finished_s:.0f} s after the kill; {accounting.summary()}")
