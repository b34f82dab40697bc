"""`hub reconcile` finds source messages the worker never accounted for, and `--repair` recovers them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import pytest
from aiokafka import TopicPartition

from hub.kafka import clients
from tests import factories as f
from tests.hub.support import REPO, HubUnderTest, wait_ready

pytestmark = pytest.mark.kafka


def reconcile(hub: HubUnderTest, *args: str) -> tuple[int, dict[str, object]]:
    done = subprocess.run([sys.executable, "-m", "hub.cli", "reconcile", "--json", *args], cwd=REPO, env=hub.env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    return done.returncode, json.loads(done.stdout)


async def skip_ahead(hub: HubUnderTest, group: str) -> None:
    """Commit the group's offsets at the end of every agency partition, as a faulty consumer would."""
    topic = hub.topics.agency("polisen")
    consumer = clients.consumer(hub.admin, group_id=group)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(hub.settings().topic_partitions)]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.commit({tp: end[tp] for tp in tps})
    finally:
        await consumer.stop()


def test_unaccounted_messages_are_reported_and_repaired(kafka_bootstrap: str,
                                                        tmp_path_factory: pytest.TempPathFactory) -> None:  # fmt: skip
    hub = HubUnderTest(kafka_bootstrap, f"rep{uuid.uuid4().hex[:6]}.", tmp_path_factory.mktemp("rep"))
    hub.create_topics()
    skipped = [f.minor_suspected(municipality="1383") for _ in range(5)]
    hub.publish(skipped)
    asyncio.run(skip_ahead(hub, f"{hub.namespace}hub"))  # the worker's group will never read these

    code, report = reconcile(hub)
    assert code == 1
    assert report["lost"] == 5

    worker = hub.start_worker()
    try:
        wait_ready(hub, worker)
        code, _ = reconcile(hub, "--repair")
        topic = hub.topics.deliver("socialtjanst", "1383")
        got = hub.read([topic], until=lambda g: len(g[topic]) >= 5)
        assert sorted(d.event_id for d in got[topic]) == sorted(str(e.envelope.event_id) for e in skipped)  # type: ignore[attr-defined]
        code, report = reconcile(hub)
    finally:
        hub.stop_all()
    assert code == 0
    assert report["lost"] == 0
    assert report["duplicate_deliveries"] == 0
