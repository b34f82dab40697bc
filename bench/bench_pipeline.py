"""The worker's own work without Kafka: the same mixed events through the pipeline and the lägesbild stage
in this process, with plain dicts for the tables — the ceiling one worker process could reach if faust,
aiokafka and the broker cost nothing.

Per run: ``--events`` events (``tests.factories.mixed_events``) are encoded, then timed (1) through
:meth:`hub.pipeline.Pipeline.process` (decode, dedup, route, gate, minimise, pseudonymise, audit, encode
every output), the lägesbild increments coalesced per 500 events with their county copies as a worker batch
coalesces them, and (2) those increments through the lägesbild stage as the worker runs it
(:meth:`hub.lagesbild_stage.LagesbildStage.process_batch`: count, encode each aggregate and state record,
check for a wave). Figures: events/s of (1), of (2) per source event,
and of both.

    .venv/bin/python bench/bench_pipeline.py --events 5000 --runs 3

``measure(n)`` returns one run's figures as a dict; ``python -m bench`` calls it beside the worker benchmark.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.base import event_topic
from hub.audit import AuditChain
from hub.contract.serde import Serde
from hub.flows.lagesbild import Counts, WaveRule, coalesce
from hub.flows.routing import Router
from hub.lagesbild_stage import LagesbildStage
from hub.pipeline import Message, Pipeline
from hub.pseudonym import Pseudonymiser
from hub.rules.model import load_rules
from hub.settings import HubSettings
from hub.topics import Topics
from tests.factories import mixed_events


def measure(n: int) -> dict[str, float]:
    settings = HubSettings()
    serde = Serde()
    topics = Topics()
    messages = [Message(event_topic(e, topics), 0, i, None, serde.encode(e))  # its source unit's topic
                for i, e in enumerate(mixed_events(n))]  # fmt: skip
    pipeline = Pipeline(Router(load_rules(settings.rules_path), settings.county_code), serde,
                        Pseudonymiser(settings), seen={}, consents={}, chain=AuditChain(), topics=topics)  # fmt: skip

    started = time.perf_counter()
    increments: list[tuple[bytes, int]] = []
    for i in range(0, len(messages), 500):  # a worker batch
        made = [inc for m in messages[i : i + 500] for inc in pipeline.process(m).increments]
        increments += [(orjson.dumps(inc), 0) for inc in coalesce(made, settings.county_code)]
    route_s = time.perf_counter() - started

    counts = Counts()
    stage = LagesbildStage(serde, topics, settings.county_code, WaveRule(), alerts={})
    started = time.perf_counter()
    for i in range(0, len(increments), 500):
        stage.process_batch(counts, increments[i : i + 500], 0)
    lagesbild_s = time.perf_counter() - started
    return {"route_eps": n / route_s, "lagesbild_eps": n / lagesbild_s, "eps": n / (route_s + lagesbild_s)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [measure(args.events) for _ in range(args.runs)]
    for key in runs[0]:
        values = [r[key] for r in runs]
        print(f"{key}: median {statistics.median(values):,.0f} events/s ({' / '.join(f'{v:,.0f}' for v in values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
