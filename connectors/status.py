"""``/health``, ``/ready`` and ``/metrics`` of a long-running connector process (``hub connector ...``).

The connector runs as before (:meth:`connectors.base.Connector.execute`, which owns SIGTERM/SIGINT); this
small aiohttp app answers beside it on ``HUB_CONNECTOR__STATUS_PORT`` and stops when the connector has
stopped. ``/ready`` is 200 while the connector's producer is up and no stop was requested; ``/metrics``
is the process's Prometheus registry (``hub_connector_events_produced`` and the others of
:mod:`connectors.base`); ``/progress`` the connector's counters and durable checkpoint as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web

from connectors.base import Connector
from hub.serving import prometheus_response, serve_until_stopped


class StatusEndpointError(Exception):
    """The status endpoint could not listen (e.g. the port is in use); nothing was published."""


def status_app(connector: Connector) -> web.Application:
    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def ready(request: web.Request) -> web.Response:
        ok = connector.ready
        return web.Response(text="ready" if ok else "not ready", status=200 if ok else 503)

    async def metrics(request: web.Request) -> web.Response:
        return prometheus_response()

    async def progress(request: web.Request) -> web.Response:
        return web.json_response(connector.progress())

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/progress", progress)
    return app


async def execute_with_status(connector: Connector, host: str, port: int | None) -> dict[str, Any]:
    """:meth:`Connector.execute`, with the status endpoints on ``host:port`` while it runs (none if ``port``
    is None). Returns the connector's final progress."""
    if port is None:
        return await connector.execute()
    stop = asyncio.Event()
    listening = asyncio.Event()
    server = asyncio.create_task(serve_until_stopped(
        status_app(connector), host, port, name=f"connector {connector.name} status", shutdown_timeout=2.0,
        stop=stop, on_listening=lambda _: listening.set(), handle_signals=False,
    ))  # fmt: skip
    waiter = asyncio.ensure_future(listening.wait())
    try:
        await asyncio.wait({server, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if server.done():  # the port could not be bound: say so before publishing anything
            try:
                server.result()
            except OSError as exc:
                raise StatusEndpointError(f"the status endpoint cannot listen on {host}:{port}: "
                                          f"{exc.strerror or exc}") from None  # fmt: skip
        return await connector.execute()
    finally:
        stop.set()
        if not server.done():
            with contextlib.suppress(asyncio.CancelledError):
                await server
