"""Time as a dependency: code that measures or waits on time takes a clock, so a test moves it.

A clock is any zero-argument callable returning seconds, `time.monotonic` in production. Tests
pass a `ManualClock` and call `advance()` instead of sleeping through a window, a TTL or a
breaker's open period. Code that waits (a backoff, a Retry-After) takes a `Sleep` as well,
`asyncio.sleep` in production and the manual clock's `sleep` in tests, which moves that clock
instead of waiting.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

monotonic: Clock = time.monotonic


class ManualClock:
    """A clock that only moves when told to; starts at an arbitrary non-zero time."""

    def __init__(self, start: float = 1_000.0) -> None:
        self._now = start

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        """A `Sleep` on this clock: moves it by `seconds` at once, then lets other tasks run."""
        self.advance(max(seconds, 0.0))
        await asyncio.sleep(0)
