"""One count increment's walk through the lägesbild stage, with no Kafka in it.

increment (from ``hub.lagesbild``: one per key and batch, for ``n`` events) → count it (:meth:`Counts.apply`)
→ the aggregates to ``deliver.<receiver>.<kommunkod>`` → a burglary-wave alert to
``deliver.grannsamverkan.<kommunkod>``; the batch's changed counts are its state records (``hub.lagesbild-state``).
An increment of the older per-event form (with an ``event_id``, no ``n``) is counted as one event and its
county copy is sent back onto ``hub.lagesbild``, as the stage did before increments were coalesced.

The worker (:mod:`hub.worker.batch`) feeds in each batch's increments with the counts of their partition and
produces the returned outputs; the benchmark of the worker's own work calls :meth:`LagesbildStage.process` directly.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import orjson

from hub import metrics
from hub.contract.fields import allowed_municipality_codes
from hub.contract.outputs import Deadletter, LagesbildAggregate, ReasonCode
from hub.contract.serde import Serde
from hub.flows.lagesbild import Counts, Horizon, Publication, WaveRule, check_wave, county_increment
from hub.lagesbild_store import encode_record
from hub.pipeline import Output
from hub.topics import Topics
from hub.worker.state import StateRecord, encode_key

_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_FIELDS = ("receiver", "municipality_code", "category", "week", "day")
_OPTIONAL = ("event_id", "event_type")
MAX_N = 1_000_000
"""More events than one increment can stand for (a batch is far smaller): such an increment is refused."""


def increment_problem(increment: object) -> str | None:
    """Why an increment cannot be counted (no personal data in the answer), or None."""
    if not isinstance(increment, dict):
        return "not a JSON object"
    for name in _FIELDS:
        if not isinstance(increment.get(name), str) or not increment[name]:
            return f"{name} missing or not text"
    for name in _OPTIONAL:
        if name in increment and (not isinstance(increment[name], str) or not increment[name]):
            return f"{name} not text"
    n = increment.get("n", 1)
    if type(n) is not int or not 1 <= n <= MAX_N:
        return f"n is not a count of 1 .. {MAX_N}"
    if increment["municipality_code"] not in allowed_municipality_codes():
        return "municipality_code is not one this hub serves"
    week = _WEEK.match(increment["week"])
    if week is None or not 1900 <= int(week.group(1)) <= 2200 or not 1 <= int(week.group(2)) <= 53:
        return "week outside 1900-W01 .. 2200-W53"
    try:
        day = date.fromisoformat(increment["day"])
    except ValueError:
        return "day is not an ISO date"
    if not 1900 <= day.year <= 2200:
        return "day outside 1900 .. 2200"
    return None


@dataclass
class LagesbildStage:
    serde: Serde
    topics: Topics
    county_code: str
    wave_rule: WaveRule
    alerts: MutableMapping[str, bool]
    """``municipality|area|category`` → alerted for the current wave (the worker's changelogged table)."""
    horizon: Horizon = field(default_factory=Horizon)
    """How long counts are kept (:class:`hub.flows.lagesbild.Horizon`)."""

    def process(self, counts: Counts, value: bytes, partition: int, offset: int = -1) -> list[Output | StateRecord]:
        """The messages to produce for one increment read from ``partition`` of ``hub.lagesbild``."""
        return self.process_batch(counts, [(value, offset)], partition)

    def process_batch(
        self, counts: Counts, increments: list[tuple[bytes, int]], partition: int
    ) -> list[Output | StateRecord]:
        """The messages to produce for a batch of increments (value, offset) read from ``partition``.

        Coalesced: one aggregate per touched key — its state after the whole batch, the same a receiver
        would hold after one record per increment (a count that went 1 → 2 in the batch stays "<3"). An
        increment that cannot be counted becomes a dead letter (the stage never crashes on one)."""
        aggregates: dict[tuple[str, bytes], Publication] = {}
        outputs: list[Output] = []
        late = counts.too_late
        for value, offset in increments:
            try:
                increment = orjson.loads(value)
                problem = increment_problem(increment)
            except (ValueError, TypeError):  # orjson.JSONDecodeError is a ValueError
                increment, problem = None, "not a JSON increment"
            if problem is not None:
                outputs.append(self._deadletter(value, problem, partition, offset))
                continue
            n = increment.get("n", 1)
            # The wave check sees its burglaries one at a time, as they happened (the alert's 7-day count is the
            # one that crossed the threshold); everything else is counted n at a time.
            steps = [{**increment, "n": 1}] * n if n > 1 and self.wave_rule.watches(increment) else [increment]
            for step in steps:
                for pub in counts.apply(step):
                    target = self.topics.deliver(pub.receiver, pub.municipality_code)
                    aggregates.pop((target, pub.key), None)  # the latest state, in the order keys last changed
                    aggregates[(target, pub.key)] = pub
                alert = check_wave(counts.counts, self.alerts, step, self.wave_rule)
                if alert is not None:
                    target = self.topics.deliver("grannsamverkan", alert.municipality_code)
                    outputs.append(Output(target, alert.area.encode(), self.serde.encode(alert)))
            if "n" not in increment:  # the older per-event form: its county copy is made here
                county = county_increment(increment, self.county_code)
                if county is not None:
                    county_key = f"{county['receiver']}|{self.county_code}".encode()
                    outputs.append(Output(self.topics.lagesbild, county_key, orjson.dumps(county)))
        if counts.too_late > late:
            metrics.LAGESBILD_TOO_LATE.inc(counts.too_late - late)
        # The state records live in the increments' partition, where this worker reloads them from.
        state = self.topics.lagesbild_state
        records = [StateRecord(state, partition, encode_key(k), None) if c is None
                   else StateRecord(state, partition, *encode_record(k, c)) for k, c in counts.drain()]  # fmt: skip
        name = LagesbildAggregate.SCHEMA_NAME
        published = [Output(t, k, self.serde.encode_datum(name, pub.datum())) for (t, k), pub in aggregates.items()]
        return [*published, *outputs, *records]

    def _deadletter(self, value: bytes, problem: str, partition: int, offset: int) -> Output:
        record = Deadletter(
            reason=ReasonCode.invalid_payload, message=f"lägesbild increment not counted: {problem}",
            source_topic=self.topics.lagesbild, source_partition=partition, source_offset=max(offset, 0),
            original=value, event_id=None, at=datetime.now(UTC),
        )  # fmt: skip
        return Output(self.topics.deadletter, None, self.serde.encode(record), partition)
