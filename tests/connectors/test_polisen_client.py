"""PolisenClient against a real local aiohttp server; RateLimiter rules with a fake clock."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from connectors.polisen_feed.client import (
    DEFAULT_BASE_URL,
    DEFAULT_USER_AGENT,
    FeedFetchError,
    PolisenClient,
    RateLimiter,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
EVENTS_JSON = DATA / "polisen-events-sample.json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Recorder:
    def __init__(self) -> None:
        self.requests: list[tuple[float, str, dict[str, str], dict[str, str]]] = []

    def handler(self, body: bytes, status: int = 200) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            self.requests.append((time.monotonic(), request.path, dict(request.headers), dict(request.query)))
            return web.Response(body=body, status=status, content_type="application/json")

        return handle


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/api/events", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def _events_body() -> bytes:
    if not DATA.is_dir():
        pytest.skip(f"shared data folder not found at {DATA} (needs the `shared` folder next to the repo)")
    return EVENTS_JSON.read_bytes()


def fast_limiter() -> RateLimiter:
    return RateLimiter(min_interval_s=0.0)


def test_fetches_300_events_with_user_agent_and_location() -> None:
    body = _events_body()
    rec = Recorder()

    async def main() -> list[dict[str, Any]]:
        async with (
            serve(rec.handler(body)) as base,
            PolisenClient(
                base, user_agent="SamverkanHubTest/1 (+ops@example.org)", rate_limiter=fast_limiter()
            ) as client,
        ):
            assert client.events_url == base + "/api/events"
            return await client.fetch_events(locationname="Hallands län")

    events = asyncio.run(main())
    assert len(events) == 300
    assert events == json.loads(body)
    assert len(rec.requests) == 1
    _, path, headers, query = rec.requests[0]
    assert path == "/api/events"
    assert headers["User-Agent"] == "SamverkanHubTest/1 (+ops@example.org)"
    assert query == {"locationname": "Hallands län"}


def test_default_user_agent_and_no_query() -> None:
    body = _events_body()
    rec = Recorder()

    async def main() -> None:
        async with (
            serve(rec.handler(body)) as base,
            PolisenClient(base, rate_limiter=fast_limiter()) as client,
        ):
            await client.fetch_events()

    asyncio.run(main())
    _, _, headers, query = rec.requests[0]
    assert headers["User-Agent"] == DEFAULT_USER_AGENT == "SamverkanHub/0.1 (+contact)"
    assert query == {}


def test_real_min_interval_between_calls() -> None:
    rec = Recorder()

    async def main() -> None:
        limiter = RateLimiter(min_interval_s=0.3, max_per_hour=60)
        async with serve(rec.handler(b"[]")) as base, PolisenClient(base, rate_limiter=limiter) as client:
            for _ in range(3):
                assert await client.fetch_events() == []

    asyncio.run(main())
    times = [t for t, *_ in rec.requests]
    assert len(times) == 3
    assert all(b - a >= 0.25 for a, b in itertools.pairwise(times))


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"oops", 500, "HTTP 500"),
        (b"slow down", 429, "HTTP 429"),
        (b"<html>not json", 200, "not valid JSON"),
        (b'{"events": []}', 200, "expected a JSON array"),
        (b"[1, 2]", 200, "not an object"),
        (b"\xff\xfe[", 200, "not valid JSON"),
    ],
)
def test_bad_responses_raise_feed_fetch_error(body: bytes, status: int, message: str) -> None:
    rec = Recorder()

    async def main() -> None:
        async with (
            serve(rec.handler(body, status)) as base,
            PolisenClient(base, rate_limiter=fast_limiter()) as c,
        ):
            await c.fetch_events()

    with pytest.raises(FeedFetchError, match=message):
        asyncio.run(main())


def test_oversized_response_raises() -> None:
    rec = Recorder()

    async def main() -> None:
        async with (
            serve(rec.handler(b"[" + b" " * 2000 + b"]")) as base,
            PolisenClient(base, rate_limiter=fast_limiter(), max_bytes=1000) as client,
        ):
            await client.fetch_events()

    with pytest.raises(FeedFetchError, match="larger than"):
        asyncio.run(main())


def test_connection_refused_raises() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the request: nothing listens there

    async def main() -> None:
        async with PolisenClient(f"http://127.0.0.1:{port}", rate_limiter=fast_limiter(), timeout_s=5) as c:
            await c.fetch_events()

    with pytest.raises(FeedFetchError, match=r"GET http://127\.0\.0\.1"):
        asyncio.run(main())


# ---- RateLimiter with a fake clock ----


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _acquire_times(limiter: RateLimiter, clock: FakeClock, n: int, gap: float = 0.0) -> list[float]:
    async def main() -> list[float]:
        times = []
        for _ in range(n):
            await limiter.acquire()
            times.append(clock.now)
            clock.now += gap  # caller's own work between calls
        return times

    return asyncio.run(main())


def test_defaults_follow_the_api_rules() -> None:
    limiter = RateLimiter()
    assert limiter.min_interval_s == 10
    assert limiter.max_per_hour == 60
    client = PolisenClient()
    assert client.base_url == DEFAULT_BASE_URL == "https://polisen.se"
    assert client.events_url == "https://polisen.se/api/events"
    assert client.rate_limiter.min_interval_s == 10


def test_min_interval_enforced() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock, sleep=clock.sleep)
    times = _acquire_times(limiter, clock, 5, gap=3.0)
    assert times[0] == 1000.0  # first call goes at once
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g >= 10.0 for g in gaps)
    assert gaps == pytest.approx([10.0] * 4)  # and no longer than needed
    assert clock.sleeps == pytest.approx([7.0] * 4)


def test_no_wait_when_caller_is_slow() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock, sleep=clock.sleep)
    _acquire_times(limiter, clock, 3, gap=15.0)
    assert clock.sleeps == []


def test_at_most_60_per_rolling_hour() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock, sleep=clock.sleep)  # defaults: 10 s, 60/h
    times = _acquire_times(limiter, clock, 150)
    for i in range(len(times) - 60):
        assert times[i + 60] - times[i] >= 3600.0  # any 61 calls span at least an hour
    for i in range(len(times)):
        in_window = [t for t in times if times[i] <= t < times[i] + 3600.0]
        assert len(in_window) <= 60
    assert times[60] == pytest.approx(times[0] + 3600.0)
    assert all(b - a >= 10.0 for a, b in itertools.pairwise(times))


def test_hourly_limit_binds_with_tiny_min_interval() -> None:
    clock = FakeClock()
    limiter = RateLimiter(min_interval_s=0.01, max_per_hour=60, clock=clock, sleep=clock.sleep)
    times = _acquire_times(limiter, clock, 61)
    assert times[59] - times[0] == pytest.approx(59 * 0.01)
    assert times[60] == pytest.approx(times[0] + 3600.0)
    assert len(limiter.calls) == 60


def test_concurrent_acquires_are_serialised() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock, sleep=clock.sleep)

    async def main() -> list[float]:
        times: list[float] = []

        async def one() -> None:
            await limiter.acquire()
            times.append(clock.now)

        await asyncio.gather(*(one() for _ in range(5)))
        return times

    times = sorted(asyncio.run(main()))
    assert all(b - a >= 10.0 for a, b in itertools.pairwise(times))


def test_invalid_limiter_settings() -> None:
    with pytest.raises(ValueError, match="min_interval_s"):
        RateLimiter(min_interval_s=-1)
    with pytest.raises(ValueError, match="max_per_hour"):
        RateLimiter(max_per_hour=0)
    with pytest.raises(ValueError, match="user_agent"):
        PolisenClient(user_agent=" ")
