"""Noticing a client that went away while the gateway waits on a backend."""

import asyncio

from starlette.types import Receive

# nginx's convention for "client closed the request"; nobody receives it, but logs and metrics do.
CLIENT_CLOSED_REQUEST = 499


class ClientDisconnected(Exception):
    pass


async def _disconnected(receive: Receive) -> None:
    # The body was read already, so the only message left to come is http.disconnect.
    while (await receive())["type"] != "http.disconnect":
        pass


async def wait_unless_disconnected(receive: Receive, fut: asyncio.Future, timeout: float | None) -> bool:
    """Whether `fut` finished within `timeout`; never cancels it. Raises ClientDisconnected first if the
    client goes away."""
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        done, _ = await asyncio.wait({fut, watcher}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if fut in done:
        return True
    if watcher in done:
        raise ClientDisconnected
    return False
