import time

from ..api.errors import ApiError


class Deadline:
    """One overall deadline per request; every backend call gets what is left of it."""

    def __init__(self, seconds: float) -> None:
        self.started = time.monotonic()
        self._end = self.started + seconds

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float:
        left = self._end - time.monotonic()
        if left <= 0:
            raise ApiError(504, "the request did not complete in time", code="timeout")
        return left
