"""The worker's state on disk (hub.worker.disk, real RocksDB, no Kafka): a re-sent event is dropped within the
window, a mark expires with it (deleted, with a tombstone for the changelog), records survive a reopen with
their checkpoint, and a batch whose transaction did not commit leaves the store as it was."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

from connectors.base import event_topic
from hub.audit import AuditChain
from hub.contract.serde import Serde
from hub.flows.routing import Router
from hub.pipeline import Message, Pipeline, Result
from hub.pseudonym import Pseudonymiser
from hub.rules.model import load_rules
from hub.settings import HubSettings
from hub.topics import Topics
from hub.worker.disk import DiskTable
from tests import factories as f

SERDE = Serde()
WINDOW = timedelta(hours=168)
WINDOW_MS = int(WINDOW.total_seconds() * 1000)
NOW_MS = int(f.NOW.timestamp() * 1000)


def pipeline_on(marks: DiskTable) -> Pipeline:
    return Pipeline(Router(load_rules()), SERDE, Pseudonymiser(HubSettings()), seen=marks, consents={},
                    chain=AuditChain(), dedup_window_s=WINDOW.total_seconds())  # fmt: skip


def send(p: Pipeline, value: bytes, topic: str, offset: int, now: timedelta = timedelta(0)) -> Result:
    return p.process(Message(topic, 0, offset, None, value), now=f.NOW + now)


def delivered(result: Result) -> list[str]:
    return [o.topic for o in result.outputs if o.topic.startswith("deliver.")]


def test_a_resent_event_is_dropped_within_the_window_and_delivered_again_after_its_mark_expired(tmp_path: Path) -> None:
    marks = DiskTable("hub.dedup", tmp_path, WINDOW_MS)
    marks.open(0)
    p = pipeline_on(marks)
    event = f.minor_suspected(municipality="1381")
    topic, value = event_topic(event, Topics()), SERDE.encode(event)

    first = send(p, value, topic, 10)
    assert delivered(first) == ["deliver.socialtjanst.1381"]
    [record] = marks.drain(now_ms=NOW_MS)  # the batch's changelog record of the new mark
    marks.write_committed()  # the batch's transaction committed
    assert json.loads(record.key) == f"polisen|{event.envelope.event_id}"
    assert json.loads(record.value or b"") == [NOW_MS, [topic, 0, 10]]

    again = send(p, value, topic, 11, timedelta(hours=1))  # re-sent an hour later: dropped
    assert again.outcome == "duplicate"
    assert marks.drain(now_ms=NOW_MS + 3_600_000) == []  # nothing changed, nothing expired yet
    marks.write_committed()

    # The window passes: the next batch deletes the mark and writes its tombstone.
    expired = marks.drain(now_ms=NOW_MS + WINDOW_MS + 1)
    assert [(json.loads(r.key), r.value) for r in expired] == [(f"polisen|{event.envelope.event_id}", None)]
    marks.write_committed()
    assert f"polisen|{event.envelope.event_id}" not in marks

    later = send(p, value, topic, 12, WINDOW + timedelta(hours=1))  # re-sent after the window: delivered again
    assert later.outcome == "processed"
    assert delivered(later) == ["deliver.socialtjanst.1381"]
    [fresh] = marks.drain(now_ms=NOW_MS + WINDOW_MS + 3_600_000)
    assert fresh.value is not None  # a new mark, for the next window
    asyncio.run(marks.close())


def test_marks_and_their_checkpoint_survive_a_reopen_and_a_mismatched_store_is_not_trusted(tmp_path: Path) -> None:
    marks = DiskTable("ns.hub.dedup", tmp_path, WINDOW_MS)
    store = marks.open(3)
    assert store.checkpoint == -1  # new: not known to hold anything of the changelog
    marks.current = 3
    for i in range(1000):
        marks[f"polisen|{i}"] = (NOW_MS + i, ["agency.polisen.events", 3, i])
    assert len(marks.drain(now_ms=NOW_MS)) == 1000
    marks.write_committed()  # the batch's transaction committed
    store.set_checkpoint(1234)
    asyncio.run(marks.close())

    reopened = DiskTable("ns.hub.dedup", tmp_path, WINDOW_MS)
    assert reopened.open(3).checkpoint == 1234
    reopened.current = 3
    assert reopened.get("polisen|999") == [NOW_MS + 999, ["agency.polisen.events", 3, 999]]
    assert reopened.size() == 1000
    # The oldest expire first, at most what is past the window.
    gone = reopened.drain(now_ms=NOW_MS + WINDOW_MS + 500)
    assert sorted(json.loads(r.key) for r in gone) == sorted(f"polisen|{i}" for i in range(500))
    assert reopened.size() == 1000  # not before the transaction committed
    reopened.write_committed()
    assert reopened.size() == 500
    asyncio.run(reopened.close())

    other = DiskTable("another.hub.dedup", tmp_path, WINDOW_MS)  # the same folder, another topic's
    assert other.open(3).checkpoint == -1
    asyncio.run(other.close())


def test_what_a_batch_changed_reaches_the_store_only_when_its_transaction_committed(tmp_path: Path) -> None:
    """A consent withdrawn in a batch that then aborted must not be in force when the batch is processed
    again (its earlier events would be refused where they were first delivered)."""
    consent = DiskTable("hub.consent", tmp_path)  # no window: consent never expires
    consent.open(1)
    consent.current = 1
    consent["pk|release_planning|1381"] = {"active": True, "consent_id": "c1", "at": 1}
    consent.drain()
    consent.write_committed()
    consent["pk|release_planning|1381"] = {"active": False, "consent_id": "c1", "at": 2}  # the withdrawal
    [record] = consent.drain()  # into the transaction, which then aborts ...
    assert json.loads(record.value or b"")["active"] is False
    consent.drop(1)  # ... and the partition's state is loaded again
    consent.open(1)
    consent.current = 1
    assert consent.get("pk|release_planning|1381") == {"active": True, "consent_id": "c1", "at": 1}
    asyncio.run(consent.close())
