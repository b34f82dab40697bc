"""A minimal faust app (one agent, one table) that the platform test runs as a real worker process.

Configured by environment: PROBE_BOOTSTRAP, PROBE_NAME (app id and topic prefix), PROBE_DATADIR; it connects
to the secured session broker as its super user (``HUB_KAFKA__CA_FILE``, ``HUB_KAFKA__CREDENTIALS_DIR``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import faust

from hub.kafka import clients
from tests.kafka_env import access

NAME = os.environ.get("PROBE_NAME", "probe")
KAFKA = access(os.environ.get("PROBE_BOOTSTRAP", "127.0.0.1:9092"))

app = faust.App(
    NAME,
    broker=f"kafka://{KAFKA.bootstrap}",
    broker_credentials=clients.faust_credentials(KAFKA),
    store="memory://",
    datadir=os.environ["PROBE_DATADIR"],
    web_enabled=False,
    topic_partitions=2,
    topic_replication_factor=1,
)
source = app.topic(f"{NAME}-in", key_serializer="raw", value_serializer="raw")
sink = app.topic(f"{NAME}-out", key_serializer="raw", value_serializer="raw")
counts = app.Table("counts", default=int, partitions=2)


@app.agent(source)
async def count(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
    async for key, _value in stream.items():
        name = key.decode()
        counts[name] += 1
        await sink.send(key=key, value=str(counts[name]).encode())
        yield None
