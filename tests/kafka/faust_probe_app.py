"""A minimal faust app (one agent, one table) that the platform test runs as a real worker process.

Configured by environment: PROBE_BOOTSTRAP, PROBE_NAME (app id and topic prefix), PROBE_DATADIR.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import faust

NAME = os.environ.get("PROBE_NAME", "probe")

app = faust.App(
    NAME,
    broker=f"kafka://{os.environ.get('PROBE_BOOTSTRAP', '127.0.0.1:9092')}",
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
