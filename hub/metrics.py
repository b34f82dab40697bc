"""The routing core's Prometheus metrics (published by the worker's /metrics endpoint)."""

from __future__ import annotations

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
