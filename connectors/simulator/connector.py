"""``hub simulate``: publish simulated traffic at a steady rate through the connector base."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from connectors.base import Connector
from connectors.simulator.generate import Simulator, paced, replay_start
from hub import identity
from hub.contract.envelope import Event
from hub.settings import HubSettings


class SimulatorConnector(Connector):
    """Yields the simulator's events at ``rate`` per second for ``duration_s`` (deterministic under ``seed``).

    It publishes as every agency at once, so it has its own principal (``connector-simulator``, test series
    only); the ACLs let it write the agency topics and nothing else."""

    default_principal = identity.SIMULATOR

    def __init__(self, settings: HubSettings, *, rate: float, duration_s: float | None, seed: int,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(settings, name=f"simulator-{seed}", **kwargs)
        self.rate = rate
        self.duration_s = duration_s
        self.seed = seed

    async def run(self) -> AsyncIterator[Event]:
        simulator = Simulator(self.seed, replay_start(datetime.now(UTC), self.rate, self.duration_s))
        started = time.monotonic()
        for offset, event in paced(simulator.events(), self.rate, self.duration_s):
            if self.stopping:
                return
            delay = started + offset - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            yield event
