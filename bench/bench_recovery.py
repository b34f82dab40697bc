"""Lägesbild benchmark: aggregation throughput of the lägesbild stage, and table recovery time.

Per run, two ``hub worker`` processes, each on its own topic namespace and consumer group, on one broker
(``--bootstrap``, else ``HUB_KAFKA_BOOTSTRAP``, else a LocalBroker in a temporary folder):

(A) aggregation. ``--increments`` count increments, made by the real routing pipeline
    (:class:`hub.pipeline.Pipeline`) from simulated traffic, are produced to ``hub.lagesbild`` in one burst
    once the worker is ready. The lägesbild stage counts them into its table, publishes aggregates to
    ``deliver.<receiver>.<kommunkod>`` and forwards each municipal increment once as a county increment
    (to ``hub.lagesbild`` again, counted as well). The run is done when the worker's group has committed
    the end of ``hub.lagesbild`` and the output topics stopped growing for 2 s. Throughput =
    increments processed (the originals and the county copies) / time from the start of the burst to
    the last growth of the output topics. The worker's start-to-ready time with empty tables is the
    baseline for (B).

(B) recovery. The lägesbild stage's state topic ``hub.lagesbild-state`` (compacted, with the worker's
    partition count; :mod:`hub.lagesbild_store`) is filled with ``--keys`` records straight from aiokafka,
    once per invocation; every run starts a fresh worker on that namespace. A record is what the stage
    stores for one aggregate key (:class:`hub.flows.lagesbild.Counts`): key ``receiver|municipality|area|
    category|period`` (``lagesbild|1381|Centrum|residential_burglary|2026-W33``, ...), value its count, made
    by counting synthetic increments (half of them county copies, over a year of days) with the stage's own
    :class:`Counts` until it holds ``--keys`` keys, and encoded by its own ``encode_record``. Each record goes
    to the partition the worker itself writes it to (that of the ``hub.lagesbild`` increments, keyed by
    ``receiver|municipality``, hashed by the default partitioner). Figures: the table's recovery time, the
    longest state load of a partition as the worker logs it (partitions load concurrently; the logged
    counts must add up to the records written), and the time from the process start until ``/ready``
    answers 200; the worker is ready only when faust's tables are recovered and every assigned lägesbild
    partition's state is loaded (``hub.app``'s ``/ready``). Then a probe proves the worker read
    what was written: one more increment for an aggregate written with the count 2 must publish the count 3
    (and 4, 5, ... in later runs).

``run_aggregation()``, ``prepare_recovery()`` and ``run_recovery()`` return the figures as dicts
(``python -m bench`` calls them); peak RSS of each worker is sampled.

    .venv/bin/python bench/bench_recovery.py --keys 1000000 --increments 20000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.rss import PeakRss
from bench.support import (
    admin_access,
    bench_settings,
    hub_env,
    log_tail,
    provision,
    spawn_hub,
    standalone_broker,
    stop,
    wait_http_ok,
)
from connectors.base import event_topic
from connectors.simulator.generate import MUNICIPALITIES, Simulator, replay_start
from hub.audit import AuditChain
from hub.contract.envelope import OffenceCategory
from hub.contract.serde import Serde
from hub.deadline import Deadline
from hub.flows.lagesbild import aggregate_keys, county_increment
from hub.flows.routing import Router
from hub.kafka import clients
from hub.kafka.clients import KafkaAccess
from hub.kafka.local import free_port
from hub.kafka.read import records_from
from hub.lagesbild_store import encode_record
from hub.pipeline import Message, Pipeline
from hub.pseudonym import Pseudonymiser
from hub.rules.model import load_rules
from hub.rules.receivers import RECEIVERS, Basis
from hub.settings import HubSettings
from hub.topics import Topics

AGGREGATE = "se.samverkan.hub.LagesbildAggregate"
# An area no synthetic entry has, on today's date, so that only the probe's own events count into its aggregate.
_TODAY = date.today()
PROBE = {
    "receiver": "lagesbild", "municipality_code": "1381", "area": "Benchprobe", "category": "residential_burglary",
    "week": f"{_TODAY.isocalendar().year}-W{_TODAY.isocalendar().week:02d}", "day": _TODAY.isoformat(),
}  # fmt: skip
HORIZON_DAYS = 400
"""The recovering worker keeps day counts this far back (not the default 70), so that the year of synthetic
days it loads is all kept: the benchmark measures loading that many keys."""


def changelog_topic(namespace: str) -> str:
    """The lägesbild state topic of a hub on ``namespace``."""
    return Topics(namespace).lagesbild_state


def partition_for(source_key: str, partitions: int) -> int:
    """The partition aiokafka's (and so faust's) default partitioner gives a ``hub.lagesbild`` key."""
    ps = list(range(partitions))
    return int(DefaultPartitioner()(source_key.encode(), ps, ps))


async def produce_batches(kafka: KafkaAccess, topic: str, records: dict[int, list[tuple[bytes, bytes]]]) -> None:
    """Write ``{partition: [(key, value), ...]}`` in large batches (much faster than one send per record)."""
    producer = clients.producer(kafka, acks="all", max_batch_size=1024 * 1024, max_request_size=2 * 1024 * 1024)
    await producer.start()
    try:
        pending = []
        for partition, items in records.items():
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    pending.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            if batch.record_count():
                pending.append(await producer.send_batch(batch, topic, partition=partition))
            if len(pending) > 64:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


# -- (A) aggregation -------------------------------------------------------------------------------------


Behind = dict[int, tuple[int | None, int]]


def partitions_behind(committed: dict[TopicPartition, int], ends: dict[TopicPartition, int]) -> Behind:
    """``{partition: (committed, end)}`` of the partitions whose group offset has not reached the end yet. A
    partition nothing was written to has no committed offset and nothing to wait for (it hung the smoke run
    when the increments happened to miss one of the four partitions)."""
    return {tp.partition: (committed.get(tp), end) for tp, end in ends.items()
            if end > 0 and (committed.get(tp) is None or committed[tp] < end)}  # fmt: skip


def make_increments(n: int, seed: int = 6) -> list[tuple[bytes, bytes]]:
    """``n`` (key, value) increments as the worker's routing stage makes them, from simulated traffic."""
    settings = HubSettings()
    serde = Serde()
    topics = Topics("bench.")
    pipeline = Pipeline(Router(load_rules(settings.rules_path), settings.county_code), serde,
                        Pseudonymiser(settings), seen={}, consents={}, chain=AuditChain(), topics=topics)  # fmt: skip
    out: list[tuple[bytes, bytes]] = []
    start = replay_start(datetime.now(UTC), n, 1.0)  # about one increment per event
    for offset, event in enumerate(Simulator(seed, start).events()):
        msg = Message(event_topic(event, topics), 0, offset, None, serde.encode(event))
        out += [(f"{i['receiver']}|{i['municipality_code']}".encode(), orjson.dumps(i))
                for i in pipeline.process(msg).increments]  # fmt: skip
        if len(out) >= n:
            return out[:n]
    raise AssertionError("the simulator's stream is endless")


async def end_offsets(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    return dict(await consumer.end_offsets(tps))


async def run_aggregation(bootstrap: str, work: Path, increments: list[tuple[bytes, bytes]],
                          quiet_s: float = 2.0, timeout_s: float = 900) -> dict[str, float]:  # fmt: skip
    """(A): increments/s of the lägesbild stage; start-to-ready with empty tables; peak RSS."""
    ns = f"benchagg{uuid.uuid4().hex[:6]}."
    state = work / ns.rstrip(".")
    state.mkdir(parents=True)
    settings = bench_settings(bootstrap, ns, state)
    topics = Topics(ns)
    n_parts = settings.topic_partitions
    kafka = await provision(settings)
    by_partition: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in range(n_parts)}
    for key, value in increments:
        by_partition[partition_for(key.decode(), n_parts)].append((key, value))

    codes = [*settings.municipality_codes, settings.county_code]
    source = [TopicPartition(topics.lagesbild, p) for p in range(n_parts)]
    outputs = [TopicPartition(topics.deliver(r, c), p) for r in RECEIVERS for c in codes for p in range(2)]
    port = free_port()
    log = state / "worker.log"
    consumer = clients.consumer(kafka)
    admin = clients.admin(kafka)
    await asyncio.gather(consumer.start(), admin.start())
    t_launch = time.perf_counter()
    worker = spawn_hub(["worker", "-l", "info"], hub_env(bootstrap, ns, state, HUB_WORKER__WEB_PORT=str(port)), log)
    rss = PeakRss().start()
    rss.watch("worker", worker.pid)
    producing: asyncio.Task[None] | None = None
    try:
        t_ready = await wait_http_ok(f"http://127.0.0.1:{port}/ready", worker, log)
        last_total = sum((await end_offsets(consumer, source + outputs)).values())  # also fetches the metadata
        # The increments arrive as one burst at a worker that is running: the stage's pace, not its start.
        t0 = time.perf_counter()
        producing = asyncio.create_task(produce_batches(kafka, topics.lagesbild, by_partition))
        deadline = Deadline(timeout_s, "the lägesbild stage to count every increment")
        t_last = t0
        while True:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with {worker.returncode}:\n{log_tail(log)}")
            now = time.perf_counter()
            ends = await end_offsets(consumer, source + outputs)
            total = sum(ends.values())
            if total > last_total:
                last_total, t_last = total, now
            if producing.done() and now - t_last >= quiet_s:
                producing.result()
                committed = await admin.list_consumer_group_offsets(f"{ns}hub", partitions=source)
                offsets = {tp: c.offset for tp, c in committed.items()}
                behind = partitions_behind(offsets, {tp: ends[tp] for tp in source})
                if behind:  # an offset gap may be only transaction markers: count the records after the commits
                    unread = await records_from(kafka, {TopicPartition(topics.lagesbild, p): c or 0
                                                        for p, (c, _) in behind.items()})  # fmt: skip
                    behind = {p: v for p, v in behind.items() if unread[TopicPartition(topics.lagesbild, p)]}
                if not behind:
                    break
                deadline.what = f"the lägesbild stage to count every increment (partition: (committed, end) {behind})"
            deadline.check()
            await asyncio.sleep(0.05)
        processed = sum(ends[tp] for tp in source)
    finally:
        if producing is not None and not producing.done():
            producing.cancel()
        rss.stop()
        await asyncio.gather(consumer.stop(), admin.close())
        stop(worker)
    return {
        "agg_eps": processed / max(t_last - t0, 1e-3),
        "agg_processed": processed,
        "ready_empty_s": t_ready - t_launch,
        "rss_agg_mib": rss.peak_mib("worker"),
    }


# -- (B) recovery ----------------------------------------------------------------------------------------


def synthetic_increments(n: int, seed: int = 5) -> Iterator[dict[str, Any]]:
    """``n`` increments as the lägesbild stage counts them: municipal ones, each followed by its county copy
    (:func:`hub.flows.lagesbild.county_increment`), spread over the last year's days, areas and categories."""
    rng = random.Random(seed)
    receivers = [r.id for r in RECEIVERS.values() if Basis.AGGREGATED in r.bases]
    weights = [6 if r == "lagesbild" else 1 for r in receivers]
    towns = list(MUNICIPALITIES.values())
    categories = [c.value for c in OffenceCategory]
    today = date.today()
    made = 0
    while True:
        town = rng.choices(towns, weights=[t.population for t in towns])[0]
        day = today - timedelta(days=rng.randrange(365))
        iso = day.isocalendar()
        inc = {
            "receiver": rng.choices(receivers, weights=weights)[0], "municipality_code": town.code,
            "area": rng.choice(town.areas) if rng.random() < 0.8 else None, "category": rng.choice(categories),
            "week": f"{iso.year}-W{iso.week:02d}", "day": day.isoformat(),
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "event_type": "polisen.incident_report",
            "participants": None,
        }  # fmt: skip
        for each in (inc, county_increment(inc, "13")):
            if each is not None and made < n:
                made += 1
                yield each
        if made >= n:
            return


def synthetic_counts(keys: int, seed: int = 5) -> dict[str, int]:
    """``keys`` aggregate keys and their counts, as the stage's :class:`Counts` holds them after counting
    :func:`synthetic_increments` (its ``aggregate_keys``; in the order the keys were first counted)."""
    counts: dict[str, int] = {}
    for inc in synthetic_increments(keys * 4, seed):  # at most 4 keys per increment; usually fewer are new
        for *_, key in aggregate_keys(inc):
            counts[key] = counts.get(key, 0) + 1
        if len(counts) >= keys:
            break
    return dict(itertools.islice(counts.items(), keys))


def state_partition(key: str, partitions: int) -> int:
    """The ``hub.lagesbild-state`` partition of an aggregate key: that of the increments that count into it."""
    receiver, municipality = key.split("|", 2)[:2]
    return partition_for(f"{receiver}|{municipality}", partitions)


@dataclass
class RecoveryTable:
    """A changelog written once, recovered by every run; ``probe_count`` is the probe key's current count."""

    namespace: str
    keys: int
    write_s: float
    probe_count: int = 2


async def prepare_recovery(bootstrap: str, keys: int, seed: int = 5) -> RecoveryTable:
    """Create the namespace's topics and the table's changelog; write ``keys`` entries (plus the probe's)."""
    ns = f"benchrec{uuid.uuid4().hex[:6]}."
    settings = bench_settings(bootstrap, ns)
    n_parts = settings.topic_partitions
    kafka = await provision(settings)  # the workers of every run read it as their group's (ACLs included)
    topic = changelog_topic(ns)  # created with the hub's topics
    probes = {key: 2 for area, *_, key in aggregate_keys(PROBE) if area}  # the probe area's, counted twice before
    by_partition: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in range(n_parts)}
    for key, count in itertools.chain(synthetic_counts(keys, seed).items(), probes.items()):
        by_partition[state_partition(key, n_parts)].append(encode_record(key, count))
    started = time.perf_counter()
    await produce_batches(kafka, topic, by_partition)
    return RecoveryTable(ns, keys, time.perf_counter() - started)


async def probe(bootstrap: str, topics: Topics, timeout_s: float = 120) -> int | None:
    """Send one increment for the probe key; return the count the worker publishes for it (None = "<3")."""
    target = topics.deliver("lagesbild", "1381")
    kafka = admin_access(bootstrap)
    consumer = clients.consumer(kafka)
    await consumer.start()
    try:
        tps = [TopicPartition(target, p) for p in range(2)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        producer = clients.producer(kafka, acks="all")
        await producer.start()
        try:
            increment = {**PROBE, "n": 1}
            await producer.send_and_wait(topics.lagesbild, json.dumps(increment).encode(), key=b"lagesbild|1381")
        finally:
            await producer.stop()
        serde = Serde()
        deadline = Deadline(timeout_s, "the probe's aggregate")
        while True:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for m in messages:
                    name, r = serde.decode_record(m.value)
                    if (name == AGGREGATE and r["area"] == PROBE["area"] and r["period"] == PROBE["week"]
                            and r["category"] == PROBE["category"]):  # fmt: skip
                        return None if r["suppressed"] else int(r["count"])
            deadline.check()
    finally:
        await consumer.stop()


async def run_recovery(bootstrap: str, work: Path, table: RecoveryTable, timeout_s: float = 1800) -> dict[str, float]:
    """(B): seconds from starting a worker to its /ready with ``table`` to recover; peak RSS; probe checked."""
    ns = table.namespace
    state = work / f"{ns.rstrip('.')}-{uuid.uuid4().hex[:4]}"
    state.mkdir(parents=True)
    port = free_port()
    log = state / "worker.log"
    t_launch = time.perf_counter()
    env = hub_env(bootstrap, ns, state, HUB_WORKER__WEB_PORT=str(port),
                  HUB_LAGESBILD__DAY_HORIZON_DAYS=str(HORIZON_DAYS), HUB_LAGESBILD__WEEK_HORIZON_DAYS=str(HORIZON_DAYS))
    worker = spawn_hub(["worker", "-l", "info"], env, log)
    rss = PeakRss().start()
    rss.watch("worker", worker.pid)
    try:
        t_ready = await wait_http_ok(f"http://127.0.0.1:{port}/ready", worker, log, timeout_s=timeout_s)
        expected = table.probe_count + 1
        got = await probe(bootstrap, Topics(ns))
    finally:
        rss.stop()
        stop(worker)
    text = log.read_text(errors="replace")
    if "Error in recovery" in text:
        raise RuntimeError(f"faust reported errors while recovering {changelog_topic(ns)}:\n{log_tail(log)}")
    if got != expected:
        raise RuntimeError(
            f"the worker did not recover the table it was given: the probe aggregate, written with "
            f"the count {table.probe_count}, published count {got if got is not None else '<3'} after one more "
            f"increment instead of {expected}. Does the worker's lägesbild state ({changelog_topic(ns)!r}) still hold "
            f"what hub.flows.lagesbild.Counts holds (bench_recovery.synthetic_counts)?"
        )
    table.probe_count = expected
    load_s, loaded = state_loads(text)
    if loaded < table.keys:
        raise RuntimeError(f"the worker logged loading {loaded:,} aggregates, not the {table.keys:,} written; "
                           f"is hub.lagesbild_store's 'partition ... loaded' log line unchanged?\n{log_tail(log)}")
    return {"ready_s": t_ready - t_launch, "load_s": load_s, "rss_recovery_mib": rss.peak_mib("worker")}


LOADED = re.compile(r"partition (\d+) loaded: (\d+) aggregates \(\d+ older per-event records converted\) "
                    r"in ([0-9.]+) s")


def state_loads(worker_log: str) -> tuple[float, int]:
    """(seconds, aggregate keys) of the state load the worker logged (``hub.lagesbild_store``): partitions
    load concurrently, so the table's recovery time is the longest partition's load."""
    loads = {int(p): (float(s), int(n)) for p, n, s in LOADED.findall(worker_log)}
    return max((s for s, _ in loads.values()), default=float("nan")), sum(n for _, n in loads.values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--keys", type=int, default=1_000_000, help="table keys to recover")
    ap.add_argument("--increments", type=int, default=20000, help="increments to aggregate")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bootstrap", default=os.environ.get("HUB_KAFKA_BOOTSTRAP"))
    args = ap.parse_args()
    t = time.perf_counter()
    increments = make_increments(args.increments)
    print(f"made {len(increments)} increments in {time.perf_counter() - t:.1f} s", flush=True)
    results: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp, \
            standalone_broker(args.bootstrap, Path(tmp)) as bootstrap:  # fmt: skip
        table = asyncio.run(prepare_recovery(bootstrap, args.keys))
        print(f"wrote {args.keys:,} table keys in {table.write_s:.1f} s", flush=True)
        for i in range(args.runs):
            agg = asyncio.run(run_aggregation(bootstrap, Path(tmp), increments))
            rec = asyncio.run(run_recovery(bootstrap, Path(tmp), table))
            r = {**agg, **rec}
            results.append(r)
            print(describe(f"run {i + 1}", r, args.keys), flush=True)
    print(describe("median", {k: statistics.median(r[k] for r in results) for k in results[0]}, args.keys))
    return 0


def describe(head: str, r: dict[str, float], keys: int) -> str:
    return (f"{head}: aggregation {r['agg_eps']:,.0f} increments/s ({r['agg_processed']:,.0f} incl. county copies); "
            f"worker ready after {r['ready_empty_s']:.1f} s with empty tables, {r['ready_s']:.1f} s with {keys:,} "
            f"keys to recover, {r['load_s']:.2f} s of it loading the state; peak RSS {r['rss_agg_mib']:.0f} / "
            f"{r['rss_recovery_mib']:.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
