"""One idiom for every wait: a deadline that raises when it has passed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class DeadlineExceeded(TimeoutError):
    """Raised when a :class:`Deadline` has passed; the message says what was awaited."""


class Deadline:
    """A point in monotonic time, with helpers to wait for a condition until then."""

    def __init__(self, seconds: float, what: str) -> None:
        self.what = what
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    @property
    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self._end

    def check(self) -> None:
        if self.expired:
            raise DeadlineExceeded(f"timed out after {self.seconds:g} s waiting for {self.what}")

    def wait_for(self, condition: Callable[[], bool], interval: float = 0.2) -> None:
        """Block until ``condition()`` is true, or raise :class:`DeadlineExceeded`."""
        while not condition():
            self.check()
            time.sleep(min(interval, self.remaining) or interval)

    async def async_wait_for(
        self, condition: Callable[[], Awaitable[bool]], interval: float = 0.2
    ) -> None:
        """Await until ``await condition()`` is true, or raise :class:`DeadlineExceeded`."""
        while not await condition():
            self.check()
            await asyncio.sleep(min(interval, self.remaining) or interval)
