"""Benchmark of the ingest gateway (``hub ingest``): acknowledged events/s and end-to-end latency.

Runs the gateway in-process on 127.0.0.1 (client and gateway share one Python process) against a real
broker (``--bootstrap``, else ``HUB_KAFKA_BOOTSTRAP``, else a LocalBroker started in a temporary folder)
and measures:

* single-event mode: ``--concurrency`` clients each posting one JSON event per request;
* batch mode: NDJSON batches of ``--batch`` events;
* latency: single events offered at ``--rate`` events/s for ``--duration`` s; the time from sending the
  HTTP request to the event being readable on the agency topic (p50/p99).

The events are youth activities of the six municipalities, each posted with its own municipality's token
(``kommun-1381`` ...) to its own topic (``agency.kommun.1381.events`` ...); the gateway produces as its
principal ``gateway``, the latency reader reads as ``admin``.

Every figure is the median of ``--runs`` runs. Acks are ``acks="all"`` (idempotent producer). ``run()`` is
one run, returning the figures as a dict (``python -m bench`` calls it).

    .venv/bin/python bench/bench_ingest.py --events 5000 --batch 500 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiokafka import TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import bench_settings, provision, standalone_broker
from connectors.gateway import create_app, hash_token
from hub.contract.serde import Serde
from hub.deadline import Deadline
from hub.kafka import clients
from hub.kafka.clients import KafkaAccess
from hub.kafka.local import free_port
from hub.settings import IngestSettings
from hub.topics import Topics

CODES = ("1315", "1380", "1381", "1382", "1383", "1384")
TOKENS = {code: f"bench-token-{code}" for code in CODES}
"""One throwaway token per municipality (source unit ``kommun-<code>``): a municipality posts only its own events."""


def event_doc(i: int) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "envelope": {
            "event_id": str(uuid.uuid4()), "event_type": "kommun.youth_activity", "schema_version": 2,
            "source_agency": "kommun", "source_unit": "fritid", "municipality_code": CODES[i % len(CODES)],
            "area": None, "occurred_at": now, "recorded_at": now, "subject": None, "data_class": "aggregated",
        },
        "payload": {
            "activity_id": f"a-{i}", "activity_kind": "drop_in", "participants": 20, "participants_13_17": 12,
            "participants_18_24": 8, "leader_hours": 3.0, "participants_girls": 9,
        },
    }  # fmt: skip


def headers(code: str, ndjson: bool = False) -> dict[str, str]:
    """The request headers of municipality ``code``'s system: its own token."""
    return {"Authorization": f"Bearer {TOKENS[code]}",
            "Content-Type": "application/x-ndjson" if ndjson else "application/json"}  # fmt: skip


def code_of(i: int) -> str:
    return CODES[i % len(CODES)]


async def single_mode(session: aiohttp.ClientSession, url: str, n: int, concurrency: int) -> float:
    bodies = [(code_of(i), json.dumps(event_doc(i))) for i in range(n)]
    queue = iter(bodies)

    async def worker() -> int:
        done = 0
        for code, body in queue:
            async with session.post(url, data=body, headers=headers(code)) as r:
                assert r.status == 202, await r.text()
                done += 1
        return done

    start = time.perf_counter()
    total = sum(await asyncio.gather(*(worker() for _ in range(concurrency))))
    return total / (time.perf_counter() - start)


async def batch_mode(session: aiohttp.ClientSession, url: str, n: int, batch: int, concurrency: int) -> float:
    by_code: dict[str, list[str]] = {}
    for i in range(n):
        by_code.setdefault(code_of(i), []).append(json.dumps(event_doc(i)))
    # Each batch from one municipality (its own token), the municipalities' batches interleaved.
    chunks = [[(code, "\n".join(docs[i : i + batch]) + "\n") for i in range(0, len(docs), batch)]
              for code, docs in by_code.items()]  # fmt: skip
    bodies = iter([c for group in itertools.zip_longest(*chunks) for c in group if c is not None])

    async def worker() -> int:
        done = 0
        for code, body in bodies:
            async with session.post(url, data=body, headers=headers(code, ndjson=True)) as r:
                out = await r.json()
                assert r.status == 202, out
                assert not out["rejected"], out
                done += len(out["accepted"])
        return done

    start = time.perf_counter()
    total = sum(await asyncio.gather(*(worker() for _ in range(concurrency))))
    return total / (time.perf_counter() - start)


async def latency_mode(
    session: aiohttp.ClientSession, url: str, kafka: KafkaAccess, topics: list[str], rate: float, duration: float
) -> tuple[float, float, int]:
    consumer = clients.consumer(kafka, fetch_max_wait_ms=5)
    await consumer.start()
    serde = Serde()
    sent_at: dict[str, float] = {}
    seen_at: dict[str, float] = {}
    try:
        tps = []
        for topic in topics:
            parts = consumer.partitions_for_topic(topic) or set()
            if not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic) or set()
            tps += [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)

        async def read() -> None:
            while True:
                for messages in (await consumer.getmany(timeout_ms=50)).values():
                    now = time.perf_counter()
                    for m in messages:
                        _, record = serde.decode_record(m.value)
                        seen_at.setdefault(str(record["envelope"]["event_id"]), now)

        reader = asyncio.create_task(read())
        n = int(rate * duration)
        start = time.perf_counter()
        tasks = []

        async def post_one(code: str, body: str, eid: str) -> None:
            sent_at[eid] = time.perf_counter()
            async with session.post(url, data=body, headers=headers(code)) as r:
                assert r.status == 202, await r.text()

        for i in range(n):
            doc = event_doc(i)
            eid = doc["envelope"]["event_id"]
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post_one(code_of(i), json.dumps(doc), eid)))
        await asyncio.gather(*tasks)
        deadline = time.perf_counter() + 10
        while len(sent_at.keys() & seen_at.keys()) < n and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        reader.cancel()
    finally:
        await consumer.stop()
    lat = sorted((seen_at[e] - sent_at[e]) * 1000 for e in sent_at.keys() & seen_at.keys())
    if not lat:
        return float("nan"), float("nan"), 0
    return lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))], len(lat)


async def run(bootstrap: str, state_dir: Path, *, events: int = 5000, batch: int = 500, concurrency: int = 32,
              rate: float = 500.0, duration: float = 10.0) -> dict[str, float]:  # fmt: skip
    """One run of every mode against a fresh in-process gateway on its own topic namespace."""
    ns = f"bench-{uuid.uuid4().hex[:6]}."
    ingest = IngestSettings(tokens={f"kommun-{code}": [hash_token(t)] for code, t in TOKENS.items()},
                            max_in_flight=1_000_000)  # fmt: skip
    settings = bench_settings(bootstrap, ns, state_dir).model_copy(update={"ingest": ingest})
    admin = await provision(settings)
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/v1/events"
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
            deadline = Deadline(60, "the gateway to connect to Kafka")
            while True:  # wait until the producer is connected (503 before)
                async with session.post(url, data=json.dumps(event_doc(0)), headers=headers(code_of(0))) as r:
                    if r.status == 202:
                        break
                deadline.check()
                await asyncio.sleep(0.2)
            single = await single_mode(session, url, events, concurrency)
            batched = await batch_mode(session, url, events, batch, 4)
            topics = [Topics(ns).agency("kommun", code) for code in CODES]
            p50, p99, seen = await latency_mode(session, url, admin, topics, rate, duration)
    finally:
        await runner.cleanup()
    return {"single_eps": single, "batch_eps": batched, "p50_ms": p50, "p99_ms": p99, "latency_events": seen}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000, help="events per throughput mode and run")
    parser.add_argument("--batch", type=int, default=500, help="events per NDJSON request")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32, help="clients in single-event mode")
    parser.add_argument("--rate", type=float, default=500.0, help="offered events/s in the latency mode")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of the latency mode")
    parser.add_argument("--bootstrap", default=os.environ.get("HUB_KAFKA_BOOTSTRAP"))
    args = parser.parse_args()
    results: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp, \
            standalone_broker(args.bootstrap, Path(tmp)) as bootstrap:  # fmt: skip
        for i in range(args.runs):
            r = asyncio.run(run(bootstrap, Path(tmp), events=args.events, batch=args.batch,
                                concurrency=args.concurrency, rate=args.rate, duration=args.duration))  # fmt: skip
            results.append(r)
            print(f"run {i + 1}: single {r['single_eps']:,.0f}/s  batch {r['batch_eps']:,.0f}/s  latency p50 "
                  f"{r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms ({r['latency_events']:.0f} events)", file=sys.stderr)
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print()
    print(f"ingest gateway, {args.events} events per mode, median of {args.runs} runs, acks=all, Kafka {bootstrap}")
    print("| mode | result |")
    print("|---|---|")
    print(f"| single event per request ({args.concurrency} concurrent clients) | {med['single_eps']:,.0f} events/s |")
    print(f"| NDJSON batches of {args.batch} (4 concurrent clients) | {med['batch_eps']:,.0f} events/s |")
    print(f"| latency request → readable on topic at {args.rate:g} events/s for {args.duration:g} s | "
          f"p50 {med['p50_ms']:.1f} ms, p99 {med['p99_ms']:.1f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
