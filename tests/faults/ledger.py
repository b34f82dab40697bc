"""Accounting for the fault-injection tests: what entered, what came out, per event id.

``hub reconcile`` answers the operator's question (is anything unaccounted, how many duplicate
deliveries). The tests also know exactly which event ids were acknowledged to a sender, so
:func:`read_ledger` reads every trail topic and :meth:`Ledger.check` accounts for each of those ids
one by one: it must have reached an agency topic, and have audit records (delivered, refused,
aggregated, recorded) or a dead letter — never neither, never both. Duplicate deliveries (one event
id on one receiver topic more than once) are counted and must be identical apart from
``delivered_at``, which is what "a receiver may see a delivery twice, with the same event_id" means.

Also here: the worker group's committed offsets and member assignments, read from the broker.

Everything here reads as the broker's super user (``admin``), as an operator's script would; the functions
take the session broker's bootstrap address.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from hub.contract.errors import ContractError
from hub.contract.outputs import AuditRecord, Deadletter, Delivery
from hub.contract.serde import Serde
from hub.deadline import Deadline
from hub.kafka import clients
from hub.kafka.read import read_to_end
from hub.reconcile import reconcile
from hub.rules.receivers import RECEIVERS
from hub.settings import HubSettings
from hub.topics import Topics
from tests.hub.support import HubUnderTest
from tests.kafka_env import access

SERDE = Serde()


@dataclass
class Ledger:
    """Every trail topic of one hub, indexed by event id."""

    source: Counter[str] = field(default_factory=Counter)
    """event id -> source messages carrying it (more than one when a sender re-sent it)."""
    first_at: dict[str, TopicPartition] = field(default_factory=dict)
    first_offset: dict[str, int] = field(default_factory=dict)
    """event id -> where its first source message is."""
    undecodable_sources: int = 0
    audit: dict[str, Counter[tuple[str, str]]] = field(default_factory=lambda: defaultdict(Counter))
    """event id -> (receiver, decision) -> audit records."""
    deadlettered: Counter[str] = field(default_factory=Counter)
    """event id -> dead letters (for dead letters that could name the event)."""
    deliveries: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    """(event id, receiver topic) -> each delivery's content without ``delivered_at``, as JSON."""
    delivered_to: set[tuple[str, str]] = field(default_factory=set)
    """(event id, receiver) of every delivery on a receiver topic."""
    delivered_where: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    """(event id, receiver topic) -> each delivery's partition, offset and delivered_at: what a failure names."""
    delivered_at_offsets: dict[tuple[str, str], list[tuple[int, int]]] = field(
        default_factory=lambda: defaultdict(list))  # fmt: skip
    """(event id, receiver topic) -> each delivery's (partition, offset)."""

    @property
    def duplicate_deliveries(self) -> int:
        return sum(len(v) - 1 for v in self.deliveries.values() if len(v) > 1)

    def describe_duplicates(self, limit: int = 5) -> str:
        """The first duplicated deliveries, one per line: where each copy is, and where and how often its event
        came in (a string, which pytest prints whole, where it would shorten the repr of a list)."""
        out = []
        for (event_id, topic), copies in sorted(self.deliveries.items()):
            if len(copies) > 1 and len(out) < limit:
                tp = self.first_at.get(event_id)
                came = f"{tp.topic}/{tp.partition}@{self.first_offset[event_id]}" if tp else "?"
                out.append(f"{event_id} on {topic} at {self.delivered_where[(event_id, topic)]}, source {came} "
                           f"x{self.source[event_id]}, audit {dict(self.audit.get(event_id, {}))}")  # fmt: skip
        return f"{self.duplicate_deliveries} duplicate deliveries, the first:\n" + "\n".join(out)

    def first_duplicate(self) -> tuple[str, int, list[int]] | None:
        """The topic, partition and offsets of the copies of the first duplicated delivery on one partition."""
        for key, copies in sorted(self.deliveries.items()):
            if len(copies) > 1:
                by_partition: dict[int, list[int]] = defaultdict(list)
                for partition, offset in self.delivered_at_offsets[key]:
                    by_partition[partition].append(offset)
                partition, offsets = max(by_partition.items(), key=lambda kv: len(kv[1]))
                return key[1], partition, offsets
        return None

    def duplicated_event_ids(self) -> set[str]:
        return {e for (e, _t), v in self.deliveries.items() if len(v) > 1}

    @property
    def duplicate_audits(self) -> int:
        return sum(n - 1 for c in self.audit.values() for n in c.values() if n > 1)

    @property
    def resent_sources(self) -> int:
        """Source messages beyond the first per event id (re-sent by a sender; the hub drops them)."""
        return sum(n - 1 for n in self.source.values() if n > 1)

    def check(self, acknowledged: Iterable[str]) -> Accounting:
        acked = set(acknowledged)
        missing_from_source = sorted(acked - set(self.source))
        unaccounted = sorted(e for e in acked if e not in self.audit and e not in self.deadlettered)
        both = sorted(e for e in acked if e in self.audit and e in self.deadlettered)
        audited_deliveries = {(e, r) for e, c in self.audit.items() for (r, d) in c if d == "delivered"}
        inconsistent = sorted(f"{e} on {t}" for (e, t), bodies in self.deliveries.items() if len(set(bodies)) > 1)
        return Accounting(
            acknowledged=len(acked), missing_from_source=missing_from_source, unaccounted=unaccounted,
            audited_and_deadlettered=both, inconsistent_duplicates=inconsistent,
            audited_not_delivered=sorted(f"{e} to {r}" for e, r in audited_deliveries - self.delivered_to),
            delivered_not_audited=sorted(f"{e} to {r}" for e, r in self.delivered_to - audited_deliveries),
            deliveries=sum(len(v) for v in self.deliveries.values()),
            duplicate_deliveries=self.duplicate_deliveries, duplicate_audits=self.duplicate_audits,
            resent_sources=self.resent_sources,
        )  # fmt: skip


@dataclass
class Accounting:
    acknowledged: int
    missing_from_source: list[str]
    """Acknowledged to a sender but not on any agency topic: lost before the hub."""
    unaccounted: list[str]
    """On an agency topic but with neither an audit record nor a dead letter: lost in the hub."""
    audited_and_deadlettered: list[str]
    inconsistent_duplicates: list[str]
    audited_not_delivered: list[str]
    """An audit record says "delivered" but the receiver's topic does not have it."""
    delivered_not_audited: list[str]
    """A receiver got it but the audit trail does not say so."""
    deliveries: int
    duplicate_deliveries: int
    duplicate_audits: int
    resent_sources: int

    @property
    def lost(self) -> int:
        return len(set(self.missing_from_source) | set(self.unaccounted))

    def summary(self) -> dict[str, int]:
        return {
            "acknowledged": self.acknowledged, "lost": self.lost, "deliveries": self.deliveries,
            "duplicate_deliveries": self.duplicate_deliveries, "duplicate_audits": self.duplicate_audits,
            "resent_sources": self.resent_sources,
        }  # fmt: skip

    def assert_exactly_accounted(self) -> None:
        """0 lost, none both processed and dead-lettered, deliveries and the audit trail agree, every
        duplicate identical to its first copy."""
        assert not self.missing_from_source, (
            f"{len(self.missing_from_source)} acknowledged events never reached an agency topic, "
            f"e.g. {self.missing_from_source[:5]}")  # fmt: skip
        assert not self.unaccounted, (
            f"{len(self.unaccounted)} acknowledged events have neither audit record nor dead letter, "
            f"e.g. {self.unaccounted[:5]}")  # fmt: skip
        assert not self.audited_and_deadlettered, f"processed and dead-lettered: {self.audited_and_deadlettered[:5]}"
        assert not self.audited_not_delivered, (
            f"{len(self.audited_not_delivered)} audited deliveries are missing on the receiver topics, "
            f"e.g. {self.audited_not_delivered[:5]}")  # fmt: skip
        assert not self.delivered_not_audited, (
            f"{len(self.delivered_not_audited)} deliveries have no audit record, e.g. {self.delivered_not_audited[:5]}")
        assert not self.inconsistent_duplicates, (
            f"deliveries of one event to one receiver differ: {self.inconsistent_duplicates[:5]}")  # fmt: skip


def read_ledger(bootstrap: str, settings: HubSettings) -> Ledger:
    return asyncio.run(_read_ledger(bootstrap, settings))


async def _read_ledger(bootstrap: str, settings: HubSettings) -> Ledger:
    topics = Topics(settings.topic_namespace)
    kafka = access(bootstrap)
    ledger = Ledger()
    async for m in read_to_end(kafka, topics.sources(settings.municipality_codes)):
        try:
            _name, record = SERDE.decode_record(m.value)
            event_id = str(record["envelope"]["event_id"])
        except (ContractError, KeyError, TypeError):
            ledger.undecodable_sources += 1
            continue
        ledger.source[event_id] += 1
        if event_id not in ledger.first_at:
            ledger.first_at[event_id] = TopicPartition(m.topic, m.partition)
            ledger.first_offset[event_id] = m.offset
    async for m in read_to_end(kafka, [topics.audit]):
        rec = SERDE.decode(m.value)
        if isinstance(rec, AuditRecord):
            ledger.audit[rec.event_id][(rec.receiver, rec.decision.value)] += 1
    async for m in read_to_end(kafka, [topics.deadletter]):
        d = SERDE.decode(m.value)
        if isinstance(d, Deadletter) and d.event_id is not None:
            ledger.deadlettered[d.event_id] += 1
    codes = [*settings.municipality_codes, settings.county_code]
    async for m in read_to_end(kafka, [topics.deliver(r, c) for r in RECEIVERS for c in codes]):
        d = SERDE.decode(m.value)
        if isinstance(d, Delivery):
            body = json.dumps(d.model_dump(mode="json", exclude={"delivered_at"}), sort_keys=True)
            ledger.deliveries[(d.event_id, m.topic)].append(body)
            ledger.delivered_to.add((d.event_id, d.receiver))
            ledger.delivered_where[(d.event_id, m.topic)].append(f"{m.partition}@{m.offset} {d.delivered_at}")
            ledger.delivered_at_offsets[(d.event_id, m.topic)].append((m.partition, m.offset))
    return ledger


def wait_accounted(bootstrap: str, settings: HubSettings, sources: int, timeout_s: float,
                   at_least: bool = False, alive: Callable[[], None] | None = None) -> float:  # fmt: skip
    """Poll :func:`hub.reconcile.reconcile` until ``sources`` source messages (or more, with
    ``at_least``) are all accounted for; the seconds it took. ``alive`` is called before each poll and
    raises when a process the accounting waits for has exited (fails now, not at the timeout)."""
    deadline = Deadline(timeout_s, f"{sources} source messages to be accounted for")

    async def settled() -> bool:
        if alive is not None:
            alive()
        r = await reconcile(access(bootstrap), settings)
        print(f"reconcile: {r.source_messages} in, {r.accounted} accounted, {r.lost} not yet", flush=True)
        enough = r.source_messages >= sources if at_least else r.source_messages == sources
        return enough and r.lost == 0

    asyncio.run(deadline.async_wait_for(settled, interval=2.0))
    return deadline.seconds - deadline.remaining


# -- the worker group, as the broker sees it ----------------------------------------------------------


def committed(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    """The group's committed offset per partition (only partitions it has committed)."""

    async def read() -> dict[TopicPartition, int]:
        admin = clients.admin(access(bootstrap))
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        finally:
            await admin.close()
        return {tp: om.offset for tp, om in offsets.items() if om.offset >= 0}

    return asyncio.run(read())


def committed_on(bootstrap: str, group: str, settings: HubSettings) -> int:
    """How many agency-topic messages the group has committed (processed and flushed)."""
    agency = set(Topics(settings.topic_namespace).sources(settings.municipality_codes))
    return sum(o for tp, o in committed(bootstrap, group).items() if tp.topic in agency)


def wait_committed(hub: HubUnderTest, worker: subprocess.Popen[bytes], name: str, point: int,
                   timeout_s: float) -> None:  # fmt: skip
    """Until the worker's group has committed ``point`` agency messages (fails if the worker exits)."""
    group = f"{hub.namespace}hub"

    def reached() -> bool:
        assert worker.poll() is None, f"{name} exited by itself:\n{hub.log(name)}"
        return committed_on(hub.bootstrap, group, hub.settings()) >= point

    Deadline(timeout_s, f"{name} to commit {point} messages").wait_for(reached, 0.3)


def assignments(bootstrap: str, group: str) -> tuple[str, dict[str, set[TopicPartition]]]:
    """The group's state and each member's assigned partitions (by client id)."""

    async def read() -> tuple[str, dict[str, set[TopicPartition]]]:
        admin = clients.admin(access(bootstrap))
        await admin.start()
        try:
            [response] = await admin.describe_consumer_groups([group])
        finally:
            await admin.close()
        [described] = response.to_object()["groups"]
        members: dict[str, set[TopicPartition]] = {}
        for i, member in enumerate(described["members"]):
            raw = member["member_assignment"]
            tps: set[TopicPartition] = set()
            if raw:
                assignment = ConsumerProtocolMemberAssignment.decode(raw)
                tps = {TopicPartition(t, p) for t, parts in assignment.assignment for p in parts}
            name = member.get("group_instance_id") or f"{member['client_id']}#{i}"
            members[str(name)] = tps
        return str(described["state"]), members

    return asyncio.run(read())


def unexplained_duplicates(ledger: Ledger, committed_at_kills: list[dict[TopicPartition, int]]) -> list[str]:
    """Event ids delivered twice although their source message was committed before every crash.

    After a crash only messages from the committed offset on are processed again, so a duplicate is
    explained only by a crash whose committed offset (for its partition) was at or below it.
    """
    out = []
    for event_id in sorted(ledger.duplicated_event_ids()):
        tp, offset = ledger.first_at[event_id], ledger.first_offset[event_id]
        if not any(offset >= c.get(tp, 0) for c in committed_at_kills):
            out.append(f"{event_id} at {tp.topic}/{tp.partition}@{offset}")
    return out
