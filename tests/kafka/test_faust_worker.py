"""A faust worker with one agent and one table processes events end to end on the real broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from aiokafka.admin import NewTopic

from hub.kafka import clients
from hub.kafka.clients import KafkaAccess
from tests.kafka_env import security_env

REPO = Path(__file__).resolve().parents[2]


async def _create(kafka: KafkaAccess, *topics: str) -> None:
    admin = clients.admin(kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, num_partitions=2, replication_factor=1) for t in topics])
    finally:
        await admin.close()


async def _produce(kafka: KafkaAccess, topic: str, keys: list[bytes]) -> None:
    producer = clients.producer(kafka, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for key in keys:
            await producer.send(topic, key=key, value=b"x")
    finally:
        await producer.stop()


async def _latest_counts(kafka: KafkaAccess, topic: str, expect: dict[bytes, bytes]) -> dict[bytes, bytes]:
    consumer = clients.consumer(kafka, topic, auto_offset_reset="earliest")
    await consumer.start()
    latest: dict[bytes, bytes] = {}
    try:
        async with asyncio.timeout(90):
            while latest != expect:
                for messages in (await consumer.getmany(timeout_ms=1000)).values():
                    latest.update({m.key: m.value for m in messages if m.key and m.value})
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return latest


def test_faust_agent_and_table_count_per_key(
    kafka_bootstrap: str, kafka_admin: KafkaAccess, unique: Callable[[str], str], tmp_path: Path
) -> None:
    name = unique("probe")
    asyncio.run(_create(kafka_admin, f"{name}-in", f"{name}-out"))
    env = {**os.environ, **security_env(), "PROBE_BOOTSTRAP": kafka_bootstrap, "PROBE_NAME": name,
           "PROBE_DATADIR": str(tmp_path / "faust")}  # fmt: skip
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "faust", "-A", "tests.kafka.faust_probe_app", "worker", "-l", "info",
         "--without-web"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        keys = [b"halmstad", b"laholm", b"hylte"] * 10
        asyncio.run(_produce(kafka_admin, f"{name}-in", keys))
        got = asyncio.run(_latest_counts(kafka_admin, f"{name}-out", {k: b"10" for k in set(keys)}))
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        log.close()
    assert got == {b"halmstad": b"10", b"laholm": b"10", b"hylte": b"10"}, (
        (tmp_path / "worker.log").read_text()[-3000:]
    )
