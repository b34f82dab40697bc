"""`hub reconcile` cross-checks the receiver topics against the audit trail: every delivery has its
"delivered" audit record and every such record its delivery — a forged delivery (written past the worker)
or a forged record (a disclosure claimed that never happened) fails it, with the event named."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from hub.audit import AuditChain
from hub.contract.outputs import Decision, Delivery
from hub.contract.serde import Serde
from hub.kafka import clients
from tests import factories as f
from tests.hub.support import HubUnderTest, wait_ready

pytestmark = pytest.mark.kafka


async def forge(hub: HubUnderTest, records: list[tuple[str, bytes, int | None]]) -> None:
    """Write records as the administrator would (past the worker): (topic, value, partition)."""
    producer = clients.producer(hub.admin, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for topic, value, partition in records:
            await producer.send_and_wait(topic, value, partition=partition)
    finally:
        await producer.stop()


def test_a_delivery_without_its_record_and_a_record_without_its_delivery_fail_reconcile(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    hub = HubUnderTest(kafka_bootstrap, f"xck{uuid.uuid4().hex[:6]}.", tmp_path_factory.mktemp("xck"))
    hub.create_topics()
    events = [f.minor_suspected(municipality="1383") for _ in range(3)]
    topic = hub.topics.deliver("socialtjanst", "1383")
    worker = hub.start_worker()
    try:
        wait_ready(hub, worker)
        hub.publish(events)
        hub.read([topic], until=lambda g: len(g[topic]) >= 3, quiet_s=0.5)
        code, clean = hub.reconcile_cli()
    finally:
        hub.stop_all()
    assert code == 0, clean
    assert clean["deliveries"] == 3
    assert (clean["unaudited_deliveries"], clean["undelivered_audit_records"]) == (0, 0)

    serde = Serde()
    now = datetime.now(UTC)
    unrecorded = str(uuid.uuid4())  # a delivery the trail never heard of
    delivery = Delivery(receiver="socialtjanst", municipality_code="1383", legal_basis="statute:LUL 6 §",
                        event_id=unrecorded, event_type="polisen.minor_suspected", fields={},
                        occurred_at=now, delivered_at=now)  # fmt: skip
    claimed, old = str(uuid.uuid4()), str(uuid.uuid4())
    chain = AuditChain()
    record = chain.append(0, event_id=claimed, receiver="socialtjanst", legal_basis="statute:LUL 6 §",
                          decision=Decision.delivered, reason=None, fields_disclosed=[], at=now)  # fmt: skip
    # A record older than the receiver's delivery retention: its delivery may have been deleted by it.
    aged = chain.append(0, event_id=old, receiver="socialtjanst", legal_basis="statute:LUL 6 §",
                        decision=Decision.delivered, reason=None, fields_disclosed=[],
                        at=now - timedelta(days=3650))  # fmt: skip
    # A delivery to Varberg whose record says Halmstad: the same event and receiver, another municipality.
    moved = str(uuid.uuid4())
    elsewhere = delivery.model_copy(update={"event_id": moved})
    misplaced = chain.append(0, event_id=moved, receiver="socialtjanst", legal_basis="statute:LUL 6 §",
                             decision=Decision.delivered, reason=None, fields_disclosed=[], at=now,
                             municipality_code="1380")  # fmt: skip
    asyncio.run(forge(hub, [(topic, serde.encode(delivery), None), (hub.topics.audit, serde.encode(record), 0),
                            (hub.topics.audit, serde.encode(aged), 0), (topic, serde.encode(elsewhere), None),
                            (hub.topics.audit, serde.encode(misplaced), 0)]))  # fmt: skip

    code, report = hub.reconcile_cli()
    assert code == 1
    assert report["unaudited_deliveries"] == 2
    assert report["undelivered_audit_records"] == 2
    assert report["audit_records_beyond_retention"] == 1
    assert report["lost"] == 0  # the other checks are not what failed
    assert report["duplicate_deliveries"] == 0
    examples = " ".join(report["crosscheck_examples"])
    assert unrecorded in examples
    assert claimed in examples
    assert old not in examples
    assert f"event {moved} to socialtjanst.1383: 1 deliveries, 0 'delivered' audit records" in examples
    assert f"event {moved} to socialtjanst.1380: 1 'delivered' audit records, 0 deliveries" in examples
