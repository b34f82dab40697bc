"""HTTP client for the police's open events feed (``GET <base_url>/api/events``).

The API asks clients to send a User-Agent, to wait at least 10 s between calls and to make at most
60 calls per hour. :class:`RateLimiter` enforces both (rolling one-hour window) with an injectable clock
and sleep so tests can check the rules without waiting.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Final

import aiohttp

DEFAULT_BASE_URL: Final = "https://polisen.se"
DEFAULT_USER_AGENT: Final = "SamverkanHub/0.1 (+contact)"
EVENTS_PATH: Final = "/api/events"
DEFAULT_MAX_BYTES: Final = 16 * 1024 * 1024


class FeedFetchError(RuntimeError):
    """Fetching the feed failed: network error, non-200 status, oversized or invalid JSON response."""


class RateLimiter:
    """At least ``min_interval_s`` between calls and at most ``max_per_hour`` calls per rolling window.

    ``clock`` returns monotonic seconds; ``sleep`` is awaited for the remaining wait. A call is counted
    when :meth:`acquire` returns (failed requests count too, as the API sees them).
    """

    def __init__(
        self,
        min_interval_s: float = 10.0,
        max_per_hour: int = 60,
        *,
        window_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if min_interval_s < 0:
            raise ValueError("min_interval_s must be >= 0")
        if max_per_hour < 1:
            raise ValueError("max_per_hour must be >= 1")
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        self.min_interval_s = min_interval_s
        self.max_per_hour = max_per_hour
        self.window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._calls: deque[float] = deque()
        self._lock = asyncio.Lock()

    @property
    def calls(self) -> tuple[float, ...]:
        """Clock times of the calls still inside the rolling window."""
        self._expire(self._clock())
        return tuple(self._calls)

    def _expire(self, now: float) -> None:
        while self._calls and self._calls[0] <= now - self.window_s:
            self._calls.popleft()

    def delay(self) -> float:
        """Seconds to wait before the next call is allowed (0 when it may go now)."""
        now = self._clock()
        self._expire(now)
        wait = 0.0
        if self._calls:
            wait = max(wait, self._calls[-1] + self.min_interval_s - now)
        if len(self._calls) >= self.max_per_hour:
            wait = max(wait, self._calls[-self.max_per_hour] + self.window_s - now)
        return max(wait, 0.0)

    async def acquire(self) -> None:
        """Wait until a call is allowed, then record it."""
        async with self._lock:
            while (wait := self.delay()) > 0:
                await self._sleep(wait)
            self._calls.append(self._clock())


class PolisenClient:
    """Fetches raw events. Use as ``async with PolisenClient() as c: events = await c.fetch_events()``."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        user_agent: str = DEFAULT_USER_AGENT,
        rate_limiter: RateLimiter | None = None,
        timeout_s: float = 30.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if not user_agent.strip():
            raise ValueError("user_agent must not be empty (the API asks for one)")
        self.base_url = base_url.rstrip("/")
        self.user_agent = user_agent
        self.rate_limiter = rate_limiter if rate_limiter is not None else RateLimiter()
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.max_bytes = max_bytes
        self._session = session
        self._owns_session = session is None

    @property
    def events_url(self) -> str:
        return self.base_url + EVENTS_PATH

    async def __aenter__(self) -> PolisenClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def fetch_events(self, locationname: str | None = None) -> list[dict[str, Any]]:
        """GET ``/api/events`` (optionally ``?locationname=…``) and return the raw event objects."""
        params = {"locationname": locationname} if locationname else None
        headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
        await self.rate_limiter.acquire()
        url = self.events_url
        try:
            async with self._get_session().get(
                url, params=params, headers=headers, timeout=self.timeout
            ) as resp:
                body = await resp.content.read(self.max_bytes + 1)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FeedFetchError(f"GET {url}: {type(exc).__name__}: {exc}") from exc
        if status != 200:
            snippet = body[:200].decode("utf-8", "replace")
            raise FeedFetchError(f"GET {url}: HTTP {status}: {snippet!r}")
        if len(body) > self.max_bytes:
            raise FeedFetchError(f"GET {url}: response larger than {self.max_bytes} bytes")
        try:
            data = json.loads(body)
        except ValueError as exc:  # includes UnicodeDecodeError
            raise FeedFetchError(f"GET {url}: response is not valid JSON: {exc}") from exc
        if not isinstance(data, list):
            raise FeedFetchError(f"GET {url}: expected a JSON array, got {type(data).__name__}")
        for i, item in enumerate(data):
            if not isinstance(item, dict):
                raise FeedFetchError(f"GET {url}: element {i} is {type(item).__name__}, not an object")
        return data
