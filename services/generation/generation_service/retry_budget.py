"""The retry budget and backoff.

The budget is Finagle's RetryBudget (Envoy's retry budget counts the same way, over the requests
open now instead of a window): every request deposits `percent` % of a retry, every retry
withdraws one, over a sliding `window` of seconds, plus a reserve of `min_per_second` retries per
second of the window so that a quiet service can still retry its occasional failure. Retries can
therefore add at most `percent` % (plus the reserve) to the upstream load, whatever the failure
rate: a partial failure is retried up to that share, and an upstream that fails every request
gets that much more, no more (its circuit breaker stops even that). Written here because it is a
few dozen lines and no library offers it for asyncio without a client framework around it.
"""

import random
from collections import deque

from llmsuite_common.clock import Clock, monotonic

# The window is counted in this many slots; a deposit leaves the window between
# window * (1 - 1/SLOTS) and window seconds after it was made.
SLOTS = 10


class RetryBudget:
    def __init__(
        self, *, percent: float, window: float, min_per_second: float, clock: Clock = monotonic
    ) -> None:
        self._share = percent / 100
        self._reserve = min_per_second * window
        self._slot_seconds = window / SLOTS
        self._clock = clock
        # [slot number, requests, retries] for the slots still inside the window, oldest first.
        self._slots: deque[list[int]] = deque()
        self._requests = 0
        self._retries = 0

    def _current(self) -> list[int]:
        now = int(self._clock() // self._slot_seconds)
        while self._slots and self._slots[0][0] <= now - SLOTS:
            _, requests, retries = self._slots.popleft()
            self._requests -= requests
            self._retries -= retries
        if not self._slots or self._slots[-1][0] != now:
            self._slots.append([now, 0, 0])
        return self._slots[-1]

    @property
    def available(self) -> float:
        """Retries the budget would allow now (may be fractional or below 1)."""
        self._current()
        return self._requests * self._share + self._reserve - self._retries

    def request(self) -> None:
        """A new request: its first attempt, which deposits `percent` % of a retry."""
        self._current()[1] += 1
        self._requests += 1

    def try_retry(self) -> bool:
        """Takes one retry from the budget, or refuses when less than one is left."""
        slot = self._current()
        if self._requests * self._share + self._reserve - self._retries < 1:
            return False
        slot[2] += 1
        self._retries += 1
        return True


def full_jitter(retry: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `retry` (0-based): uniform in [0, min(cap, base * 2**retry)].

    "Full jitter" from the AWS Architecture Blog's backoff study: it spreads
    synchronized clients best.
    """
    ceiling = min(cap, base * (2 ** min(retry, 30)))
    return (rng or random).uniform(0, ceiling)
