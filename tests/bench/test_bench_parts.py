"""The pieces the benchmark figures rest on: peak RSS from /proc, the broker's pid, the table's changelog
encoding, medians and targets."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench.bench_recovery import (
    HORIZON_DAYS,
    changelog_topic,
    partition_for,
    partitions_behind,
    state_partition,
    synthetic_counts,
    synthetic_increments,
)
from bench.report import Figure, Row
from bench.rss import PeakRss, peak_mib, pid_listening_on
from hub.flows.lagesbild import Counts, Horizon
from hub.kafka.admin import hub_topics
from hub.lagesbild_store import decode_record, encode_record
from hub.settings import HubSettings

linux_only = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")


@linux_only
def test_peak_rss_keeps_the_high_water_mark_of_a_process_after_it_ended() -> None:
    # The child touches 160 MiB, says so, and exits when its stdin closes: its peak is at least that.
    code = "import sys; b = b'x' * (160 * 2**20); print('ok', flush=True); sys.stdin.readline()"
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None
    assert child.stdout is not None
    with PeakRss(interval=0.05) as rss:
        rss.watch("child", child.pid)
        assert child.stdout.readline().strip() == "ok"
        rss.sample()
        child.stdin.close()
        child.wait(timeout=30)
    assert rss.peak_mib("child") >= 160
    assert rss.peak_mib("child") < 1024
    assert math.isnan(peak_mib(child.pid))  # gone: only the sampled figure remains
    assert math.isnan(rss.peak_mib("never watched"))


@linux_only
def test_pid_listening_on_finds_the_process_that_listens() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert pid_listening_on(port) == os.getpid()
    assert pid_listening_on(port) is None


def test_state_records_are_what_the_lagesbild_stage_reads_back() -> None:
    namespace = "benchtest."
    settings = HubSettings(topic_namespace=namespace)
    assert changelog_topic(namespace) in {t.name for t in hub_topics(settings)}  # created with the hub's topics
    inc = {"receiver": "lagesbild", "municipality_code": "1384", "area": "Särö", "category": "theft",
           "week": "2026-W33", "day": "2026-08-12"}  # fmt: skip
    stored = Counts()  # what the lägesbild stage itself stores for that increment, counted twice
    stored.apply(inc)
    stored.apply(inc)
    written = dict(stored.drain())
    assert len(written) == 4  # area and municipality total, week and day
    assert set(written.values()) == {2}
    for key, count in written.items():
        raw_key, raw_value = encode_record(key, count)
        assert decode_record(raw_key, raw_value) == (key, count)  # as the worker decodes it when loading
        assert state_partition(key, 4) == partition_for("lagesbild|1384", 4)  # where the worker writes it


def test_synthetic_counts_are_the_stages_keys_spread_like_the_workers() -> None:
    increments = list(synthetic_increments(20000))
    assert len(increments) == 20000
    county = [inc for inc in increments if inc["municipality_code"] == "13"]
    assert len(county) == 10000  # every municipal increment is followed by its county copy, as in the worker
    counts = synthetic_counts(20000)
    assert len(counts) == 20000
    reference = Counts(horizon=Horizon(HORIZON_DAYS, HORIZON_DAYS))  # as the recovering worker keeps them
    for inc in synthetic_increments(20000):
        reference.apply(inc)
    assert all(key in reference.counts for key in counts)  # keys the stage itself makes
    assert {state_partition(k, 4) for k in counts} == {0, 1, 2, 3}


def test_a_row_takes_the_median_of_the_runs_that_measured_and_checks_the_target() -> None:
    figure = Figure("x.eps", "x", "events/s", "≥ 5", lambda v: v >= 5)
    assert Row(figure, [4.0, float("nan"), 6.0]).median == 5.0
    assert Row(figure, [4.0, float("nan"), 6.0]).met == "yes"
    assert Row(figure, [4.0, 4.5]).met == "NO"
    assert Row(figure, [float("nan")]).met == "n/a"
    assert Row(Figure("y", "y", "s"), [1.0]).met == "—"
    assert Row(figure, [1234.4, float("nan")]).cells()[1:3] == ["1,234", "1,234 / n/a"]


def test_the_aggregation_run_waits_only_for_partitions_that_were_written_to() -> None:
    """Regression: increments that missed one of the four partitions left it without a committed offset and
    the smoke run waited for it until pytest's timeout."""
    from aiokafka import TopicPartition

    tp = [TopicPartition("hub.lagesbild", p) for p in range(4)]
    ends = {tp[0]: 543, tp[1]: 104, tp[2]: 153, tp[3]: 0}
    assert partitions_behind({tp[0]: 543, tp[1]: 104, tp[2]: 153}, ends) == {}
    assert partitions_behind({tp[0]: 500, tp[1]: 104}, ends) == {0: (500, 543), 2: (None, 153)}
