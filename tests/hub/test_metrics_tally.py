"""The worker applies a batch's metrics at once (hub.metrics.Tally): /metrics must then show exactly what one
``inc()`` / ``observe()`` per event would have shown."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from hub.metrics import Tally


def exposition(values: list[float], per_value: bool) -> bytes:
    registry = CollectorRegistry()
    counter = Counter("c_total", "c", ["receiver"], registry=registry)
    plain = Counter("p_total", "p", registry=registry)
    histogram = Histogram("h_seconds", "h", buckets=(0.001, 0.01, 0.1, 1.0), registry=registry)
    if per_value:
        for v in values:
            counter.labels("sig").inc()
            plain.inc()
            histogram.observe(v)
        counter.labels("ungdom").inc()
    else:
        tally = Tally()
        for v in values:
            tally.inc(counter, "sig")
            tally.inc(plain)
            tally.observe(histogram, v)
        tally.inc(counter, "ungdom")
        assert b"c_total{" not in generate_latest(registry)  # nothing before the flush
        tally.flush()
    return b"\n".join(line for line in generate_latest(registry).splitlines() if b"_created" not in line)


def test_a_flushed_tally_shows_what_one_call_per_event_shows() -> None:
    values = [0.0, 0.0005, 0.001, 0.0010001, 0.01, 0.05, 0.1, 0.99, 1.0, 2.5, 1e9]  # bucket edges included
    batched = exposition(values, per_value=False)
    assert batched == exposition(values, per_value=True)
    assert b'h_seconds_bucket{le="0.001"} 3.0' in batched  # the upper bound belongs to its bucket
    assert b'c_total{receiver="sig"} 11.0' in batched
