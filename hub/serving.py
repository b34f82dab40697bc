"""Serving an aiohttp application until SIGTERM/SIGINT: the one loop `hub ingest`, `hub web` and the
connectors' status endpoints share; and the Prometheus answer of their ``/metrics``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)


def prometheus_response(registry: CollectorRegistry = REGISTRY) -> web.Response:
    """``registry`` in Prometheus' text format: the body of a ``/metrics`` answer."""
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def serve_until_stopped(
    app: web.Application, host: str, port: int, *, name: str, shutdown_timeout: float,
    stop: asyncio.Event | None = None, on_listening: Callable[[str], None] | None = None, detail: str = "",
    handle_signals: bool = True,
) -> None:  # fmt: skip
    """Listen on ``host:port`` (0: any free port) until SIGTERM/SIGINT or ``stop``; then stop accepting, let
    running requests finish within ``shutdown_timeout`` and clean up. ``on_listening`` gets the URL.
    Without ``handle_signals`` only ``stop`` ends it (the process's signals belong to someone else)."""
    stop = stop or asyncio.Event()
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT) if handle_signals else ():
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        await site.start()
        bound = next((int(a[1]) for a in runner.addresses if isinstance(a, tuple) and len(a) >= 2), 0)
        address = f"http://{host}:{bound}"
        log.info("%s listening on %s%s", name, address, f" ({detail})" if detail else "")
        if on_listening is not None:
            on_listening(address)
        await stop.wait()
        log.info("%s stopping", name)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
