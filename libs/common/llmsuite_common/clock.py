"""Time as a dependency: code that measures or waits on time takes a clock, so a test moves it.

A clock is any zero-argument callable returning seconds, `time.monotonic` in production. Tests
pass a `ManualClock` and call `advance()` instead of sleeping through a window, a TTL or a
breaker's open period.
"""

import time
from collections.abc import Callable

Clock = Callable[[], float]

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
