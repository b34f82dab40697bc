"""Serde benchmark: our Avro single-object encoding vs JSON, for a typical envelope event.

Both sides do the full model round trip: Avro = ``encode(model)`` → ``decode(bytes)`` (fingerprint lookup,
fastavro, pydantic validation); JSON = ``model_dump(mode="json")`` → ``json.dumps`` → ``json.loads`` →
``model_validate``. Runs alternate side by side; the median of ``--runs`` is reported in events/s.

    .venv/bin/python bench/bench_serde.py --n 20000 --runs 5

``measure(n, runs)`` returns the figures as a dict; ``python -m bench`` calls it once per run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from hub.contract.events import MinorSuspected
from hub.contract.serde import Serde


def sample_event() -> MinorSuspected:
    """A typical individual event (``polisen.minor_suspected``) with a subject."""
    now = datetime(2026, 8, 14, 13, 5, tzinfo=UTC)
    return MinorSuspected.model_validate(
        {
            "envelope": {
                "event_id": "7b0f7a64-3a55-4f1e-9f53-3f4f2a6f2b11",
                "event_type": "polisen.minor_suspected",
                "schema_version": 1,
                "source_agency": "polisen",
                "source_unit": "Polisområde Halland, LPO Laholm",
                "municipality_code": "1381",
                "area": "Centrum",
                "occurred_at": now,
                "recorded_at": now,
                "subject": {"personnummer": _pnr()},
                "data_class": "personal_statutory",
            },
            "payload": {
                "case_id": "5000-K123456-26",
                "offence_category": "theft",
                "offence_description": "Snatteri i butik",
                "guardian_notified": True,
            },
        }
    )


def _pnr() -> str:
    from hub.contract.personnummer import luhn_ok

    nine = "100315123"
    check = next(str(c) for c in range(10) if luhn_ok(nine + str(c)))
    return f"20{nine}{check}"


def run_avro(serde: Serde, event: MinorSuspected, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        serde.decode(serde.encode(event))
    return n / (time.perf_counter() - start)


def run_json(event: MinorSuspected, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        MinorSuspected.model_validate(json.loads(json.dumps(event.model_dump(mode="json"))))
    return n / (time.perf_counter() - start)


def measure(n: int, runs: int = 1) -> dict[str, float]:
    """Avro and JSON round trips per second (median of ``runs``), their ratio and bytes per event."""
    serde = Serde()
    event = sample_event()
    assert serde.decode(serde.encode(event)) == event
    assert MinorSuspected.model_validate(json.loads(json.dumps(event.model_dump(mode="json")))) == event
    sides: dict[str, Callable[[], float]] = {
        "avro": lambda: run_avro(serde, event, n),
        "json": lambda: run_json(event, n),
    }
    results: dict[str, list[float]] = {k: [] for k in sides}
    for side in sides.values():  # warm-up
        side()
    for _ in range(runs):
        for name, side in sides.items():
            results[name].append(side())
    avro = statistics.median(results["avro"])
    js = statistics.median(results["json"])
    return {
        "avro_eps": avro,
        "json_eps": js,
        "ratio": avro / js,
        "avro_bytes": len(serde.encode(event)),
        "json_bytes": len(json.dumps(event.model_dump(mode="json")).encode()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=20000, help="events per run")
    parser.add_argument("--runs", type=int, default=5, help="runs per side (median reported)")
    args = parser.parse_args()
    r = measure(args.n, args.runs)
    print(f"avro: {r['avro_eps']:,.0f} events/s ({r['avro_bytes']:.0f} bytes)")
    print(f"json: {r['json_eps']:,.0f} events/s ({r['json_bytes']:.0f} bytes)")
    print(f"ratio avro/json: {r['ratio']:.2f}")


if __name__ == "__main__":
    main()
