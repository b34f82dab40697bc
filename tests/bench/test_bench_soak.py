"""The soak benchmark's arithmetic (no Kafka): the warm-up, the least-squares slope, du, the topic sizes from a
DescribeLogDirs answer and the figures of the table."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from bench.bench_soak import (
    DescribeLogDirsRequest,
    DescribeLogDirsRequest_v1,
    Precise,
    Sample,
    after_warmup,
    changelogs,
    disk_usage,
    kib_per_1000_events,
    sections,
    slope,
    topic_sizes,
    warmup_s,
)
from hub.topics import Topics


def test_the_warm_up_is_a_fifth_of_the_duration_but_at_most_two_minutes() -> None:
    assert warmup_s(45) == pytest.approx(9)
    assert warmup_s(300) == pytest.approx(60)
    assert warmup_s(600) == pytest.approx(120)
    assert warmup_s(3600) == pytest.approx(120)


def test_slope_is_the_least_squares_fit() -> None:
    assert slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2)
    assert slope([0, 1, 2, 3], [5, 5, 5, 5]) == pytest.approx(0)
    # noise around y = 0.5 x + 10: the fit, not the first and last point
    assert slope([0, 10, 20, 30, 40], [10, 16, 20, 24, 30]) == pytest.approx(0.48)
    assert math.isnan(slope([1], [1]))
    assert math.isnan(slope([2, 2, 2], [1, 2, 3]))
    with pytest.raises(ValueError, match="length"):
        slope([1, 2], [1])


def test_rss_growth_per_1000_events_counts_only_the_samples_after_the_warm_up() -> None:
    # 100 MiB of start-up growth in the warm-up, then 2 KiB per 1,000 events
    samples = [Sample(0, 0, 50_000), Sample(15, 6_000, 150_000), Sample(30, 12_000, 150_012),
               Sample(45, 18_000, 150_024), Sample(60, 24_000, 150_036)]  # fmt: skip
    warm = after_warmup(samples, warmup_s(60))
    assert [s.t for s in warm] == [15, 30, 45, 60]
    assert kib_per_1000_events(warm) == pytest.approx(2)
    assert kib_per_1000_events(samples) > 1000
    assert math.isnan(kib_per_1000_events(warm[:1]))


def test_disk_usage_counts_allocated_blocks_like_du(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "a.sst").write_bytes(os.urandom(1 << 20))
    (tmp_path / "small").write_bytes(b"x")
    os.link(tmp_path / "store" / "a.sst", tmp_path / "hardlink.sst")  # one inode, counted once
    used = disk_usage(tmp_path)
    assert (1 << 20) <= used < (1 << 20) + 64 * 1024
    assert disk_usage(tmp_path / "missing") == 0


def test_topic_sizes_sum_partitions_and_count_a_replicated_partition_once() -> None:
    results = [
        (0, "/data/a", [("ns.hub.dedup", [(0, 1000, 0, False), (1, 500, 0, False)]),
                        ("ns.hub.consent", [(0, 70, 0, False)]), ("other", [(0, 9999, 0, False)])]),
        (0, "/data/b", [("ns.hub.dedup", [(0, 1000, 0, False), (1, 400, 0, True)])]),  # a replica, a future one
        (57, "/data/c", [("ns.hub.dedup", [(2, 12345, 0, False)])]),  # an offline log dir
    ]  # fmt: skip
    assert topic_sizes(results, ["ns.hub.dedup", "ns.hub.consent", "ns.hub.lagesbild-state"]) == {
        "ns.hub.dedup": 1500, "ns.hub.consent": 70, "ns.hub.lagesbild-state": 0,
    }  # fmt: skip


def test_the_describe_log_dirs_request_asks_for_every_topic() -> None:
    struct = DescribeLogDirsRequest(None).build(DescribeLogDirsRequest_v1)
    assert struct.encode() == b"\xff\xff\xff\xff"  # a null array: every topic of every log directory
    named = DescribeLogDirsRequest([("t", [0, 1])]).build(DescribeLogDirsRequest_v1)
    assert named.encode() == b"\x00\x00\x00\x01" + b"\x00\x01t" + b"\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x01"


def test_the_state_changelogs_are_the_namespaced_topics() -> None:
    assert set(changelogs(Topics("x.")).values()) == {"x.hub.dedup", "x.hub.consent", "x.hub.lagesbild-state",
                                                      "x.hub.lagesbild-alerts"}  # fmt: skip


def test_the_soak_figures_and_their_targets() -> None:
    figures = {f.key: f for s in sections(10, 400) for f in s.figures}
    assert all(k.startswith("soak.") for k in figures)
    slope_figure, peak = figures["soak.slope_kib"], figures["soak.rss_peak_mib"]
    published = figures["soak.published_eps"]
    assert slope_figure.met is not None
    assert peak.met is not None
    assert published.met is not None
    assert [slope_figure.met(5.0), slope_figure.met(5.01)] == [True, False]  # KB per 1,000 events
    assert [peak.met(300), peak.met(301)] == [True, False]  # MiB
    assert [published.met(390), published.met(370)] == [True, False]  # 95 % of 400 events/s
    assert isinstance(slope_figure, Precise)
    assert slope_figure.format(0.4567) == "0.46"
    assert slope_figure.format(float("nan")) == "n/a"
    assert figures["soak.rss_end_mib"].format(1234.56) == "1,234.6"
