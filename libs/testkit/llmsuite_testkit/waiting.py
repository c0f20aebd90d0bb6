"""Waiting, boundedly, for something another task or process does after the caller has its answer."""

import asyncio
import inspect
from collections.abc import Awaitable, Callable


async def until(condition: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0) -> None:
    """Return once `condition()` holds; fail the test when it has not within `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)
