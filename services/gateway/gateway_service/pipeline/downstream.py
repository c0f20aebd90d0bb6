"""Time a request spends waiting on backend services, so the gateway's own share can be reported.

The access middleware opens one tally per request; awaits on backends add to it (unary calls through
TimedStub, the Generate stream where the route waits on it). The tally is a list shared by reference,
so waits in child tasks count too. A wait named after a hop also counts toward that hop's
Server-Timing entry.
"""

import time
from collections.abc import Awaitable
from contextvars import ContextVar, Token
from typing import Any, TypeVar

from ..api import server_timing

T = TypeVar("T")

_waited: ContextVar[list[float] | None] = ContextVar("downstream_waited", default=None)


def open_tally() -> Token[list[float] | None]:
    return _waited.set([0.0])


def close_tally(token: Token[list[float] | None]) -> None:
    _waited.reset(token)


def waited_seconds() -> float:
    tally = _waited.get()
    return tally[0] if tally else 0.0


def _add(seconds: float) -> None:
    tally = _waited.get()
    if tally is not None:
        tally[0] += seconds


async def timed(awaitable: Awaitable[T], hop: str | None = None) -> T:
    started = time.perf_counter()
    try:
        return await awaitable
    finally:
        seconds = time.perf_counter() - started
        _add(seconds)
        if hop is not None:
            server_timing.add(hop, seconds)


async def _made(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return await method(*args, **kwargs)


class TimedStub:
    """A gRPC stub whose listed unary methods count as downstream waits of their hop; everything else
    passes through."""

    def __init__(self, stub: Any, unary: dict[str, str]) -> None:
        self._stub = stub
        self._unary = unary

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)
        hop = self._unary.get(name)
        if hop is None:
            return method
        # The call is made inside the timed wait (a coroutine starts when awaited), so the wait
        # covers its whole client span.
        return lambda *args, **kwargs: timed(_made(method, args, kwargs), hop)
