"""Per-hop durations of one request, returned in the standard `Server-Timing` response header.

The access middleware opens one HopTimes per request in a context variable; the API key check,
the limits, the backend calls (through downstream's timed stubs) and the first generation read
add to it, each over the same await its span covers. The header is built when the response
starts, so a stream's header holds what was known before its first byte: a stream whose first
token comes after the first keep-alive has no `generation` entry.

    server-timing: auth;dur=0.012;desc="API key", limits;dur=0.030;desc="rate limits and budget", ...
"""

import time
from contextvars import ContextVar, Token

HEADER = b"server-timing"

# Entries in header order, with their descriptions (no commas: naive parsers split on them).
# `gateway` (the gateway's own time, backend waits excluded) comes from the access middleware's
# overhead measurement and always ends the header.
DESCRIPTIONS = {
    "auth": "API key",
    "limits": "rate limits and budget",
    "guardrails": "input guardrails",
    "retrieval": "retrieval search",
    "generation": "first token (whole answer if not streamed)",
}
GATEWAY = 'gateway;dur={:.3f};desc="gateway overhead"'


class HopTimes:
    __slots__ = ("seconds",)

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, hop: str, seconds: float) -> None:
        self.seconds[hop] = self.seconds.get(hop, 0.0) + seconds

    def header(self, gateway_seconds: float) -> bytes:
        seconds = self.seconds
        parts = [
            f'{hop};dur={seconds[hop] * 1000:.3f};desc="{desc}"'
            for hop, desc in DESCRIPTIONS.items()
            if hop in seconds
        ]
        parts.append(GATEWAY.format(gateway_seconds * 1000))
        return ", ".join(parts).encode()


_current: ContextVar[HopTimes | None] = ContextVar("server_timing", default=None)


def open_hops() -> Token[HopTimes | None]:
    return _current.set(HopTimes())


def close_hops(token: Token[HopTimes | None]) -> None:
    _current.reset(token)


def current() -> HopTimes | None:
    return _current.get()


def add(hop: str, seconds: float) -> None:
    hops = _current.get()
    if hops is not None:
        hops.add(hop, seconds)


class hop:  # noqa: N801 - used like a function: `with hop("limits"): ...`
    """Adds the time spent inside the block to `name`, however the block ends."""

    __slots__ = ("_name", "_started")

    def __init__(self, name: str) -> None:
        self._name = name
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        add(self._name, time.perf_counter() - self._started)
