"""Soak benchmark: does the worker's memory stay bounded under steady traffic, or grow with every event?

One run, in a fresh topic namespace on one broker (``--bootstrap``, else ``HUB_KAFKA_BOOTSTRAP``, else a
LocalBroker in a temporary folder):

1. ``hub worker`` (one process, ``HUB_WORKER__PROCESSES=1``; its state directory ``HUB_STATE_DIR`` is a
   folder of its own) starts and is awaited on ``/ready``;
2. ``hub simulate --rate R --duration S --clock wall`` runs beside it as an operator would run it: simulated
   traffic of every agency (police incidents, minors' notices, consents, releases, ...) published through the
   connector base onto the agency topics, as the simulator's own principal. On the wall clock (every kind
   scaled up to the rate): simulated time passes as real time does, so the lägesbild's calendar-bound
   state (counts per day and week) grows as it would in service, not with years replayed in minutes. The
   agency topics' end offsets (polled every second) say how many events it published and at what rate: the
   run checks that the load really reached the rate offered;
3. every ``--sample`` s (15 s; 5 s with ``--smoke``) the worker's resident memory (``VmRSS`` of the process
   that does the work: the worker, or its child if it supervises one) is sampled together with the number
   of events it has processed (``hub_events_received_total`` from its ``/metrics``). Its peak (``VmHWM``) is
   watched throughout. After the offer the run waits for the worker to process every published event (a
   last sample);
4. figures: RSS at the start (ready, before the load), after the warm-up (the first sample after 20 % of
   the duration or 2 min, whichever is less) and at the end; the slope of RSS over events processed after
   the warm-up, by least squares over the samples, in KB (KiB) per 1,000 events; the peak RSS;
5. disk: ``du`` of the worker's state directory, and the size of its state changelog topics on the broker
   (``hub.dedup``, ``hub.consent``, ``hub.lagesbild-state``, ``hub.lagesbild-alerts``, namespaced), summed over
   their partitions from the broker's DescribeLogDirs answer (as ``admin``; aiokafka's admin client has no
   call for it, so the request is spelled out here). A compacted topic's active segment is never compacted,
   so over a soak of minutes this is what the worker wrote, not what compaction would keep;
6. recovery: the worker is stopped (SIGTERM, waited for) and started again on the same state directory
   and consumer group; the time from that spawn until ``/ready`` answers 200 is the restart's recovery time
   (and its RSS then: what reloading the state costs in memory).

Targets (issue "State that stays bounded"): slope ≤ 5 KB per 1,000 events after the warm-up; peak RSS of
the worker ≤ 300 MiB throughout.

Not part of ``python -m bench``'s default set (it takes ten minutes): ``python -m bench --only soak``, with
``--soak-minutes M`` (default 10) and ``--soak-rate R`` (events/s, default 400: what one worker process
sustains on the 2-core benchmark machine). ``--smoke``: 45 s at 100 events/s, sampled every 5 s. ``run()``
is one run, returning the figures as a dict (``python -m bench`` calls it).

    .venv/bin/python -m bench --only soak --runs 1
    .venv/bin/python -m bench --only soak --soak-minutes 30 --soak-rate 400 --runs 1
    .venv/bin/python bench/bench_soak.py --minutes 10 --rate 400
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import TopicPartition
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Int16, Int32, Int64, Schema, String

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_e2e import events_received
from bench.report import Figure, Section, load_average
from bench.rss import PeakRss, children, status_kib
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
from hub.deadline import Deadline
from hub.kafka import clients
from hub.kafka.clients import KafkaAccess
from hub.kafka.local import free_port
from hub.topics import Topics

DEFAULT_MINUTES = 10.0
DEFAULT_RATE = 400.0
SAMPLE_S = 15.0
WARMUP_SHARE = 0.2
WARMUP_MAX_S = 120.0
SLOPE_TARGET_KIB = 5.0
RSS_TARGET_MIB = 300.0
KEEPS_UP = 0.95
"""The load must reach this share of the offered rate for the figures to describe that rate."""


# -- pure helpers ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    t: float
    """Seconds since the load started."""
    events: float
    """Events the worker had processed (``hub_events_received_total``)."""
    rss_kib: int
    """``VmRSS`` of the worker process."""


def warmup_s(duration_s: float) -> float:
    """The warm-up: the first 20 % of the duration or 2 min, whichever is less."""
    return min(WARMUP_SHARE * duration_s, WARMUP_MAX_S)


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The least-squares slope of ``ys`` over ``xs`` (NaN with fewer than two distinct ``xs``)."""
    if len(xs) != len(ys):
        raise ValueError("xs and ys differ in length")
    if len(xs) < 2:
        return float("nan")
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return float("nan")
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def after_warmup(samples: Sequence[Sample], warmup: float) -> list[Sample]:
    """The samples taken from the end of the warm-up on."""
    return [s for s in samples if s.t >= warmup]


def kib_per_1000_events(samples: Sequence[Sample]) -> float:
    """RSS growth in KiB per 1,000 events processed, least squares over ``samples``."""
    return 1000 * slope([s.events for s in samples], [float(s.rss_kib) for s in samples])


def disk_usage(path: Path) -> int:
    """Bytes ``path`` occupies on disk, as ``du`` counts them (allocated blocks; each inode once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue  # removed meanwhile (the worker may be compacting its store)
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def worker_process(pid: int) -> int:
    """The process that does the work: the child of a supervising worker, else the worker itself."""
    kids = children(pid)
    return kids[0] if kids else pid


def changelogs(topics: Topics) -> dict[str, str]:
    """Figure name → the worker's state changelog topics."""
    return {"dedup": topics.dedup, "consent": topics.consent, "lagesbild_state": topics.lagesbild_state,
            "lagesbild_alerts": topics.lagesbild_alerts}  # fmt: skip


# -- the size of topics on the broker (DescribeLogDirs) --------------------------------------------------


class DescribeLogDirsResponse_v1(Response):  # type: ignore[misc]  # aiokafka ships no type information
    API_KEY = 35
    API_VERSION = 1
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("results", Array(
            ("error_code", Int16),
            ("log_dir", String("utf-8")),
            ("topics", Array(
                ("name", String("utf-8")),
                ("partitions", Array(
                    ("partition_index", Int32), ("partition_size", Int64), ("offset_lag", Int64),
                    ("is_future_key", Boolean),
                )),
            )),
        )),
    )  # fmt: skip


class DescribeLogDirsRequest_v1(RequestStruct):  # type: ignore[misc]  # aiokafka ships no type information
    API_KEY = 35
    API_VERSION = 1
    RESPONSE_TYPE = DescribeLogDirsResponse_v1
    SCHEMA = Schema(("topics", Array(("topic", String("utf-8")), ("partitions", Array(Int32)))))


class DescribeLogDirsRequest(Request[DescribeLogDirsRequest_v1]):  # type: ignore[misc]  # aiokafka ships no type information
    """Every replica's size in every log directory of a broker (``topics=None``: every topic)."""

    API_KEY = 35

    def __init__(self, topics: list[tuple[str, list[int]]] | None = None) -> None:
        self.topics = topics

    def build(self, request_struct_class: type[DescribeLogDirsRequest_v1]) -> DescribeLogDirsRequest_v1:
        return request_struct_class(self.topics)


def topic_sizes(results: Iterable[Any], names: Iterable[str]) -> dict[str, int]:
    """Bytes per topic of ``names`` in DescribeLogDirs results (``(error, dir, [(topic, [(partition, size,
    lag, future), ...]), ...])``, from one or several brokers): per partition its largest replica (a
    replica of a replicated topic is not counted twice), summed; 0 for a topic the broker does not have."""
    wanted = set(names)
    largest: dict[tuple[str, int], int] = {}
    for error, _dir, topics in results:
        if error:
            continue
        for name, partitions in topics:
            if name in wanted:
                for partition, size, _lag, future in partitions:
                    if not future:
                        largest[(name, partition)] = max(size, largest.get((name, partition), 0))
    return {n: sum(v for (t, _), v in largest.items() if t == n) for n in wanted}


async def log_sizes(kafka: KafkaAccess, names: Sequence[str]) -> dict[str, int]:
    """Bytes of each topic in ``names`` on the cluster's disks (every broker asked)."""
    admin = clients.admin(kafka)
    await admin.start()
    try:
        admin._client.cluster.update_metadata(await admin._get_cluster_metadata())
        results: list[Any] = []
        for broker in admin._client.cluster.brokers():
            response = await admin._client.send(broker.nodeId, DescribeLogDirsRequest(None))
            results += response.results
    finally:
        await admin.close()
    return topic_sizes(results, names)


# -- one run ---------------------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    return status_kib(worker_process(pid)).get("VmRSS", 0)


async def run(bootstrap: str, work: Path, *, minutes: float = DEFAULT_MINUTES, rate: float = DEFAULT_RATE,
              sample_s: float = SAMPLE_S, drain_s: float | None = None) -> dict[str, float]:  # fmt: skip
    """One soak run: ``hub simulate`` at ``rate`` events/s for ``minutes`` against one ``hub worker``; the figures
    (see the module's docstring)."""
    duration = minutes * 60
    warmup = warmup_s(duration)
    drain = drain_s if drain_s is not None else max(60.0, duration / 2)
    ns = f"benchsoak{uuid.uuid4().hex[:6]}."
    run_dir = work / ns.rstrip(".")
    state = run_dir / "state"  # the worker's HUB_STATE_DIR, only its own files (the logs are beside it)
    state.mkdir(parents=True)
    settings = bench_settings(bootstrap, ns, state)
    topics = Topics(ns)
    kafka = await provision(settings)
    port = free_port()
    # The worker's default settings; the traffic on the wall clock (hub simulate --clock wall): replayed, a
    # 30-minute soak at 400/s would be ~22 simulated years, and the lägesbild's counts per day and week grow
    # with the calendar, not with the events.
    env = hub_env(bootstrap, ns, state, HUB_WORKER__WEB_PORT=str(port), HUB_WORKER__INSTANCE_ID=f"{ns}w")
    worker_log, simulate_log = run_dir / "worker.log", run_dir / "simulate.log"
    ready_url = f"http://127.0.0.1:{port}/ready"
    load_start = load_average()
    print(f"  soak: {rate:,.0f} events/s for {duration:g} s (warm-up {warmup:g} s), samples every {sample_s:g} s; "
          f"namespace {ns}; load average {load_start}", file=sys.stderr, flush=True)  # fmt: skip

    t_launch = time.perf_counter()
    worker = spawn_hub(["worker", "-l", "warn"], env, worker_log)
    rss = PeakRss().start()
    rss.watch("worker", worker.pid)
    consumer = clients.consumer(admin_access(bootstrap))
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
    simulate = None
    samples: list[Sample] = []
    try:
        t_ready = await wait_http_ok(ready_url, worker, worker_log)
        await consumer.start()
        sources = [TopicPartition(t, p) for t in topics.sources(settings.municipality_codes)
                   for p in range(settings.topic_partitions)]  # fmt: skip

        async def published() -> int:
            return sum((await consumer.end_offsets(sources)).values())

        base_published = await published()
        base_events = await events_received(http, port)

        def alive() -> None:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with {worker.returncode}:\n{log_tail(worker_log)}")

        async def take(t: float) -> Sample:
            alive()
            rss.watch("worker", worker_process(worker.pid))
            s = Sample(t, await events_received(http, port) - base_events, rss_kib(worker.pid))
            if not math.isnan(s.events):
                samples.append(s)
            return s

        t0 = time.perf_counter()
        first = await take(0.0)
        simulate = spawn_hub(["simulate", "--rate", f"{rate:g}", "--duration", f"{duration:g}", "--clock", "wall"],
                             hub_env(bootstrap, ns, run_dir / "simulator"), simulate_log)  # fmt: skip
        t_first_pub: float | None = None  # the first and the last growth of the agency topics seen
        t_last_pub = t0
        first_pub = last_pub = base_published
        next_sample = t0 + sample_s
        sim_deadline = Deadline(duration + 120, f"hub simulate to end after {duration:g} s")
        while simulate.poll() is None:  # the offer
            now = time.perf_counter()
            total = await published()
            if total > last_pub:
                if t_first_pub is None:
                    t_first_pub, first_pub = now, total
                last_pub, t_last_pub = total, now
            if now >= next_sample:
                s = await take(now - t0)
                next_sample += sample_s
                print(f"  soak {s.t:5.0f} s: {last_pub - base_published:,} published, {s.events:,.0f} processed, "
                      f"RSS {s.rss_kib / 1024:.1f} MiB, load average {load_average()}", file=sys.stderr,
                      flush=True)  # fmt: skip
            alive()
            sim_deadline.check()
            await asyncio.sleep(1.0)
        if simulate.returncode != 0:
            raise RuntimeError(f"hub simulate exited with {simulate.returncode}:\n{log_tail(simulate_log)}")
        offered = await published() - base_published
        # the rate reached: events published from the first growth of the agency topics seen to the last one
        rate_seen = (last_pub - first_pub) / (t_last_pub - t_first_pub) \
            if t_first_pub is not None and t_last_pub - t_first_pub >= 1 else float("nan")  # fmt: skip
        backlog_end = offered - (await events_received(http, port) - base_events)
        drain_deadline = time.perf_counter() + drain
        while True:  # every published event processed, then the last sample
            s = await take(time.perf_counter() - t0)
            if s.events >= offered or time.perf_counter() > drain_deadline:
                break
            await asyncio.sleep(1.0)
        last = samples[-1]
        sizes = await log_sizes(kafka, list(changelogs(topics).values()))
        state_bytes = disk_usage(state)
        rss.stop()
        peak = rss.peak_mib("worker")

        t_stop = time.perf_counter()
        stop(worker)  # SIGTERM, waited for
        stop_s = time.perf_counter() - t_stop
        t_restart = time.perf_counter()
        worker = spawn_hub(["worker", "-l", "warn"], env, worker_log)
        t_ready_again = await wait_http_ok(ready_url, worker, worker_log)
        rss_restart = rss_kib(worker.pid)
    finally:
        if simulate is not None:
            stop(simulate)
        rss.stop()
        await http.close()
        await consumer.stop()
        stop(worker)

    warm = after_warmup(samples, warmup)
    out = {
        "offered_eps": rate,
        "published_eps": rate_seen,
        "published": float(offered),
        "processed": last.events,
        "backlog_end": float(backlog_end),
        "startup_s": t_ready - t_launch,
        "rss_start_mib": first.rss_kib / 1024,
        "rss_warm_mib": warm[0].rss_kib / 1024 if warm else float("nan"),
        "rss_end_mib": last.rss_kib / 1024,
        "slope_kib": kib_per_1000_events(warm),
        "slope_all_kib": kib_per_1000_events(samples),
        "rss_peak_mib": peak,
        "samples": float(len(warm)),
        "state_dir_mib": state_bytes / 2**20,
        **{f"topic_{k}_mib": sizes.get(topic, 0) / 2**20 for k, topic in changelogs(topics).items()},
        "stop_s": stop_s,
        "restart_ready_s": t_ready_again - t_restart,
        "rss_restart_mib": rss_restart / 1024,
    }
    print(describe(out, duration, warmup, load_start), flush=True)
    return out


def describe(r: dict[str, float], duration: float, warmup: float, load_start: str) -> str:
    """What one run found, as lines to print, the targets with met/missed."""

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    rate_ok = r["published_eps"] >= KEEPS_UP * r["offered_eps"]
    return "\n".join([
        f"soak: {r['offered_eps']:,.0f} events/s offered for {duration:g} s: hub simulate published "
        f"{r['published']:,.0f} ({r['published_eps']:,.0f}/s, {verdict(rate_ok)}: ≥ {KEEPS_UP:.0%} of the rate), "
        f"the worker processed {r['processed']:,.0f} (backlog {r['backlog_end']:,.0f} when the offer ended)",
        f"  worker RSS: {r['rss_start_mib']:.1f} MiB at the start (ready after {r['startup_s']:.1f} s), "
        f"{r['rss_warm_mib']:.1f} MiB after the warm-up ({warmup:g} s), {r['rss_end_mib']:.1f} MiB at the end; "
        f"peak {r['rss_peak_mib']:.1f} MiB (target ≤ {RSS_TARGET_MIB:g} MiB: "
        f"{verdict(r['rss_peak_mib'] <= RSS_TARGET_MIB)})",
        f"  RSS slope after the warm-up: {r['slope_kib']:.2f} KB per 1,000 events over {r['samples']:.0f} samples "
        f"(target ≤ {SLOPE_TARGET_KIB:g}: {verdict(r['slope_kib'] <= SLOPE_TARGET_KIB)}); "
        f"{r['slope_all_kib']:.2f} including the warm-up",
        f"  state on disk: {r['state_dir_mib']:.2f} MiB in the state directory; changelog topics hub.dedup "
        f"{r['topic_dedup_mib']:.2f} MiB, hub.consent {r['topic_consent_mib']:.2f} MiB, hub.lagesbild-state "
        f"{r['topic_lagesbild_state_mib']:.2f} MiB, hub.lagesbild-alerts {r['topic_lagesbild_alerts_mib']:.2f} MiB",
        f"  restart on the same state: stopped in {r['stop_s']:.1f} s, spawn → /ready {r['restart_ready_s']:.1f} s "
        f"(RSS {r['rss_restart_mib']:.1f} MiB when ready)",
        f"  load average (1/5/15 min): {load_start} at the start, {load_average()} at the end",
    ])  # fmt: skip


# -- the table -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Precise(Figure):
    """A figure shown with ``digits`` decimals (the table's default shows whole numbers)."""

    digits: int = 1

    def format(self, value: float) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        return f"{value:,.{self.digits}f}"


def sections(minutes: float, rate: float) -> list[Section]:
    """The soak's rows of the ``python -m bench`` table (keys ``soak.<figure>``)."""

    def at_most(x: float) -> Callable[[float], bool]:
        return lambda v: v <= x

    warmup = warmup_s(minutes * 60)
    topics = Topics()
    return [Section(f"Soak: one hub worker under hub simulate at {rate:,.0f} events/s for {minutes:g} min "
                    f"(warm-up {warmup:g} s)", [
        Figure("soak.published_eps", "published by hub simulate", "events/s", f"≥ {KEEPS_UP:.0%} of {rate:,.0f}",
               lambda v: v >= KEEPS_UP * rate),
        Figure("soak.processed", "events processed by the worker", "count"),
        Figure("soak.backlog_end", "worker backlog when the offer ended", "events"),
        Precise("soak.rss_start_mib", "worker RSS at the start (ready, before the load)", "MiB"),
        Precise("soak.rss_warm_mib", "worker RSS after the warm-up", "MiB"),
        Precise("soak.rss_end_mib", "worker RSS at the end", "MiB"),
        Precise("soak.rss_peak_mib", "worker peak RSS (VmHWM) throughout", "MiB", f"≤ {RSS_TARGET_MIB:g}",
                at_most(RSS_TARGET_MIB)),
        Precise("soak.slope_kib", "RSS slope after the warm-up, least squares", "KB per 1,000 events",
                f"≤ {SLOPE_TARGET_KIB:g}", at_most(SLOPE_TARGET_KIB), digits=2),
        Precise("soak.state_dir_mib", "worker state directory on disk (du)", "MiB", digits=2),
        *[Precise(f"soak.topic_{k}_mib", f"changelog {name} on the broker", "MiB", digits=2)
          for k, name in changelogs(topics).items()],
        Figure("soak.restart_ready_s", "restart on the same state: spawn → /ready", "s"),
        Precise("soak.rss_restart_mib", "worker RSS when ready after the restart", "MiB"),
    ])]  # fmt: skip


METHOD = """
- **Soak** (`bench/bench_soak.py`, only with `--only soak`): one `hub worker` process under `hub simulate --rate R
  --duration S` (the agency topics' end offsets show the rate reached); every 15 s the worker's `VmRSS` and
  its `hub_events_received_total`; the slope is the least-squares fit of RSS over events processed after the
  warm-up (20 % of the duration, at most 2 min); disk = `du` of the worker's state directory and the
  changelog topics' sizes from the broker (DescribeLogDirs); then a restart on the same state directory,
  timed from spawn to `/ready`. The worker runs with its default settings; the traffic is `hub simulate --clock
  wall` (every kind scaled to the rate, simulated time on the wall clock), so the lägesbild's counts per day and
  week grow as in service (replayed, 30 minutes at 400/s would be ~22 simulated years of days and weeks).
"""


# -- main ------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--minutes", type=float, default=DEFAULT_MINUTES, help="how long the load runs")
    ap.add_argument("--rate", type=float, default=DEFAULT_RATE, help="events/s offered by hub simulate")
    ap.add_argument("--sample", type=float, default=SAMPLE_S, help="seconds between RSS samples")
    ap.add_argument("--bootstrap", default=os.environ.get("HUB_KAFKA_BOOTSTRAP"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp, \
            standalone_broker(args.bootstrap, Path(tmp)) as bootstrap:  # fmt: skip
        asyncio.run(run(bootstrap, Path(tmp), minutes=args.minutes, rate=args.rate, sample_s=args.sample))
    return 0


if __name__ == "__main__":
    sys.exit(main())
