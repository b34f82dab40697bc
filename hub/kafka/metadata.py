"""Readiness of a Kafka cluster, checked the way clients see it: by a metadata request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from aiokafka.errors import KafkaError

from hub.deadline import Deadline
from hub.kafka import clients
from hub.kafka.clients import KafkaAccess


async def cluster_answers(access: KafkaAccess, timeout_s: float = 5.0) -> bool:
    """True when a broker answers an authenticated metadata request and reports at least one broker."""
    return bool(await broker_ids(access, timeout_s))


def wait_until_ready(
    access: KafkaAccess, deadline: Deadline, alive: Callable[[], bool] | None = None
) -> None:
    """Block until the cluster answers a metadata request, or raise when the deadline passes.

    ``alive``, when given, returns False once the process we started has died: then there is nothing to
    wait for and :class:`RuntimeError` is raised at once.
    """
    while not asyncio.run(cluster_answers(access, timeout_s=max(1.0, min(5.0, deadline.remaining)))):
        if alive is not None and not alive():
            raise RuntimeError("the broker process exited before it became ready")
        deadline.check()
        time.sleep(0.5)


async def broker_ids(access: KafkaAccess, timeout_s: float = 5.0) -> set[int]:
    """The node ids of the brokers the cluster's metadata lists now (empty when it does not answer)."""
    # A broker that is still starting refuses connections; that is the expected answer here, not an error.
    client = clients.client(access, request_timeout_ms=int(timeout_s * 1000))
    aiokafka_log = logging.getLogger("aiokafka")
    level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        metadata = await asyncio.wait_for(client.fetch_all_metadata(), timeout_s)
        return {b.nodeId for b in metadata.brokers()}
    except (KafkaError, OSError, TimeoutError):
        return set()
    finally:
        aiokafka_log.setLevel(level)
        with contextlib.suppress(Exception):
            await client.close()
