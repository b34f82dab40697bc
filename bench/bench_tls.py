"""What the trust boundary costs: the raw aiokafka passthrough on the secured broker (TLS + SASL/SCRAM-SHA-512 +
ACLs, as every hub cluster runs) beside the same passthrough on a plaintext broker of the same release on the
same machine, alternated within each run so both see the same load.

The plaintext broker (``LocalBroker(plaintext_for_benchmark=True)``) exists only for this comparison: it is
started here, in its own folder, and stopped at the end; nothing else ever runs without security.

    .venv/bin/python -m bench.bench_tls --events 20000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiokafka.admin import NewTopic

from bench.bench_worker import Encoded, encode_events, passthrough, produce_backlog
from bench.support import admin_access, bench_settings, provision
from hub.kafka import clients
from hub.kafka.admin import ensure_topics, hub_topics
from hub.kafka.clients import KafkaAccess
from hub.kafka.local import LocalBroker, free_port
from hub.topics import Topics


@contextmanager
def plaintext_broker(work: Path) -> Iterator[LocalBroker]:
    broker = LocalBroker(work / "kafka-plaintext", port=free_port(), controller_port=free_port(),
                         internal_port=free_port(), plaintext_for_benchmark=True)
    print(f"starting a plaintext Kafka broker (for the TLS-cost comparison only) in {broker.home} ...",
          file=sys.stderr, flush=True)
    broker.up()
    try:
        yield broker
    finally:
        broker.down()


async def _one(kafka: KafkaAccess, settings_ns: str, events: Encoded, *, secured: bool) -> float:
    """Passthrough events/s of ``events`` on a fresh namespace of ``kafka``'s cluster."""
    settings = bench_settings(kafka.bootstrap, settings_ns)
    if secured:
        kafka = await provision(settings)
    else:
        await ensure_topics(kafka, hub_topics(settings))
    topics = Topics(settings.topic_namespace)
    output = f"{settings.topic_namespace}passthrough-out"
    admin = clients.admin(kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(output, settings.topic_partitions, 1)])
    finally:
        await admin.close()
    await produce_backlog(kafka, topics, events)
    rate, _with_start = await passthrough(kafka, topics, settings.municipality_codes, output, len(events))
    return rate


async def compare(secured_bootstrap: str, plaintext: LocalBroker, events: Encoded,
                  secured_first: bool = False) -> dict[str, float]:  # fmt: skip
    """One run: the same events through both brokers, one after the other (the order alternates by run)."""
    tag = uuid.uuid4().hex[:6]
    warm = events[: max(1, len(events) // 4)]  # each broker warmed with a pass of its own, not measured
    await _one(admin_access(secured_bootstrap), f"tlsws{tag}.", warm, secured=True)
    await _one(plaintext.admin_access(), f"tlswp{tag}.", warm, secured=False)
    rates: dict[str, float] = {}
    order = ["secured", "plaintext"] if secured_first else ["plaintext", "secured"]
    for which in order:
        if which == "secured":
            rates[which] = await _one(admin_access(secured_bootstrap), f"tlss{tag}.", events, secured=True)
        else:
            rates[which] = await _one(plaintext.admin_access(), f"tlsp{tag}.", events, secured=False)
    rates["ratio"] = rates["secured"] / rates["plaintext"]
    return rates


def main(argv: list[str] | None = None) -> int:
    from bench.support import standalone_broker

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--bootstrap", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tmp:
        work = Path(tmp)
        with standalone_broker(args.bootstrap, work) as bootstrap, plaintext_broker(work) as plain:
            print(asyncio.run(compare(bootstrap, plain, encode_events(args.events))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
