"""Fuzzing the worker's intake: raw bytes on the agency topics.

In process, case by case, through :meth:`hub.pipeline.Pipeline.process` (what the worker calls for every
message); then one batch end to end through a real ``hub worker`` on the real broker. Every message must
be answered — processed, or dead-lettered with a reason code, a readable message and its original bytes
— and good events published around the bad ones must still be delivered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.audit import AuditChain, verify
from hub.contract.errors import ContractError
from hub.contract.outputs import AuditRecord, Deadletter, Delivery
from hub.contract.personnummer import contains_personnummer
from hub.flows.routing import Router
from hub.identity import PER_MUNICIPALITY
from hub.kafka import clients
from hub.kafka.clients import KafkaAccess
from hub.pipeline import Message, Pipeline, Result
from hub.pseudonym import Pseudonymiser
from hub.rules.model import load_rules
from hub.settings import HubSettings
from hub.topics import Topics
from tests import factories as f
from tests.fuzz.strategies import SERDE, AgencyMessage, agency_messages, case_id
from tests.fuzz.support import Figures, fuzz_settings, generate
from tests.hub.support import REPO, running_hub, wait_ready

# Sized by --full; a hang is caught sooner by the timeouts of the reads.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]
TOPICS = Topics()
SERVED = frozenset(HubSettings().municipality_codes)
LAHOLM = "1381"


def placed(case: AgencyMessage, topics: Topics = TOPICS) -> tuple[str, AgencyMessage]:
    """The agency topic a case is published on, and what must become of it there.

    Each municipality has its own topic: a municipality's case goes to the topic of the municipality its event
    is about, or to Laholm's when it has no event or its event is about the county (which has no topic). On a
    municipality's topic an event about another one is refused (``not_allowed_for_agency``), so a good event
    about the county is a bad one there."""
    if case.agency not in PER_MUNICIPALITY:
        return topics.agency(case.agency), case
    code = case.event.envelope.municipality_code if case.event is not None else None
    if code in SERVED:
        return topics.agency(case.agency, code), case
    if case.event is not None and case.label == "good":
        case = dataclasses.replace(case, label="bad", reasons=frozenset({"not_allowed_for_agency"}))
    return topics.agency(case.agency, LAHOLM), case


def canary(n: int) -> f.ev.MinorSuspected:
    """A good event (statutory: no consent involved) that must reach social services in 1382."""
    return f.minor_suspected(municipality="1382", event_id=str(case_id("canary", n)))


def check_answer(case: AgencyMessage, msg: Message, result: Result) -> None:
    """The pipeline's answer to one fuzz message is one of the acceptable ones, and well formed."""
    assert result.outcome in ("processed", "deadletter"), result.outcome  # fresh ids: never a duplicate
    if result.outcome == "deadletter":
        (out,) = result.outputs
        assert (out.topic, out.partition, out.key) == (TOPICS.deadletter, msg.partition, msg.key)
        letter = SERDE.decode(out.value)
        assert isinstance(letter, Deadletter)
        assert letter.reason.value in case.reasons, (case.family, letter.reason.value, letter.message)
        assert case.label != "good" or letter.reason.value == "no_matching_rule", letter.message
        assert letter.message.strip()
        assert not contains_personnummer(letter.message)
        assert (letter.original, letter.source_topic, letter.source_partition, letter.source_offset) == (
            msg.value or b"", msg.topic, msg.partition, msg.offset)  # fmt: skip
        return
    assert case.label != "bad", f"{case.family} was processed"
    audits = [SERDE.decode(o.value) for o in result.outputs if o.topic == TOPICS.audit]
    assert audits
    assert all(isinstance(a, AuditRecord) and a.event_id == result.event_id for a in audits)
    for out in result.outputs:
        if out.topic.startswith("deliver."):
            delivery = SERDE.decode(out.value)
            assert isinstance(delivery, Delivery)
            assert delivery.event_id == result.event_id
        elif out.topic == TOPICS.lagesbild:
            increment = json.loads(out.value)
            assert increment["event_id"] == result.event_id
            subject = case.event.envelope.subject if case.event is not None else None
            if subject is not None:  # counts carry no person
                assert subject.personnummer[2:8] not in out.value.decode()
        else:
            assert out.topic == TOPICS.audit, out.topic


def test_pipeline_answers_every_message_and_keeps_delivering(fuzz_cases: int,
                                                             figures: Callable[[str], Figures]) -> None:  # fmt: skip
    fig = figures("intake in process (Pipeline.process)")
    pipeline = Pipeline(Router(load_rules()), SERDE, Pseudonymiser(HubSettings()), seen={}, consents={},
                        chain=AuditChain())  # fmt: skip
    offsets = itertools.count()
    audit_trail: list[tuple[int, int, AuditRecord]] = []

    def run(value: bytes | None, topic: str, partition: int, key: bytes | None) -> tuple[Message, Result]:
        msg = Message(topic, partition, next(offsets), key, value)
        result = pipeline.process(msg, now=f.NOW)
        records = [SERDE.decode(o.value) for o in result.outputs if o.topic == TOPICS.audit]
        audit_trail.extend((r.partition, len(audit_trail), r) for r in records if isinstance(r, AuditRecord))
        return msg, result

    @fuzz_settings(fuzz_cases)
    @given(case=agency_messages(), partition=st.integers(0, 3), key=st.none() | st.binary(max_size=40))
    def one(case: AgencyMessage, partition: int, key: bytes | None) -> None:
        n = next(offsets)
        topic, case = placed(case)
        msg, result = run(case.materialise(case_id("intake", n)), topic, partition, key)
        check_answer(case, msg, result)
        fig.count(case.family)
        good = canary(n)
        _, after = run(SERDE.encode(good), TOPICS.agency("polisen"), partition, None)
        delivered = [o.topic for o in after.outputs if o.topic.startswith("deliver.")]
        assert delivered == [TOPICS.deliver("socialtjanst", "1382")], "a good event after a bad one was not delivered"

    one()
    chain = verify(sorted(audit_trail, key=lambda t: (t[0], t[1])))
    assert chain.ok, str(chain.first_break)
    assert chain.records > fig.cases


# -- one batch through a real worker ----------------------------------------------------------------------


async def publish(kafka: KafkaAccess, messages: list[tuple[str, bytes | None]]) -> list[tuple[str, int, int]]:
    """Send in order; the (topic, partition, offset) each message got."""
    producer = clients.producer(kafka, enable_idempotence=True, acks="all", linger_ms=20)
    await producer.start()
    try:
        # A null value (a tombstone) is sent with a key, as Kafka clients send one (aiokafka refuses neither).
        futures = [await producer.send(topic, value, key=b"tombstone" if value is None else None)
                   for topic, value in messages]  # fmt: skip
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(m.topic, m.partition, m.offset) for m in metadata]


@pytest.mark.kafka
def test_real_worker_dead_letters_every_bad_message_and_delivers_the_good_ones(
    kafka_bootstrap: str, tmp_path: Path, fuzz_cases: int, figures: Callable[[str], Figures]
) -> None:
    fig = figures("intake end to end (hub worker)")
    cases = generate(agency_messages(), fuzz_cases)
    with running_hub(kafka_bootstrap, tmp_path, "fzw") as hub:
        t = hub.topics
        messages: list[tuple[str, bytes | None]] = []
        expected: list[AgencyMessage | None] = []  # None: a canary
        canaries: set[str] = set()
        for n, drawn in enumerate(cases):
            topic, case = placed(drawn, t)
            messages.append((topic, case.materialise(case_id("worker", n))))
            expected.append(case)
            fig.count(case.family)
            if n % 10 == 0:
                good = canary(10**9 + n)
                canaries.add(str(good.envelope.event_id))
                messages.append((t.agency("polisen"), SERDE.encode(good)))
                expected.append(None)
        where = asyncio.run(publish(hub.admin, messages))

        social = t.deliver("socialtjanst", "1382")

        def answered(got: dict[str, list[Any]]) -> bool:
            audited = {r.event_id for r in got[t.audit] if isinstance(r, AuditRecord)}
            delivered = {d.event_id for d in got[social] if isinstance(d, Delivery)}
            return len(got[t.deadletter]) + len(audited) >= len(messages) and canaries <= delivered

        got = hub.read([t.deadletter, t.audit, social], until=answered, quiet_s=2.0,
                       timeout_s=120 + len(messages) / 20)  # fmt: skip
        assert hub.procs[0].poll() is None, f"the worker died:\n{hub.log()}"
        wait_ready(hub, hub.procs[0], timeout_s=30)

        letters = {(d.source_topic, d.source_partition, d.source_offset): d for d in got[t.deadletter]
                   if isinstance(d, Deadletter)}  # fmt: skip
        audited = Counter(r.event_id for r in got[t.audit] if isinstance(r, AuditRecord))
        delivered = {d.event_id for d in got[social] if isinstance(d, Delivery)}
        assert canaries <= delivered, f"{len(canaries - delivered)} good events were not delivered"
        for (_topic, value), at, case in zip(messages, where, expected, strict=True):
            letter = letters.get(at)
            if case is None:
                assert letter is None
                continue
            if letter is not None:
                assert letter.reason.value in case.reasons, (case.family, letter.reason.value, letter.message)
                assert case.label != "good" or letter.reason.value == "no_matching_rule"
                assert letter.original == (value or b"")  # a null value's letter keeps no bytes
                assert letter.message.strip()
                assert not contains_personnummer(letter.message)
            else:
                assert case.label != "bad", f"{case.family} at {at} was not dead-lettered"
                assert value is not None, f"{case.family} at {at}: a null value was not dead-lettered"
                assert audited[_event_id(value)] > 0, f"{case.family} at {at} has neither audit record nor dead letter"

        # The operators' own check agrees: every source message is accounted for.
        done = subprocess.run([sys.executable, "-m", "hub.cli", "reconcile", "--json"], cwd=REPO, env=hub.env,
                              capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
        report = json.loads(done.stdout)
        assert done.returncode == 0, done.stdout + done.stderr
        assert report["lost"] == 0
        assert report["source_messages"] == len(messages)


def _event_id(value: bytes) -> str:
    try:
        _, record = SERDE.decode_record(value)
    except ContractError:  # pragma: no cover - only a valid event gets here
        raise AssertionError("undecodable value was not dead-lettered") from None
    return str(record["envelope"]["event_id"])
