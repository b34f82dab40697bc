"""End-to-end benchmark: agency → ingest gateway → Kafka → worker → receiver topic, at a steady offered rate.

Per run, in a fresh topic namespace on one broker (``--bootstrap``, else ``HUB_KAFKA_BOOTSTRAP``, else a
LocalBroker in a temporary folder):

1. ``hub worker`` and ``hub ingest`` start as child processes (each source unit — the police, the prison
   service, every municipality — with its own bearer token, configured hashed through ``HUB_INGEST__TOKENS``,
   as ``hub demo`` does) and are awaited on ``/ready``;
2. realistic traffic from the simulator (``connectors.simulator``: police incidents, minors' notices,
   consents, releases, youth activities, ...) is offered for ``--duration`` s at ``--rate`` events/s: every
   ``--tick`` s the events due so far are posted as one NDJSON request per source unit, like an agency system
   that sends what it has;
3. a consumer reads every ``deliver.<receiver>.<kommunkod>`` topic; for each ``hub.delivery`` its latency
   is the time from posting its event to reading the delivery (an event delivered to three receivers
   counts three times). Aggregates carry no event id and are not counted;
4. the worker's ``hub_events_received_total`` (``/metrics``) shows how many events it had read when the
   offering ended: the rate it achieved while offered, and its backlog (events acknowledged by the gateway
   and not yet read). After the offering the run waits for the worker to read every accepted event and
   for deliveries to stop (``--drain`` s at most) and reports how long that took.

If the worker cannot keep up with the offered rate, latency grows with the backlog during the run; the
figures say so (rate achieved, backlog, drain time) instead of hiding it. ``run()`` is one run, returning
the figures as a dict (``python -m bench`` calls it); peak RSS of the worker and the gateway is sampled.

    .venv/bin/python bench/bench_e2e.py --rate 1000 --duration 20 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.rss import PeakRss
from bench.support import (
    bench_settings,
    hub_env,
    percentile,
    provision,
    spawn_hub,
    standalone_broker,
    stop,
    wait_http_ok,
)
from connectors.gateway.auth import hash_token
from connectors.simulator.generate import Simulator, replay_start
from hub.contract.envelope import Event
from hub.contract.serde import Serde
from hub.deadline import Deadline
from hub.identity import PER_MUNICIPALITY, SourceUnit, source_units
from hub.kafka import clients
from hub.kafka.local import free_port
from hub.rules.receivers import RECEIVERS
from hub.topics import Topics

DELIVERY = "se.samverkan.hub.Delivery"
Prepared = list[tuple[str, str, str]]  # (source unit, event id, JSON document)


def unit_of(event: Event) -> str:
    """The source unit that posts ``event``: its agency, or ``kommun-<code>`` for a municipality's event."""
    agency = event.envelope.source_agency.value
    return SourceUnit(agency, event.envelope.municipality_code if agency in PER_MUNICIPALITY else None).name


def prepare_events(n: int, seed: int = 8) -> Prepared:
    """``n`` simulated events as JSON, replaying the recent past (simulated time ends about now)."""
    start = replay_start(datetime.now(UTC), n, 1.0)
    return [(unit_of(e), str(e.envelope.event_id), e.model_dump_json())
            for e in Simulator(seed, start).events(n)]  # fmt: skip


async def events_received(http: aiohttp.ClientSession, port: int) -> float:
    """The worker's ``hub_events_received_total`` summed over topics (NaN when /metrics does not answer)."""
    try:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
            text = await r.text()
    except (aiohttp.ClientError, TimeoutError):
        return float("nan")
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "hub_events_received_total")  # fmt: skip


class Offer:
    """Posts prepared events through the gateway at a steady rate and keeps the count of every outcome."""

    def __init__(self, url: str, tokens: dict[str, str], events: Prepared) -> None:
        self.url = url
        self.tokens = tokens
        self.events = events
        self.sent_at: dict[str, float] = {}
        self.posted = 0
        self.accepted = 0
        self.rejected = 0
        self.failed_requests = 0
        self.statuses: dict[int, int] = defaultdict(int)

    async def _post(self, http: aiohttp.ClientSession, unit: str, chunk: list[tuple[str, str]]) -> None:
        headers = {"Authorization": f"Bearer {self.tokens[unit]}", "Content-Type": "application/x-ndjson"}
        at = time.perf_counter()
        for event_id, _ in chunk:
            self.sent_at[event_id] = at
        try:
            async with http.post(self.url, data="\n".join(doc for _, doc in chunk).encode(), headers=headers) as r:
                self.statuses[r.status] += 1
                body: dict[str, Any] = await r.json() if r.content_type == "application/json" else {}
        except (aiohttp.ClientError, TimeoutError):
            self.failed_requests += 1
            return
        self.accepted += len(body.get("accepted", []))
        self.rejected += len(body.get("rejected", []))

    async def run(self, http: aiohttp.ClientSession, rate: float, tick: float) -> float:
        """Offer every event at ``rate`` per second; return the seconds the offering took."""
        start = time.perf_counter()
        posts: list[asyncio.Task[None]] = []
        i, n = 0, len(self.events)
        while i < n:
            due = min(n, int((time.perf_counter() - start) * rate) + 1)
            if due > i:
                by_unit: dict[str, list[tuple[str, str]]] = defaultdict(list)
                for unit, event_id, doc in self.events[i:due]:
                    by_unit[unit].append((event_id, doc))
                posts += [asyncio.create_task(self._post(http, u, c)) for u, c in by_unit.items()]
                self.posted += due - i
                i = due
            if i < n:
                await asyncio.sleep(tick)  # pacing the offer, not waiting for anything
        window = time.perf_counter() - start
        await asyncio.gather(*posts)
        return window


async def read_deliveries(consumer: AIOKafkaConsumer, arrivals: list[tuple[str, float]]) -> None:
    """Append ``(event id, time read)`` for every delivery on the subscribed topics, until cancelled."""
    serde = Serde()
    while True:
        for messages in (await consumer.getmany(timeout_ms=100)).values():
            now = time.perf_counter()
            for m in messages:
                name, record = serde.decode_record(m.value)
                if name == DELIVERY:
                    arrivals.append((str(record["event_id"]), now))


async def run(bootstrap: str, work: Path, *, rate: float = 1000.0, duration: float = 20.0, tick: float = 0.02,
              drain_s: float = 120.0, events: Prepared | None = None) -> dict[str, float]:  # fmt: skip
    """One run in a fresh namespace; ``events`` (``prepare_events``) may be given to reuse them."""
    n = int(rate * duration)
    events = events[:n] if events is not None else prepare_events(n)
    ns = f"benche2e{uuid.uuid4().hex[:6]}."
    state = work / ns.rstrip(".")
    state.mkdir(parents=True)
    settings = bench_settings(bootstrap, ns, state)
    topics = Topics(ns)
    kafka = await provision(settings)
    tokens = {u.name: secrets.token_urlsafe(24) for u in source_units(settings.municipality_codes)}
    worker_port, ingest_port = free_port(), free_port()
    env = hub_env(bootstrap, ns, state, HUB_WORKER__WEB_PORT=str(worker_port), HUB_INGEST__PORT=str(ingest_port),
                  HUB_INGEST__TOKENS=json.dumps({a: [hash_token(t)] for a, t in tokens.items()}))  # fmt: skip
    worker = spawn_hub(["worker", "-l", "warn"], env, state / "worker.log")
    gateway = spawn_hub(["ingest"], env, state / "ingest.log")
    rss = PeakRss().start()
    rss.watch("worker", worker.pid)
    rss.watch("gateway", gateway.pid)
    codes = [*settings.municipality_codes, settings.county_code]
    consumer = clients.consumer(kafka, *[topics.deliver(r, c) for r in RECEIVERS for c in codes],
                                auto_offset_reset="earliest", fetch_max_wait_ms=20)  # fmt: skip
    arrivals: list[tuple[str, float]] = []
    reader: asyncio.Task[None] | None = None
    try:
        await asyncio.gather(
            wait_http_ok(f"http://127.0.0.1:{worker_port}/ready", worker, state / "worker.log"),
            wait_http_ok(f"http://127.0.0.1:{ingest_port}/ready", gateway, state / "ingest.log"),
        )
        await consumer.start()
        reader = asyncio.create_task(read_deliveries(consumer, arrivals))
        offer = Offer(f"http://127.0.0.1:{ingest_port}/v1/events", tokens, events)
        connector = aiohttp.TCPConnector(limit=100)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
            received_start = await events_received(http, worker_port)
            window = await offer.run(http, rate, tick)
            received_end = await events_received(http, worker_port)
            accepted_end = offer.accepted
            t_end = time.perf_counter()
            # Drain: until the worker has read every accepted event and deliveries stopped for 2 s.
            deadline = Deadline(drain_s, "the worker to read every accepted event")
            drained_at: float | None = None
            while not deadline.expired:
                if drained_at is None and await events_received(http, worker_port) >= offer.accepted:
                    drained_at = time.perf_counter()
                last_arrival = arrivals[-1][1] if arrivals else t_end
                if drained_at is not None and time.perf_counter() - max(drained_at, last_arrival) >= 2.0:
                    break
                await asyncio.sleep(0.25)
    finally:
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        await consumer.stop()
        rss.stop()
        stop(gateway)
        stop(worker)
    latencies = [(t - offer.sent_at[eid]) * 1000 for eid, t in arrivals if eid in offer.sent_at]
    return {
        "offered_eps": offer.posted / window,
        "accepted_eps": accepted_end / window,
        "rejected": offer.rejected,
        "worker_eps": (received_end - received_start) / window,
        "backlog_end": accepted_end - received_end,
        "drain_s": (drained_at - t_end) if drained_at is not None else float("nan"),
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "deliveries": len(latencies),
        "rss_worker_mib": rss.peak_mib("worker"),
        "rss_gateway_mib": rss.peak_mib("gateway"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--rate", type=float, default=1000.0, help="offered events/s")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of offering")
    ap.add_argument("--tick", type=float, default=0.02, help="seconds between posts")
    ap.add_argument("--drain", type=float, default=120.0, help="most seconds to wait for the backlog afterwards")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bootstrap", default=os.environ.get("HUB_KAFKA_BOOTSTRAP"))
    args = ap.parse_args()
    events = prepare_events(int(args.rate * args.duration))
    results: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp, \
            standalone_broker(args.bootstrap, Path(tmp)) as bootstrap:  # fmt: skip
        for i in range(args.runs):
            r = asyncio.run(run(bootstrap, Path(tmp), rate=args.rate, duration=args.duration, tick=args.tick,
                                drain_s=args.drain, events=events))  # fmt: skip
            results.append(r)
            print(describe(i + 1, r), flush=True)
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(describe(0, med))
    return 0


def describe(run_no: int, r: dict[str, float]) -> str:
    head = f"run {run_no}" if run_no else "median"
    return (f"{head}: offered {r['offered_eps']:,.0f} ev/s, accepted {r['accepted_eps']:,.0f} ev/s "
            f"({r['rejected']:.0f} rejected), worker read {r['worker_eps']:,.0f} ev/s, backlog at end "
            f"{r['backlog_end']:,.0f}, drained {r['drain_s']:.1f} s later; ingest→receiver p50 {r['p50_ms']:,.0f} ms "
            f"p99 {r['p99_ms']:,.0f} ms over {r['deliveries']:.0f} deliveries; peak RSS worker "
            f"{r['rss_worker_mib']:.0f} MiB, gateway {r['rss_gateway_mib']:.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
