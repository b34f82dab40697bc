"""``python -m bench``: every benchmark of the project in sequence on one local broker, one table.

    .venv/bin/python -m bench                      # --runs 3, writes docs/benchmarks.md
    .venv/bin/python -m bench --only e2e --runs 1  # one benchmark, prints only
    .venv/bin/python -m bench --smoke --runs 1 --output /tmp/b.md   # tiny sizes (the test suite's smoke run)
    .venv/bin/python -m bench --work /tmp/bench-logs ...   # keep the hub processes' state and logs there
    .venv/bin/python -m bench --only soak --runs 1 [--soak-minutes 10] [--soak-rate 400]   # the soak, on request

Uses the cluster in ``HUB_KAFKA_BOOTSTRAP`` if set (``HUB_KAFKA__CA_FILE`` and ``HUB_KAFKA__CREDENTIALS_DIR``
say how to reach it: the benchmark connects as ``admin``, its hub processes as their own principals);
otherwise starts the local, secured broker as ``hub kafka up`` does (and stops it afterwards if it was not
running before). Benchmarks: serde, ingest, worker, e2e,
recovery (see each ``bench/bench_<name>.py``, also runnable alone); the soak (``bench/bench_soak.py``: is the
worker's memory bounded? ``--soak-minutes``, default 10, and ``--soak-rate``, default 400 events/s; ``--smoke``:
45 s at 100 events/s) runs only when asked for with ``--only soak``. Prints a table — figure, median of the
runs, each run, target, met? — and writes it to ``--output`` (default docs/benchmarks.md) with the machine,
the date and bench/NOTES.md. A partial (``--only``) or ``--smoke`` run writes a file only when ``--output``
is given, so the published figures are never replaced by smaller ones by accident.

Exit status 0 when every benchmark ran (whether or not targets are met), 1 when one failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import (
    bench_e2e,
    bench_ingest,
    bench_pipeline,
    bench_recovery,
    bench_serde,
    bench_soak,
    bench_tls,
    bench_worker,
)
from bench.report import (
    Figure,
    Section,
    console_table,
    kafka_version_of,
    load_average,
    machine,
    markdown,
    rows_by_section,
)
from bench.rss import PeakRss, pid_listening_on, self_peak_mib
from bench.support import local_security_env
from hub.kafka.local import broker_from_settings
from hub.settings import HubSettings

REPO = Path(__file__).resolve().parent.parent
NOTES = Path(__file__).resolve().parent / "NOTES.md"
DEFAULT_OUTPUT = REPO / "docs" / "benchmarks.md"
BENCHMARKS = ("serde", "ingest", "worker", "tls", "e2e", "recovery")
ON_REQUEST = ("soak",)
"""Benchmarks run only when named with ``--only`` (not part of a full run)."""


@dataclass(frozen=True)
class Sizes:
    serde_events: int = 20000
    ingest_events: int = 5000
    ingest_batch: int = 500
    ingest_clients: int = 32
    ingest_rate: float = 500.0
    ingest_duration: float = 10.0
    worker_events: int = 20000
    inprocess_events: int = 5000
    e2e_rate: float = 1000.0
    e2e_duration: float = 20.0
    e2e_drain: float = 300.0
    increments: int = 20000
    recovery_keys: int = 1_000_000
    stage_timeout_s: float = 900.0
    """How long the aggregation run may take before it fails with what it was waiting for."""
    soak_minutes: float = bench_soak.DEFAULT_MINUTES
    soak_rate: float = bench_soak.DEFAULT_RATE
    soak_sample_s: float = bench_soak.SAMPLE_S


FULL = Sizes()
SMOKE = Sizes(serde_events=1000, ingest_events=300, ingest_batch=100, ingest_clients=8, ingest_rate=200.0,
              ingest_duration=2.0, worker_events=600, inprocess_events=600, e2e_rate=200.0, e2e_duration=3.0,
              e2e_drain=60.0, increments=400, recovery_keys=5000, stage_timeout_s=180.0, soak_minutes=0.75,
              soak_rate=100.0, soak_sample_s=5.0)  # fmt: skip


def sections(z: Sizes) -> list[Section]:
    """Every figure with its label and target (the targets of issue #8)."""

    def at_least(x: float) -> Callable[[float], bool]:
        return lambda v: v >= x

    def at_most(x: float) -> Callable[[float], bool]:
        return lambda v: v <= x

    return [
        Section("Serde: one polisen.minor_suspected, model → bytes → model", [
            Figure("serde.avro_eps", "Avro single-object encoding round trip", "events/s"),
            Figure("serde.json_eps", "JSON round trip (model_dump → json → model_validate)", "events/s"),
            Figure("serde.ratio", "Avro / JSON throughput", "×", "reported (no hard target)"),
            Figure("serde.avro_bytes", "Avro size", "bytes"),
            Figure("serde.json_bytes", "JSON size", "bytes"),
        ]),
        Section("Ingest gateway (hub ingest, in-process, acks=all)", [
            Figure("ingest.single_eps", f"one event per request, {z.ingest_clients} clients, acknowledged",
                   "events/s", "≥ 3,000 (#14)", at_least(3000)),
            Figure("ingest.batch_eps", f"NDJSON batches of {z.ingest_batch}, 4 clients, acknowledged", "events/s",
                   "≥ 15,000 (#14)", at_least(15000)),
            Figure("ingest.p50_ms", f"request → readable on agency topic at {z.ingest_rate:,.0f} events/s, p50",
                   "ms"),
            Figure("ingest.p99_ms", f"request → readable on agency topic at {z.ingest_rate:,.0f} events/s, p99",
                   "ms"),
        ]),
        Section(f"Worker vs raw passthrough ({z.worker_events:,} mixed events backlog; exactly once, a transaction "
                "per batch)", [
            Figure("worker.passthrough_eps", "raw aiokafka passthrough", "events/s"),
            Figure("worker.p2.worker_eps", "hub worker --processes 2 (the 2 cores)", "events/s", "≥ 20,000",
                   at_least(20000)),
            Figure("worker.worker_eps", "hub worker --processes 1", "events/s", "≥ 11,000", at_least(11000)),
            Figure("worker.cpu_us", "worker CPU per event, one process (CPU time / events)", "µs", "≤ 50",
                   at_most(50)),
            Figure("worker.p2.cpu_us", "worker CPU per event, two processes", "µs", "≤ 50", at_most(50)),
            Figure("worker.process_us", "one process, wall time per event processing its batches", "µs"),
            Figure("worker.commit_us", "one process, wall time per event committing its batches' transactions",
                   "µs"),
            Figure("worker.after_commit_us", "one process, wall time per event after the commits (anchors, disk "
                   "state)", "µs"),
            Figure("worker.batch_mean", "one process, messages per batch (mean)", "messages"),
            Figure("worker.ratio", "one process / passthrough", "×", "≥ 0.2", at_least(0.2)),
            Figure("worker.p2.ratio", "two processes / passthrough", "×", "≥ 0.2", at_least(0.2)),
            Figure("worker.inprocess_eps", f"its own work in one process, no Kafka ({z.inprocess_events:,} events)",
                   "events/s", "reported: one worker's ceiling"),
            Figure("worker.of_inprocess", "worker / its own work without Kafka", "×"),
            Figure("worker.p50_ms", "processing latency per message, p50", "ms"),
            Figure("worker.p99_ms", "processing latency per message, p99", "ms"),
            Figure("worker.startup_s", "worker start → /ready", "s"),
        ]),
        Section(f"What the trust boundary costs: raw passthrough of {z.worker_events:,} events, secured broker vs a "
                "plaintext one (same release, same machine, order alternated per run)", [
            Figure("tls.plaintext_eps", "plaintext broker, no authentication (for this comparison only)", "events/s"),
            Figure("tls.secured_eps", "secured broker: TLS, SASL/SCRAM-SHA-512, ACLs (as everywhere else)", "events/s"),
            Figure("tls.ratio", "secured / plaintext", "×", "reported (the cost of the trust boundary)"),
        ]),
        Section(f"End to end: gateway → worker → receiver topic, {z.e2e_rate:,.0f} events/s offered for "
                f"{z.e2e_duration:g} s", [
            Figure("e2e.offered_eps", "offered", "events/s"),
            Figure("e2e.accepted_eps", "accepted by the gateway", "events/s"),
            Figure("e2e.rejected", "events the gateway rejected", "count", "0", lambda v: v == 0),
            Figure("e2e.worker_eps", "read by the worker while offered", "events/s", "keeps up (≥ 95 % offered)",
                   at_least(0.95 * z.e2e_rate)),
            Figure("e2e.backlog_end", "worker backlog when the offer ended", "events"),
            Figure("e2e.drain_s", "backlog drained after the offer ended", "s"),
            Figure("e2e.p50_ms", "ingest → receiver topic, p50", "ms"),
            Figure("e2e.p99_ms", "ingest → receiver topic, p99", "ms", "≤ 100 ms (#14)", at_most(100)),
            Figure("e2e.deliveries", "deliveries timed", "count"),
        ]),
        Section("Lägesbild: aggregation and table recovery", [
            Figure("recovery.agg_eps", f"aggregation, {z.increments:,} increments + county copies", "increments/s"),
            Figure("recovery.ready_empty_s", "worker start → /ready, empty tables", "s"),
            Figure("recovery.load_s", f"table recovery: {z.recovery_keys:,} keys loaded (longest partition)", "s",
                   "≤ 15 s", at_most(15)),
            Figure("recovery.ready_s", f"worker start → /ready, {z.recovery_keys:,} table keys to recover", "s"),
        ]),
        Section("Peak RSS per process (VmHWM)", [
            Figure("rss.worker_throughput", "hub worker, worker vs passthrough", "MiB"),
            Figure("rss.worker_e2e", "hub worker, end to end", "MiB"),
            Figure("rss.worker_recovery", f"hub worker, {z.recovery_keys:,} keys recovered", "MiB"),
            Figure("rss.gateway", "hub ingest gateway, end to end", "MiB"),
            Figure("rss.broker", "Kafka broker JVM (whole benchmark)", "MiB"),
            Figure("rss.driver", "bench driver (this process)", "MiB"),
        ]),
    ]


METHOD = """\
## How the figures are measured

- **Serde** (`bench/bench_serde.py`): full model round trip, Avro and JSON alternately in one process.
- **Ingest** (`bench/bench_ingest.py`): the gateway in-process with its client; 202 only after the broker
  acknowledged (acks=all, idempotent producer); latency = HTTP request sent → event read from the agency topic.
- **Worker** (`bench/bench_worker.py`): the same pre-produced backlog read by a raw aiokafka passthrough and by
  `hub worker` (one process); the worker's run ends when `hub reconcile` accounts for every event;
  processing latency from the worker's `hub_processing_seconds` histogram. Beside it, the worker's own
  work without Kafka (`bench/bench_pipeline.py`): the same kind of events through `Pipeline.process` and
  the lägesbild stage in the benchmark's process, tables as dicts — what one worker could reach if faust,
  aiokafka and the broker cost nothing.
- **Trust boundary** (`bench/bench_tls.py`): the same raw passthrough on the secured broker (TLS on every
  listener, SASL/SCRAM-SHA-512, ACLs: how every figure here is measured) and on a plaintext broker of the same
  release started beside it for this comparison only; the order alternates from run to run.
- **End to end** (`bench/bench_e2e.py`): `hub worker` and `hub ingest` as processes; simulated traffic of every
  agency posted as NDJSON every 20 ms at the offered rate; latency = post → `hub.delivery` read from
  `deliver.<receiver>.<kommunkod>`, every delivery counted. When the worker cannot keep up, the rate it
  achieved and its backlog say so.
- **Lägesbild** (`bench/bench_recovery.py`): aggregation = increments made by the real routing pipeline,
  pre-produced to `hub.lagesbild`, counted by one worker. Recovery = keys written straight to the state
  topic `hub.lagesbild-state`, then a fresh `hub worker`: the table's recovery time is the longest partition
  load it logs (partitions load concurrently; the logged counts must add up to the keys written), and the
  time from its start until `/ready` (which waits for every load) is shown beside it; a probe increment
  afterwards proves the worker read the keys.
- **Peak RSS**: the kernel's high-water mark (`VmHWM` in `/proc/<pid>/status`), sampled while each process ran.
"""


@dataclass
class Context:
    bootstrap: str
    work: Path
    sizes: Sizes
    cache: dict[str, Any] = field(default_factory=dict)
    resources: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    """What a benchmark started for the whole invocation (the plaintext broker), closed at the end."""

    def once(self, name: str, make: Callable[[], Any]) -> Any:
        """A value made once per invocation (prepared events, the recovery table) and reused by every run."""
        if name not in self.cache:
            self.cache[name] = make()
        return self.cache[name]


def run_serde(ctx: Context) -> dict[str, float]:
    return {f"serde.{k}": v for k, v in bench_serde.measure(ctx.sizes.serde_events, 1).items()}


def run_ingest(ctx: Context) -> dict[str, float]:
    z = ctx.sizes
    r = asyncio.run(bench_ingest.run(ctx.bootstrap, ctx.work, events=z.ingest_events, batch=z.ingest_batch,
                                     concurrency=z.ingest_clients, rate=z.ingest_rate,
                                     duration=z.ingest_duration))  # fmt: skip
    return {f"ingest.{k}": v for k, v in r.items()}


def run_worker(ctx: Context) -> dict[str, float]:
    events = ctx.once("worker_events", lambda: bench_worker.encode_events(ctx.sizes.worker_events))
    r = asyncio.run(bench_worker.one_run(ctx.bootstrap, events, 2.0, ctx.work, processes=(1, 2)))
    out = {f"worker.{k}": v for k, v in r.items()}
    out["worker.inprocess_eps"] = bench_pipeline.measure(ctx.sizes.inprocess_events)["eps"]
    out["worker.of_inprocess"] = r["worker_eps"] / out["worker.inprocess_eps"]
    out["rss.worker_throughput"] = r["rss_mib"]
    return out


def run_e2e(ctx: Context) -> dict[str, float]:
    z = ctx.sizes
    events = ctx.once("e2e_events", lambda: bench_e2e.prepare_events(int(z.e2e_rate * z.e2e_duration)))
    r = asyncio.run(bench_e2e.run(ctx.bootstrap, ctx.work, rate=z.e2e_rate, duration=z.e2e_duration,
                                  drain_s=z.e2e_drain, events=events))  # fmt: skip
    out = {f"e2e.{k}": v for k, v in r.items()}
    out["rss.worker_e2e"] = r["rss_worker_mib"]
    out["rss.gateway"] = r["rss_gateway_mib"]
    return out


def run_recovery(ctx: Context) -> dict[str, float]:
    z = ctx.sizes
    increments = ctx.once("increments", lambda: bench_recovery.make_increments(z.increments))
    table = ctx.once("table", lambda: asyncio.run(bench_recovery.prepare_recovery(ctx.bootstrap, z.recovery_keys)))
    agg = asyncio.run(bench_recovery.run_aggregation(ctx.bootstrap, ctx.work, increments,
                                                     timeout_s=z.stage_timeout_s))  # fmt: skip
    rec = asyncio.run(bench_recovery.run_recovery(ctx.bootstrap, ctx.work, table))
    out = {f"recovery.{k}": v for k, v in {**agg, **rec}.items()}
    out["rss.worker_recovery"] = rec["rss_recovery_mib"]
    return out


def run_tls(ctx: Context) -> dict[str, float]:
    """The raw passthrough on the secured broker and on a plaintext one started for this run only."""
    events = ctx.once("worker_events", lambda: bench_worker.encode_events(ctx.sizes.worker_events))
    turn = ctx.cache.get("tls_runs", 0)
    ctx.cache["tls_runs"] = turn + 1
    # One plaintext broker for all runs, warmed like the secured one (which has served every benchmark before):
    # a broker's first minute (JIT, page cache) is slower than its steady state.
    plain = ctx.once("tls_broker", lambda: ctx.resources.enter_context(bench_tls.plaintext_broker(ctx.work)))
    r = asyncio.run(bench_tls.compare(ctx.bootstrap, plain, events, secured_first=turn % 2 == 1))
    return {"tls.plaintext_eps": r["plaintext"], "tls.secured_eps": r["secured"], "tls.ratio": r["ratio"]}


def run_soak(ctx: Context) -> dict[str, float]:
    z = ctx.sizes
    r = asyncio.run(bench_soak.run(ctx.bootstrap, ctx.work, minutes=z.soak_minutes, rate=z.soak_rate,
                                   sample_s=z.soak_sample_s))  # fmt: skip
    return {f"soak.{k}": v for k, v in r.items()}


RUNNERS: dict[str, Callable[[Context], dict[str, float]]] = {
    "serde": run_serde, "ingest": run_ingest, "worker": run_worker, "tls": run_tls, "e2e": run_e2e,
    "recovery": run_recovery, "soak": run_soak,
}  # fmt: skip


@contextmanager
def kafka() -> Iterator[tuple[str, int | None, str]]:
    """(bootstrap, broker pid if on this machine, Kafka version): HUB_KAFKA_BOOTSTRAP, else the local broker."""
    settings = HubSettings()
    if settings.kafka_bootstrap:
        bootstrap = settings.kafka_bootstrap
        host, _, port = bootstrap.split(",")[0].rpartition(":")
        pid = pid_listening_on(int(port)) if host in ("127.0.0.1", "localhost", "::1", "[::1]") else None
        version = kafka_version_of(pid)
        yield bootstrap, pid, f"Apache Kafka {version}" if version else f"unknown (HUB_KAFKA_BOOTSTRAP={bootstrap})"
        return
    broker = broker_from_settings(settings)
    started = broker.pid() is None
    print(f"starting Apache Kafka {broker.version} (KRaft) in {broker.home} ..." if started
          else f"using the running local broker in {broker.home}", file=sys.stderr, flush=True)  # fmt: skip
    bootstrap = broker.up()
    try:
        with local_security_env(broker):  # its CA and credentials for the benchmark and its hub processes
            yield bootstrap, broker.pid(), f"Apache Kafka {broker.version} (single KRaft node, `hub kafka up`)"
    finally:
        if started:
            broker.down()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs of every benchmark; the table shows the median")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: proves every benchmark works, in minutes")
    ap.add_argument("--output", type=Path, default=None,
                    help=f"markdown file to write (default {DEFAULT_OUTPUT.relative_to(REPO)} for a full run)")
    ap.add_argument("--only", action="append", choices=BENCHMARKS + ON_REQUEST, metavar="NAME",
                    help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}; or {', '.join(ON_REQUEST)}, "
                         "which runs only when named here")  # fmt: skip
    ap.add_argument("--soak-minutes", type=float, default=None, metavar="M",
                    help=f"how long the soak's load runs (default {FULL.soak_minutes:g}; "
                         f"{SMOKE.soak_minutes:g} with --smoke)")  # fmt: skip
    ap.add_argument("--soak-rate", type=float, default=None, metavar="R",
                    help=f"events/s hub simulate offers in the soak (default {FULL.soak_rate:g}; "
                         f"{SMOKE.soak_rate:g} with --smoke)")  # fmt: skip
    ap.add_argument("--work", type=Path, default=None,
                    help="folder for the hub processes' state and logs, kept (default: a temporary folder, "
                         "removed after a run without failures)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # aiokafka warns while a just-created topic's metadata propagates ("not found in cluster metadata",
    # NotLeaderForPartition, retried); its errors still show.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    names = [n for n in BENCHMARKS + ON_REQUEST if n in args.only] if args.only else list(BENCHMARKS)
    sizes = SMOKE if args.smoke else FULL
    soak = {k: v for k, v in (("soak_minutes", args.soak_minutes), ("soak_rate", args.soak_rate)) if v is not None}
    sizes = dataclasses.replace(sizes, **soak)
    output: Path | None = args.output
    if output is None and not args.smoke and not args.only:
        output = DEFAULT_OUTPUT
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    load_at_start = load_average()
    date = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    results: dict[str, list[float]] = {}
    errors: list[str] = []
    keep = args.work is not None
    work = args.work.resolve() if keep else Path(tempfile.mkdtemp(prefix="hub-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with kafka() as (bootstrap, broker_pid, kafka_version), PeakRss() as rss:
        if broker_pid is not None:
            rss.watch("broker", broker_pid)
        ctx = Context(bootstrap, work, sizes)
        stack = ctx.resources.__enter__()
        for name in names:
            for i in range(args.runs):
                print(f"== {name}, run {i + 1} of {args.runs} ({time.perf_counter() - started:.0f} s)",
                      file=sys.stderr, flush=True)  # fmt: skip
                try:
                    figures = RUNNERS[name](ctx)
                except Exception as exc:
                    traceback.print_exc()
                    errors.append(f"{name}, run {i + 1}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
                    break  # the next runs would fail alike; go on with the next benchmark
                for key, value in figures.items():
                    results.setdefault(key, []).append(float(value))
        stack.close()
        rss.stop()
        results["rss.broker"] = [rss.peak_mib("broker")]
        results["rss.driver"] = [self_peak_mib()]
    extra = bench_soak.sections(sizes.soak_minutes, sizes.soak_rate) if "soak" in names else []
    grouped = rows_by_section([*sections(sizes), *extra], results)
    print()
    print(console_table(grouped))
    print(f"\n{len(names)} benchmark(s), {args.runs} run(s) each, {time.perf_counter() - started:.0f} s; "
          f"Kafka {bootstrap}")  # fmt: skip
    for e in errors:
        print(f"FAILED: {e}")
    if output is not None:
        text = markdown(date=date, command=command, machine_rows=machine(kafka_version, load_at_start),
                        grouped=grouped, runs=args.runs, errors=errors,
                        method=METHOD + (bench_soak.METHOD if "soak" in names else ""),
                        notes=NOTES.read_text(encoding="utf-8") if NOTES.exists() else "")  # fmt: skip
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        print(f"wrote {output}")
    else:
        print("(no --output given for a --smoke/--only run: nothing written)")
    if errors or keep:
        print(f"the hub processes' logs are in {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
