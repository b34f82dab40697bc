"""The routing core's Prometheus metrics (published by the worker's /metrics endpoint)."""

from __future__ import annotations

import bisect
import functools
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

RECEIVED = Counter("hub_events_received_total", "Messages read from agency topics", ["topic"])
DELIVERED = Counter("hub_deliveries_total", "Deliveries made, per receiver", ["receiver"])
AGGREGATED = Counter("hub_aggregated_total", "Events counted into aggregates, per receiver", ["receiver"])
REFUSED = Counter("hub_refusals_total", "Planned deliveries refused by the gate", ["receiver", "reason"])
DEADLETTERED = Counter("hub_deadletters_total", "Messages sent to hub.deadletter", ["reason"])
DUPLICATES = Counter("hub_duplicates_total", "Re-sent events dropped by deduplication")
LAGESBILD_TOO_LATE = Counter("hub_lagesbild_too_late_total",
                             "Events not counted: their lägesbild periods had ended before the horizon")
DEDUP_EXPIRED = Counter("hub_dedup_marks_expired_total", "Dedup marks deleted after the dedup window")
CONSENT_RECORDED = Counter("hub_consent_events_total", "Consent events applied to the consent state")
ACCESSES = Counter("hub_accesses_recorded_total", "Human reads (hub.access) appended to the audit trail, per channel",
                   ["channel"])
LATENCY = Histogram(
    "hub_processing_seconds",
    "Time to process one message (decode to outputs handed to the producer)",
    buckets=(0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0),
)
END_TO_END = Histogram(
    "hub_recorded_to_processed_seconds",
    "Time from the event's recorded_at to its processing by the hub",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
BATCH_PHASE = Histogram(
    "hub_batch_phase_seconds",
    "Time of each phase of a worker batch: process (the hub's own work), commit (produce, acknowledgements, "
    "offsets, commit of the transaction) and after_commit (anchoring audit checkpoints, the on-disk state)",
    ["phase"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BATCH_MESSAGES = Histogram(
    "hub_batch_messages", "Messages per worker batch (one transaction)",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000),
)
CONSUMER_LAG = Gauge(
    "hub_consumer_lag",
    "Messages on a source partition assigned to this worker that it has not processed yet (end offset minus "
    "the next offset to process), updated when /metrics is read",
    ["topic", "partition"],
)


@functools.lru_cache(maxsize=4096)
def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, looked up once: prometheus_client's ``labels()`` takes a lock and builds a
    key on every call, which the worker's hot path made several times per event."""
    return metric.labels(*labels)


class Tally:
    """Counter increments and histogram observations gathered over a batch and applied at once by
    :meth:`flush`: a prometheus_client ``inc()`` or ``observe()`` takes a lock each (several per event on the
    worker's hot path). What /metrics shows is the same as with one call per event, once the batch is done."""

    def __init__(self) -> None:
        self.counts: dict[tuple[Any, tuple[str, ...]], int] = {}
        self.observed: dict[Any, list[float]] = {}

    def inc(self, metric: Any, *labels: str) -> None:
        key = (metric, labels)
        self.counts[key] = self.counts.get(key, 0) + 1

    def observe(self, histogram: Any, value: float) -> None:
        values = self.observed.get(histogram)
        if values is None:
            values = self.observed[histogram] = []
        values.append(value)

    def flush(self) -> None:
        counts, self.counts = self.counts, {}
        observed, self.observed = self.observed, {}
        for (metric, labels), n in counts.items():
            (child(metric, *labels) if labels else metric).inc(n)
        for histogram, values in observed.items():
            observe_all(histogram, values)


def observe_all(histogram: Any, values: list[float]) -> None:
    """``histogram.observe(v)`` for every value, each bucket and the sum updated once (prometheus_client's
    own bucket rule: the first bucket whose upper bound is >= the value). Falls back to one ``observe()``
    per value if the client's internals are not as this expects."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for v in values:
            histogram.observe(v)
        return
    per_bucket: dict[int, int] = {}
    for v in values:
        i = bisect.bisect_left(bounds, v)
        per_bucket[i] = per_bucket.get(i, 0) + 1
    for i, n in per_bucket.items():
        buckets[i].inc(n)
    total.inc(sum(values))
