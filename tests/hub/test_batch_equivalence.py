"""The batch path gives what the per-message path gave: the same deliveries, dead letters, audit decisions and
lägesbild figures for a seeded stream of 20k mixed events with bad input (no Kafka).

The expected facts are the golden file ``tests/hub/golden/batch_equivalence.json``, recorded once from the
per-message code of commit 0e1e820 (``tests/hub/golden_batch.py`` says how). Here the same messages go
through :class:`hub.worker.batch.BatchProcessor` a batch at a time, wired as :func:`hub.worker.app.build_loop`
wires it, with the increments each batch writes to ``hub.lagesbild`` read back in later batches (each on the
partition of its key, at the next offset there) beside the agency messages still to come. The full stream
runs in batches of 500; the small one in batches of 1 and of 97.
"""

from __future__ import annotations

import collections
import json
import tempfile
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from hub.audit import AuditChain, verify
from hub.contract.outputs import AuditRecord
from hub.contract.serde import Serde
from hub.flows.routing import Router
from hub.lagesbild_stage import LagesbildStage
from hub.pipeline import Message, Pipeline
from hub.pseudonym import Pseudonymiser
from hub.rules.model import load_rules
from hub.topics import Topics
from hub.worker.batch import BatchProcessor
from hub.worker.disk import DiskTable
from hub.worker.state import PartitionedTable
from tests.hub import golden_batch as g


def run_batches(messages: list[Message], batch_size: int) -> list[Any]:
    """Every record the batch path writes for ``messages``, read ``batch_size`` at a time."""
    settings = g.hub_settings()
    serde, topics = Serde(), Topics()
    window_ms = int(settings.dedup_window_hours * 3600_000)
    disk = Path(tempfile.mkdtemp(prefix="state-"))
    seen = DiskTable(topics.dedup, disk / "dedup", window_ms)
    consents = DiskTable(topics.consent, disk / "consent")
    for p in range(g.PARTITIONS):  # as WorkerState.load opens them (empty: nothing to replay)
        seen.open(p)
        consents.open(p)
    alerts = PartitionedTable(topics.lagesbild_alerts)
    pipeline = Pipeline(
        Router(load_rules(settings.rules_path), settings.county_code), serde, Pseudonymiser(settings),
        seen=seen, consents=consents, chain=AuditChain(), dedup_window_s=settings.dedup_window_hours * 3600,
        topics=topics,
    )  # fmt: skip
    stage = LagesbildStage(serde, topics, settings.county_code, g.wave_rule(settings), alerts)
    processor = BatchProcessor(pipeline, stage, topics, [seen, consents, alerts], {})

    source = deque(messages)
    increments: deque[Message] = deque()
    next_offset: collections.Counter[int] = collections.Counter()
    for m in messages:
        if m.topic == topics.lagesbild:
            next_offset[m.partition] = max(next_offset[m.partition], m.offset + 1)
    outputs: list[Any] = []
    while source or increments:
        # The increments earlier batches wrote come back in later ones, beside the agency messages still to come.
        batch = [increments.popleft() for _ in range(min(len(increments), max(1, batch_size // 2)))]
        while source and len(batch) < batch_size:
            batch.append(source.popleft())
        written = processor.process(batch)
        for table in (seen, consents):  # the batch's transaction committed
            table.write_committed()
        outputs += written
        for o in written:
            if o.topic == topics.lagesbild:
                p = g.partition_of(o.key) if o.partition is None else o.partition
                increments.append(Message(topics.lagesbild, p, next_offset[p], o.key, o.value))
                next_offset[p] += 1
    return outputs


def differences(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """What differs between two compact goldens, category by category and table entry by table entry."""
    out = [f"{k}: got {got.get(k)!r}, golden {want.get(k)!r}"
           for k in ("messages", "bad_input") if got.get(k) != want.get(k)]  # fmt: skip
    cats_got, cats_want = got["categories"], want["categories"]
    out += [f"category {c}: got {cats_got.get(c)}, golden {cats_want.get(c)}"
            for c in sorted({*cats_got, *cats_want}) if cats_got.get(c) != cats_want.get(c)]  # fmt: skip
    for table in sorted({*got["tables"], *want["tables"]}):
        t_got, t_want = got["tables"].get(table, {}), want["tables"].get(table, {})
        out += [f"{table}[{k}]: got {t_got.get(k)}, golden {t_want.get(k)}"
                for k in sorted({*t_got, *t_want}) if t_got.get(k) != t_want.get(k)]  # fmt: skip
    return out


def audit_trail(outputs: Iterable[Any]) -> list[tuple[int, int, AuditRecord]]:
    """The audit records written, as (partition, offset, record) in order per partition."""
    serde, topics = Serde(), Topics()
    per: dict[int, list[AuditRecord]] = collections.defaultdict(list)
    for o in outputs:
        if o.topic == topics.audit:
            record = serde.decode(o.value)
            assert isinstance(record, AuditRecord)
            per[o.partition].append(record)
    return [(p, offset, r) for p in sorted(per) for offset, r in enumerate(per[p])]


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    golden: dict[str, Any] = json.loads(g.GOLDEN.read_text())
    return golden


@pytest.fixture(scope="module")
def full() -> g.Stream:
    return g.stream(g.FULL)


@pytest.fixture(scope="module")
def subset() -> g.Stream:
    return g.stream(g.SUBSET)


@pytest.fixture(scope="module")
def full_run(full: g.Stream) -> tuple[list[Any], g.Facts, float]:
    started = time.perf_counter()
    outputs = run_batches(full.messages, 500)
    return outputs, g.facts(outputs), time.perf_counter() - started


def check(s: g.Stream, f: g.Facts, want: dict[str, Any], label: str, tmp_path: Path) -> None:
    got = g.golden_of(s, f)
    diff = differences(got, want)
    if diff:
        dump = tmp_path / label
        dump.mkdir(parents=True, exist_ok=True)
        examples = []
        for c, ls in g.lines(f).items():
            (dump / f"{c}.jsonl").write_text("".join(x + "\n" for x in ls))
            if got["categories"][c] != want["categories"].get(c):
                examples += [f"  {c}: {x}" for x in ls[:3]]
        print("\n".join([f"{label}: the batch path differs from the per-message golden:", *diff,
                         "first lines of the differing categories here:", *examples,
                         f"every line of this run: {dump} (the oracle's: golden_batch.py --dump)"]))  # fmt: skip
    assert not diff, f"{label}: {len(diff)} difference(s) from the golden, first: {diff[0]}"


def test_bad_input_is_at_least_half_a_percent_and_every_bad_message_is_dead_lettered(
    full: g.Stream, subset: g.Stream, full_run: tuple[list[Any], g.Facts, float]
) -> None:
    for s in (full, subset):
        assert len(s.bad) / len(s.messages) >= 0.005, s.kinds()
        assert set(s.kinds()) >= {*g.BAD_KINDS, "bad_increment"}
    f = full_run[1]
    dead = {(d["source_topic"], d["source_partition"], d["source_offset"]) for d in f["deadletters"]}
    bad = {where for where, kind in full.bad.items() if kind != "duplicate"}  # a re-sent event is dropped
    assert bad <= dead, sorted(bad - dead)[:5]


def test_full_stream_in_batches_of_500_matches_the_golden(
    full: g.Stream, full_run: tuple[list[Any], g.Facts, float], golden: dict[str, Any], tmp_path: Path
) -> None:
    outputs, f, seconds = full_run
    print(f"{len(full.messages)} messages in batches of 500: {seconds:.1f} s")
    check(full, f, golden["full"], "full, batches of 500", tmp_path)
    result = verify(audit_trail(outputs))
    assert result.ok, result.first_break
    assert result.records == golden["full"]["categories"]["audit"]["count"]


@pytest.mark.parametrize("batch_size", [1, 97])
def test_small_stream_in_other_batch_sizes_matches_the_golden(
    subset: g.Stream, golden: dict[str, Any], batch_size: int, tmp_path: Path
) -> None:
    outputs = run_batches(subset.messages, batch_size)
    check(subset, g.facts(outputs), golden["subset"], f"subset, batches of {batch_size}", tmp_path)
    result = verify(audit_trail(outputs))
    assert result.ok, result.first_break
