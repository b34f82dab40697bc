"""Benchmark of the hub worker (``hub worker``) against a raw Kafka passthrough on the same backlog.

For every run, in a fresh topic namespace on one broker (``--bootstrap``, else ``HUB_KAFKA_BOOTSTRAP``,
else a LocalBroker in a temporary folder):

1. ``--events`` realistic mixed events (``tests.factories.mixed_events``) are pre-encoded and produced to
   the agency topics (one per source unit: police, prison service, each municipality) before anything reads
   them: both sides below read a full backlog;
2. (A) passthrough: one aiokafka consumer (own group, as ``admin``) reads the agency topics and produces every message
   unchanged to one output topic (idempotent producer, acks=all, sends not awaited one by one, flush at
   the end). Timed from the first message received to the last one flushed (``steady``) and from the
   consumer's start (``incl. start``);
3. (B) the worker: ``python -m hub.cli worker`` as a subprocess. ``hub.audit``'s end offsets are polled
   from the process start; the run is done when they stopped growing for ``--quiet`` s and
   ``hub.reconcile.reconcile`` reports every source event accounted for (``lost == 0``). Timed from
   ``/ready`` (or the first audit record, if that came earlier) to the last audit growth seen (``steady``)
   and from the process start (``incl. start``). p50/p99 per-message processing time are estimated from
   the worker's ``hub_processing_seconds`` histogram (``/metrics``).

Figures are the median of ``--runs`` runs. With ``--profile`` one extra run (not counted) records the
worker with ``py-spy record --format raw`` and prints where the time goes. ``one_run()`` is one run,
returning the figures as a dict (``python -m bench`` calls it); the worker's peak RSS is sampled too.

    .venv/bin/python bench/bench_worker.py --events 20000 --runs 3 --profile
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import IO

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.rss import PeakRss, children, cpu_seconds
from bench.support import admin_access, bench_settings, hub_env, provision, standalone_broker
from hub.contract.serde import Serde
from hub.identity import PER_MUNICIPALITY, SourceUnit
from hub.kafka import clients
from hub.kafka.clients import KafkaAccess
from hub.kafka.local import free_port
from hub.pseudonym import Pseudonymiser
from hub.reconcile import reconcile
from hub.settings import HubSettings
from hub.topics import Topics
from tests.factories import mixed_events

REPO = Path(__file__).resolve().parent.parent
Encoded = list[tuple[SourceUnit, bytes, bytes]]  # (source unit, key, value)


def encode_events(n: int) -> Encoded:
    serde = Serde()
    pseudonyms = Pseudonymiser(HubSettings())
    out: Encoded = []
    for e in mixed_events(n):
        env = e.envelope
        key = pseudonyms.person_key(env.subject.personnummer) if env.subject else env.municipality_code
        agency = env.source_agency.value
        unit = SourceUnit(agency, env.municipality_code if agency in PER_MUNICIPALITY else None)
        out.append((unit, key.encode(), serde.encode(e)))
    return out


# -- setup ---------------------------------------------------------------------------------------------


async def create_namespace(settings: HubSettings, output_topic: str) -> KafkaAccess:
    """The hub's topics and ACLs, and the passthrough's output topic; the admin access that made them."""
    kafka = await provision(settings)
    admin = clients.admin(kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(output_topic, settings.topic_partitions, 1)])
    finally:
        await admin.close()
    return kafka


async def produce_backlog(kafka: KafkaAccess, topics: Topics, events: Encoded) -> None:
    producer = clients.producer(kafka, enable_idempotence=True, acks="all", linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        for unit, key, value in events:
            await producer.send(topics.unit(unit), value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


# -- (A) passthrough -----------------------------------------------------------------------------------


async def passthrough(kafka: KafkaAccess, topics: Topics, codes: list[str], output_topic: str,
                      n: int) -> tuple[float, float]:  # fmt: skip
    """(events/s from the first message, events/s including the consumer's start)."""
    t_start = time.perf_counter()
    consumer = clients.consumer(kafka, *topics.sources(codes), group_id=f"{topics.namespace}passthrough",
                                auto_offset_reset="earliest", enable_auto_commit=True)  # fmt: skip
    producer = clients.producer(kafka, enable_idempotence=True, acks="all", linger_ms=5)
    await asyncio.gather(consumer.start(), producer.start())
    t_first: float | None = None
    seen = 0
    try:
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for messages in batch.values():
                if t_first is None and messages:
                    t_first = time.perf_counter()
                for m in messages:
                    await producer.send(output_topic, m.value, key=m.key)  # enqueues; the ack is not awaited
                seen += len(messages)
        await producer.flush()
        t_end = time.perf_counter()
    finally:
        await asyncio.gather(consumer.stop(), producer.stop())
    assert t_first is not None
    return n / (t_end - t_first), n / (t_end - t_start)


# -- (B) the worker ------------------------------------------------------------------------------------


BUCKET = re.compile(r'^hub_processing_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)$', re.M)


def histogram_quantiles(metrics_text: str, qs: tuple[float, ...]) -> list[float]:
    """Quantiles (seconds) from cumulative Prometheus buckets, interpolated linearly within a bucket."""
    buckets = sorted((float("inf") if le == "+Inf" else float(le), float(c)) for le, c in BUCKET.findall(metrics_text))
    total = buckets[-1][1] if buckets else 0.0
    out = []
    for q in qs:
        target = q * total
        lo_edge, lo_count = 0.0, 0.0
        value = float("nan")
        for edge, count in buckets:
            if count >= target and total > 0:
                if edge == float("inf"):
                    value = lo_edge
                else:
                    frac = (target - lo_count) / (count - lo_count) if count > lo_count else 1.0
                    value = lo_edge + frac * (edge - lo_edge)
                break
            lo_edge, lo_count = edge, count
        out.append(value)
    return out


PHASE = re.compile(r'^hub_batch_phase_seconds_sum\{phase="([a-z_]+)"\} ([0-9.e+]+)$', re.M)
BATCHES = re.compile(r"^hub_batch_messages_(count|sum) ([0-9.e+]+)$", re.M)


def batch_phases(metrics_text: str, n: int) -> dict[str, float]:
    """Wall time per event in each phase of the worker's batches (µs: ``process_us``, ``commit_us``,
    ``after_commit_us``) and the mean messages per batch (``batch_mean``), from its /metrics."""
    out = {f"{phase}_us": float(total) / n * 1e6 for phase, total in PHASE.findall(metrics_text)}
    counts = dict(BATCHES.findall(metrics_text))
    if float(counts.get("count", 0)):
        out["batch_mean"] = float(counts["sum"]) / float(counts["count"])
    return out


def launch(cmd: list[str], env: dict[str, str], stdout: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


async def audit_total(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> int:
    return sum((await consumer.end_offsets(tps)).values())


async def run_worker(bootstrap: str, settings: HubSettings, n: int, state_dir: Path, quiet_s: float,
                     profile_out: Path | None = None, processes: int = 1) -> dict[str, float]:  # fmt: skip
    """Steady events/s, events/s incl. start, p50/p99 ms, start-to-ready s, audit records before ready,
    the worker's CPU µs per event (its processes' CPU time from the first output to the last / events) and
    peak RSS (MiB; of the first process when there are several). ``processes``: ``hub worker --processes``."""
    namespace = settings.topic_namespace
    topics = Topics(namespace)
    port = free_port()
    log = (state_dir / "worker.log").open("ab")
    t_launch = time.perf_counter()
    proc = launch([sys.executable, "-m", "hub.cli", "worker", "-l", "warn", "--processes", str(processes)],
                  env=hub_env(bootstrap, namespace, state_dir, HUB_WORKER__WEB_PORT=str(port),
                              HUB_WORKER__INSTANCE_ID=f"{namespace}w"), stdout=log)  # fmt: skip
    rss = PeakRss().start()
    rss.watch("worker", proc.pid)
    cpu_at_first = cpu_at_last = 0.0
    spy: subprocess.Popen[bytes] | None = None
    if profile_out is not None:
        spy = launch([str(Path(sys.executable).with_name("py-spy")), "record", "--format", "raw", "--rate", "200",
                      "-o", str(profile_out), "--pid", str(proc.pid)], env=dict(os.environ),
                     stdout=(state_dir / "py-spy.log").open("ab"))  # fmt: skip
    kafka = admin_access(bootstrap)
    consumer = clients.consumer(kafka)
    await consumer.start()
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
    try:
        tps = [TopicPartition(topics.audit, p) for p in range(settings.topic_partitions)]
        base = await audit_total(consumer, tps)
        t_ready: float | None = None
        before_ready = 0
        t_first_growth: float | None = None
        t_last_growth = t_launch
        last = base
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}; see {state_dir / 'worker.log'}")
            now = time.perf_counter()
            total = await audit_total(consumer, tps)
            if total > last:
                if t_first_growth is None:
                    cpu_at_first = cpu_seconds(proc.pid)
                    for child in children(proc.pid):
                        rss.watch("worker", child)
                t_last_growth = now
                t_first_growth = t_first_growth or now
                last = total
                cpu_at_last = cpu_seconds(proc.pid)
            if t_ready is None:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/ready") as r:
                        if r.status == 200:
                            t_ready = time.perf_counter()
                            before_ready = last - base
                except (aiohttp.ClientError, TimeoutError):
                    pass
            elif last > base and now - t_last_growth >= quiet_s:
                r = await reconcile(kafka, settings)
                if r.source_messages == n and r.lost == 0:
                    break
                print(f"  reconcile: {r.accounted}/{r.source_messages} accounted, {r.lost} not yet", flush=True)
                continue
            await asyncio.sleep(0.05)
        else:
            raise TimeoutError("the worker did not account for every event in 900 s")
        async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            metrics_text = await resp.text()
    finally:
        await http.close()
        await consumer.stop()
        if spy is not None and spy.poll() is None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
            try:
                spy.wait(timeout=60)
            except subprocess.TimeoutExpired:
                spy.kill()
        rss.stop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
    assert t_ready is not None
    t0 = min(t_ready, t_first_growth or t_ready)
    cpu_us = (cpu_at_last - cpu_at_first) / n * 1e6
    p50, p99 = histogram_quantiles(metrics_text, (0.5, 0.99))
    return {
        "worker_eps": n / (t_last_growth - t0), "worker_eps_incl": n / (t_last_growth - t_launch),
        "p50_ms": p50 * 1000, "p99_ms": p99 * 1000, "startup_s": t_ready - t_launch, "before_ready": before_ready,
        "rss_mib": rss.peak_mib("worker"), "cpu_us": cpu_us, **batch_phases(metrics_text, n),
    }  # fmt: skip


# -- one run -------------------------------------------------------------------------------------------


async def one_run(bootstrap: str, events: Encoded, quiet_s: float, work: Path,
                  profile_out: Path | None = None, processes: tuple[int, ...] = (1,)) -> dict[str, float]:  # fmt: skip
    """One run: the passthrough, then the worker with each of ``processes`` (``hub worker --processes``), each
    in a fresh namespace on the same backlog. Figures of the first are unprefixed, the others ``p<N>.``."""
    out: dict[str, float] = {}
    n = len(events)
    for i, count in enumerate(processes):
        namespace = f"bench{uuid.uuid4().hex[:6]}."
        state_dir = work / namespace.rstrip(".")
        state_dir.mkdir(parents=True)
        settings = bench_settings(bootstrap, namespace, state_dir)
        topics = Topics(namespace)
        output_topic = f"{namespace}bench.passthrough"
        kafka = await create_namespace(settings, output_topic)
        await produce_backlog(kafka, topics, events)
        if i == 0:
            pt, pt_incl = await passthrough(kafka, topics, settings.municipality_codes, output_topic, n)
            out.update(passthrough_eps=pt, passthrough_eps_incl=pt_incl)
        result = await run_worker(bootstrap, settings, n, state_dir, quiet_s, profile_out if i == 0 else None, count)
        result["ratio"] = result["worker_eps"] / out["passthrough_eps"]
        prefix = "" if i == 0 else f"p{count}."
        out.update({f"{prefix}{k}": v for k, v in result.items()})
    return out


# -- the profile ---------------------------------------------------------------------------------------

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_parts(frame: str) -> tuple[str, str]:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip(), "?"
    return m["func"], m["file"]


def module_of(path: str) -> str:
    p = path.replace("\\", "/")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in p:
            rest = p.split(marker, 1)[1]
            parts = rest.split("/")
            if marker == "lib/python3.11/":
                return "stdlib:" + parts[0].removesuffix(".py")
            if parts[0] in ("hub", "connectors") and len(parts) > 1:
                return "/".join(parts[:2]).removesuffix(".py")
            return parts[0].removesuffix(".py")
    return p


def summarise_profile(path: Path, top: int = 10) -> None:
    self_fn: Counter[str] = Counter()
    self_mod: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        func, file = frame_parts(frames[-1])
        self_fn[f"{func} ({module_of(file)})"] += count
        self_mod[module_of(file)] += count
        for name in {f"{fp[0]} ({module_of(fp[1])})" for fp in map(frame_parts, frames)}:
            incl_fn[name] += count
    if not total:
        print(f"(no samples in {path})")
        return
    print(f"\nProfile of the worker ({total} samples, {path}):")
    print(f"\n  Top {top} functions by own time (self):")
    for name, c in self_fn.most_common(top):
        print(f"  {100 * c / total:6.1f}%  {name}")
    print("\n  Own time by module:")
    for name, c in self_mod.most_common(15):
        print(f"  {100 * c / total:6.1f}%  {name}")
    print("\n  Inclusive time (function and what it calls), hub code and selected library calls:")
    shown = 0
    for name, c in incl_fn.most_common():
        if "hub/" in name or "serde" in name or "pydantic" in name or "send" in name or "encode" in name:
            print(f"  {100 * c / total:6.1f}%  {name}")
            shown += 1
            if shown >= 25:
                break


# -- main ----------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bootstrap", default=os.environ.get("HUB_KAFKA_BOOTSTRAP"))
    ap.add_argument("--quiet", type=float, default=2.0, help="seconds without audit growth before reconciling")
    ap.add_argument("--profile", action="store_true", help="one extra, uncounted run under py-spy")
    ap.add_argument("--profile-out", type=Path, default=Path(tempfile.gettempdir()) / "worker_profile.txt")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp, \
            standalone_broker(args.bootstrap, Path(tmp)) as bootstrap:  # fmt: skip
        work = Path(tmp)
        t = time.perf_counter()
        events = encode_events(args.events)
        print(f"encoded {len(events)} events in {time.perf_counter() - t:.1f} s; broker {bootstrap}", flush=True)
        results: list[dict[str, float]] = []
        for i in range(args.runs):
            r = asyncio.run(one_run(bootstrap, events, args.quiet, work))
            results.append(r)
            print(f"run {i + 1}: passthrough {r['passthrough_eps']:,.0f} ev/s ({r['passthrough_eps_incl']:,.0f} incl. "
                  f"start), worker {r['worker_eps']:,.0f} ev/s ({r['worker_eps_incl']:,.0f} incl. start, ready after "
                  f"{r['startup_s']:.1f} s, {r['before_ready']:.0f} audit records before ready), "
                  f"p50 {r['p50_ms']:.3f} ms p99 {r['p99_ms']:.3f} ms, peak RSS {r['rss_mib']:.0f} MiB",
                  flush=True)  # fmt: skip
        print_table(args.events, results)
        if args.profile:
            args.profile_out.unlink(missing_ok=True)
            r = asyncio.run(one_run(bootstrap, events, args.quiet, work, args.profile_out))
            print(f"\nprofiled run (not counted): worker {r['worker_eps']:,.0f} ev/s under py-spy")
            summarise_profile(args.profile_out)


def print_table(n: int, results: list[dict[str, float]]) -> None:
    def med(f: str) -> float:
        return statistics.median(r[f] for r in results)

    pt, w = med("passthrough_eps"), med("worker_eps")
    rows = [
        ("events/s (steady)", f"{pt:,.0f}", f"{w:,.0f}"),
        ("events/s (incl. start)", f"{med('passthrough_eps_incl'):,.0f}", f"{med('worker_eps_incl'):,.0f}"),
        ("worker / passthrough", "", f"{med('ratio'):.3f}x"),
        ("per-message p50 (ms)", "", f"{med('p50_ms'):.3f}"),
        ("per-message p99 (ms)", "", f"{med('p99_ms'):.3f}"),
        ("start to /ready (s)", "", f"{med('startup_s'):.1f}"),
        ("peak RSS (MiB)", "", f"{med('rss_mib'):.0f}"),
    ]
    print(f"\nWorker throughput, {n} mixed events, median of {len(results)} run(s):\n")
    print(f"  {'':<24} {'passthrough':>14} {'hub worker':>14}")
    for label, a, b in rows:
        print(f"  {label:<24} {a:>14} {b:>14}")
    print("\n  per run (passthrough / worker ev/s): "
          + ", ".join(f"{r['passthrough_eps']:,.0f} / {r['worker_eps']:,.0f}" for r in results))  # fmt: skip


if __name__ == "__main__":
    main()
