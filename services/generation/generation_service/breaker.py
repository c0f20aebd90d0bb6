"""A circuit breaker per upstream deployment.

Closed: requests flow; `failures` consecutive failures open it. Open: requests
fail fast (the deployment is skipped) for `open_seconds`. Then half-open: one
probe request goes through; its success closes the breaker, its failure opens it
again. A probe that ends without a verdict (the caller cancelled) frees the slot.
"""

from enum import StrEnum

from llmsuite_common.clock import Clock, monotonic


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(self, *, failures: int, open_seconds: float, clock: Clock = monotonic) -> None:
        self._threshold = failures
        self._open_seconds = open_seconds
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self._open_seconds:
            return BreakerState.HALF_OPEN
        return self._state

    def seconds_until_probe(self) -> float:
        """While open: seconds until the half-open probe may go; else 0."""
        if self._state is BreakerState.OPEN:
            return max(0.0, self._opened_at + self._open_seconds - self._clock())
        return 0.0

    def available(self) -> bool:
        """Whether `acquire()` would let a request through now (without taking the probe slot)."""
        state = self.state
        return state is BreakerState.CLOSED or (state is BreakerState.HALF_OPEN and not self._probing)

    def acquire(self) -> bool:
        """Lets one request through, or refuses; in half-open, only the single probe passes."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._state = BreakerState.HALF_OPEN
            self._probing = True
            return True
        return False

    def success(self) -> None:
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._probing = False

    def failure(self) -> None:
        self._consecutive += 1
        if self._state is BreakerState.HALF_OPEN or self._consecutive >= self._threshold:
            self._state = BreakerState.OPEN
            self._opened_at = self._clock()
        self._probing = False

    def abandon(self) -> None:
        """The request ended with no verdict on the upstream's health."""
        self._probing = False
