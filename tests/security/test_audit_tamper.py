"""Audit-trail tampering is caught by ``hub audit verify`` — run as the operator runs it, on a real trail.

A real ``hub worker`` writes a trail on the real broker (a signed checkpoint every 4 records, anchored in
its anchor folder); each test writes a tampered copy of it into a fresh namespace's ``hub.audit`` (same
partitions, same order, one change), with a copy of the anchors, and runs
``python -m hub.cli audit verify --json`` there as a subprocess. The untouched copy verifies (so the copy
is faithful); every kind of tampering — edit, edit with the record's own hash recomputed, delete,
reorder, replay, a record moved to another partition, a whole partition rewritten with recomputed hashes,
the end truncated, a checkpoint deleted — is reported at the first record where it shows.
(Appending a forged record is tests/hub/test_worker_e2e.py::test_audit_verify_passes_then_catches_a_forged_record.)
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hub.audit import record_hash
from hub.audit_anchor import FileAnchors
from hub.contract.outputs import AuditCheckpoint, AuditRecord, Decision
from hub.deadline import Deadline
from hub.kafka import clients
from hub.kafka.admin import TopicSpec, ensure_topics
from hub.kafka.provision import apply_acls
from hub.kafka.read import read_to_end
from tests import factories as f
from tests.hub.support import REPO, SERDE, HubUnderTest, running_hub

pytestmark = pytest.mark.kafka

Trail = dict[int, list[bytes]]
"""Partition → the raw audit records in offset order."""


@dataclass(frozen=True)
class RealTrail:
    bootstrap: str
    state_dir: Path
    partitions: int
    records: Trail
    anchors: dict[int, list[str]]
    """Partition → the anchor file's lines, as the worker wrote them."""

    @property
    def longest(self) -> int:
        """The partition with the most records (where the tampering happens)."""
        return max(self.records, key=lambda p: len(self.records[p]))


EVERY = 4
"""Records per checkpoint in these tests (HUB_AUDIT__CHECKPOINT_EVERY)."""


def verify_cli(hub: HubUnderTest) -> tuple[int, dict[str, object]]:
    done = subprocess.run([sys.executable, "-m", "hub.cli", "audit", "verify", "--json"], cwd=REPO, env=hub.env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout)


def checkpoints_in(values: list[bytes]) -> list[AuditCheckpoint]:
    return [r for r in map(SERDE.decode, values) if isinstance(r, AuditCheckpoint)]


@pytest.fixture(scope="module")
def trail(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealTrail]:
    state = tmp_path_factory.mktemp("audit")
    with running_hub(kafka_bootstrap, state, "aud", {"HUB_AUDIT__CHECKPOINT_EVERY": str(EVERY)}) as hub:
        # Burglaries in one municipality share a key, so their records share a partition: a long chain.
        events: list[f.Event] = [f.incident_notice("residential_burglary", "1381") for _ in range(5)]
        events += [f.minor_suspected(municipality="1383"), f.release(home="1384"), f.youth_activity("1315")]
        hub.publish(events)
        ids = {str(e.envelope.event_id) for e in events}
        t = hub.topics
        hub.read([t.audit], until=lambda g: {r.event_id for r in g[t.audit] if isinstance(r, AuditRecord)} >= ids,
                 quiet_s=3)  # fmt: skip

        async def raw() -> Trail:
            out: Trail = {}
            async for m in read_to_end(hub.admin, [t.audit]):
                out.setdefault(m.partition, []).append(m.value)
            return out

        records = asyncio.run(raw())
        anchor_dir = hub.settings().audit_anchor_dir
        signed = {(c.partition, c.seq) for values in records.values() for c in checkpoints_in(values)}

        def anchored() -> set[tuple[int, int]]:
            return {(e["partition"], e["seq"]) for p in FileAnchors(anchor_dir).partitions()
                    for e in FileAnchors(anchor_dir).read(p)}  # fmt: skip

        # The worker anchors a batch's checkpoints once the batch committed: wait for exactly those.
        Deadline(30, "the worker to anchor the checkpoints it wrote").wait_for(lambda: anchored() == signed)
        store = FileAnchors(anchor_dir)
        anchors = {p: store.path(p).read_text().splitlines() for p in store.partitions()}
        code, report = verify_cli(hub)
        assert (code, report["ok"]) == (0, True), report
        assert report["records"] + report["checkpoints"] == sum(len(v) for v in records.values())
        real = RealTrail(kafka_bootstrap, state, hub.settings().topic_partitions, records, anchors)
        assert sum(1 for v in real.records[real.longest] if isinstance(SERDE.decode(v), AuditRecord)) > 2 * EVERY
        yield real


def copy_into_fresh_namespace(real: RealTrail, records: Trail,
                              anchors: dict[int, list[str]] | None = None) -> HubUnderTest:  # fmt: skip
    """A namespace with only ``hub.audit``, holding ``records`` partition by partition, in order (written as
    the administrator; the namespace's ACLs let the operator's ``hub audit verify`` read it), and its own
    anchor folder holding ``anchors`` (default: the real trail's)."""
    hub = HubUnderTest(real.bootstrap, f"tamper{uuid.uuid4().hex[:6]}.", real.state_dir,
                       extra_env={"HUB_AUDIT__CHECKPOINT_EVERY": str(EVERY)})  # fmt: skip
    folder = hub.settings().audit_anchor_dir
    folder.mkdir(parents=True)
    for partition, lines in (real.anchors if anchors is None else anchors).items():
        FileAnchors(folder).path(partition).write_text("".join(f"{line}\n" for line in lines))

    async def write() -> None:
        await ensure_topics(hub.admin, [TopicSpec(hub.topics.audit, real.partitions, {"retention.ms": "-1"})])
        producer = clients.producer(hub.admin, enable_idempotence=True, acks="all")
        await producer.start()
        try:
            for partition, values in records.items():
                for value in values:  # one at a time: the copy keeps the order exactly
                    await producer.send_and_wait(hub.topics.audit, value, partition=partition)
        finally:
            await producer.stop()

    asyncio.run(write())
    apply_acls(hub.admin, hub.settings())
    return hub


def decode(value: bytes) -> AuditRecord:
    record = SERDE.decode(value)
    assert isinstance(record, AuditRecord)
    return record


def edited(value: bytes, rehash: bool = False) -> bytes:
    """The record claiming a disclosure to another receiver (SIG) — and, with ``rehash``, its own hash
    recomputed to match, as a careful forger would."""
    record = decode(value)
    forged = record.model_copy(update={"receiver": "sig", "decision": Decision.delivered,
                                       "fields_disclosed": ["envelope.subject"]})  # fmt: skip
    if rehash:
        forged = forged.model_copy(update={"hash": record_hash(forged)})
    return SERDE.encode(forged)


K = 2
"""Where in the long partition the tampering happens (0-based offset)."""

TAMPERINGS: dict[str, tuple[Callable[[list[bytes]], list[bytes]], int, str]] = {
    # name: (change to the partition's records, offset where the break must be reported, why)
    "edit": (lambda r: [*r[:K], edited(r[K]), *r[K + 1 :]], K, "hash does not match the record's content"),
    # The MAC key is not in Kafka: a forger who recomputes the hash cannot recompute the MAC.
    "edit_with_own_hash_recomputed": (lambda r: [*r[:K], edited(r[K], rehash=True), *r[K + 1 :]], K,
                                      "MAC does not match"),
    "delete": (lambda r: [*r[:K], *r[K + 1 :]], K, f"expected seq {K}, found {K + 1}"),
    "delete_the_first": (lambda r: r[1:], 0, "expected seq 0, found 1"),
    "reorder": (lambda r: [*r[:K], r[K + 1], r[K], *r[K + 2 :]], K, f"expected seq {K}, found {K + 1}"),
    "replay": (lambda r: [*r[: K + 1], r[K], *r[K + 1 :]], K + 1, f"expected seq {K + 1}, found {K}"),
}  # fmt: skip


def test_an_untouched_copy_of_the_real_trail_verifies(trail: RealTrail) -> None:
    hub = copy_into_fresh_namespace(trail, trail.records)
    code, report = verify_cli(hub)
    assert code == 0
    checkpoints = sum(len(checkpoints_in(v)) for v in trail.records.values())
    records = sum(len(v) for v in trail.records.values()) - checkpoints
    assert checkpoints >= 2
    assert {k: report[k] for k in ("ok", "records", "macs_checked", "checkpoints", "anchored", "unanchored",
                                   "partitions", "first_break")} == {
        "ok": True, "records": records, "macs_checked": records, "checkpoints": checkpoints,
        "anchored": checkpoints, "unanchored": 0, "partitions": len(trail.records), "first_break": None}  # fmt: skip


@pytest.mark.parametrize("name", sorted(TAMPERINGS))
def test_tampering_is_reported_at_the_record_where_it_happened(trail: RealTrail, name: str) -> None:
    change, offset, why = TAMPERINGS[name]
    p = trail.longest
    hub = copy_into_fresh_namespace(trail, {**trail.records, p: change(trail.records[p])})
    code, report = verify_cli(hub)
    assert code == 1
    assert report["ok"] is False
    first_break = str(report["first_break"])
    assert first_break.startswith(f"partition {p} offset {offset} "), first_break
    assert why in first_break


def test_a_record_copied_into_another_partition_is_reported_there(trail: RealTrail) -> None:
    p = trail.longest
    other = next(q for q in range(trail.partitions) if q != p)
    records = {**trail.records, other: [*trail.records.get(other, []), trail.records[p][K]]}
    hub = copy_into_fresh_namespace(trail, records)
    code, report = verify_cli(hub)
    assert code == 1
    first_break = str(report["first_break"])
    assert first_break.startswith(f"partition {other} offset {len(records[other]) - 1} "), first_break
    assert f"record claims partition {p}" in first_break


def break_in_copy(trail: RealTrail, partition: int, values: list[bytes],
                  anchors: dict[int, list[str]] | None = None) -> str:  # fmt: skip
    """``hub audit verify`` on a copy of the trail with ``partition`` holding ``values``: its first break."""
    hub = copy_into_fresh_namespace(trail, {**trail.records, partition: values}, anchors)
    code, report = verify_cli(hub)
    assert (code, report["ok"]) == (1, False), report
    return str(report["first_break"])


def rewritten(values: list[bytes]) -> list[bytes]:
    """The partition as a forger with write access to the broker would rewrite it: record K claims a
    disclosure to another receiver, every hash from there on recomputed so the chain holds, the MACs left out
    (their key is not in Kafka) and the checkpoints too (they cannot be signed again)."""
    out: list[bytes] = []
    prev: str | None = None
    for value in values:
        rec = SERDE.decode(value)
        if isinstance(rec, AuditCheckpoint):
            continue
        assert isinstance(rec, AuditRecord)
        if rec.seq == K:
            rec = rec.model_copy(update={"receiver": "sig", "fields_disclosed": ["envelope.subject"]})
        rec = rec.model_copy(update={"mac": None, "prev_hash": rec.prev_hash if prev is None else prev})
        rec = rec.model_copy(update={"hash": record_hash(rec)})
        prev = rec.hash
        out.append(SERDE.encode(rec))
    return out


def checkpoint_positions(values: list[bytes]) -> list[int]:
    return [i for i, v in enumerate(values) if isinstance(SERDE.decode(v), AuditCheckpoint)]


def test_a_whole_partition_rewritten_with_recomputed_hashes_is_caught_by_its_anchors(trail: RealTrail) -> None:
    p = trail.longest
    first_break = break_in_copy(trail, p, rewritten(trail.records[p]))
    # The first anchored checkpoint seals seq EVERY - 1, at that offset of the rewritten partition.
    assert first_break.startswith(f"partition {p} offset {EVERY - 1} "), first_break
    assert "is not the one the anchored checkpoint signed" in first_break


def test_a_truncated_end_is_caught_by_the_anchors(trail: RealTrail) -> None:
    p = trail.longest
    first_break = break_in_copy(trail, p, trail.records[p][:2])
    assert first_break.startswith(f"partition {p} offset 1 "), first_break
    assert f"anchored checkpoint of seq {EVERY - 1} is past the end of the partition" in first_break


def without(values: list[bytes], index: int) -> list[bytes]:
    return [*values[:index], *values[index + 1 :]]


def test_a_deleted_checkpoint_is_caught_by_the_anchors(trail: RealTrail) -> None:
    p = trail.longest
    first_break = break_in_copy(trail, p, without(trail.records[p], checkpoint_positions(trail.records[p])[0]))
    assert first_break.startswith(f"partition {p} offset {EVERY - 1} "), first_break
    assert f"anchored checkpoint of seq {EVERY - 1} is missing from the topic" in first_break


def test_a_deleted_checkpoint_is_caught_by_the_gap_without_the_anchors(trail: RealTrail) -> None:
    p = trail.longest
    second = checkpoint_positions(trail.records[p])[1]
    first_break = break_in_copy(trail, p, without(trail.records[p], second), anchors={})
    # The record after the deleted checkpoint is the (EVERY + 1)th since the one before it.
    assert first_break.startswith(f"partition {p} offset {second} "), first_break
    assert f"more than {EVERY} records since the last checkpoint" in first_break


def test_an_altered_anchor_is_reported(trail: RealTrail) -> None:
    p = trail.longest
    lines = list(trail.anchors[p])
    lines[0] = json.dumps({**json.loads(lines[0]), "head": "0" * 64})
    first_break = break_in_copy(trail, p, trail.records[p], anchors={**trail.anchors, p: lines})
    assert f"anchored checkpoint of seq {EVERY - 1} has no valid signature" in first_break
