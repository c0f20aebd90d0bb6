"""The vector store down: calls are refused at once, and served again as soon as it answers.

Left to itself, psycopg_pool makes an outage slow on both ends. Once the server is gone, a call
finds the pooled connection broken (the checkout check) and then waits the pool's whole timeout
(RETRIEVAL_POOL_TIMEOUT_SECONDS) for a new one; and the pool's reconnection backs off 1, 2, 4, 8 ...
seconds, so after a 10 s outage it may take 5 s more to connect, after a minute-long one half a
minute. Here the first connection failure (a broken connection at checkout, a failed statement,
no connection in time) starts one probe, a fresh connection every PROBE_SECONDS: while it fails,
calls are refused at once (UNAVAILABLE), those waiting for a connection included; when it
succeeds, the pool is replaced by a new one, which connects right away.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

PROBE_SECONDS = 0.5


class OutageWatch:
    def __init__(
        self,
        ping: Callable[[], Awaitable[None]],
        recovered: Callable[[], Awaitable[None]],
        *,
        probe_seconds: float = PROBE_SECONDS,
    ) -> None:
        # ping() raises when the database cannot be reached; recovered() runs once it can again.
        self._ping = ping
        self._recovered = recovered
        self._probe_seconds = probe_seconds
        self._probe: asyncio.Task[None] | None = None
        self._down = asyncio.Event()

    @property
    def down(self) -> bool:
        return self._down.is_set()

    async def went_down(self) -> None:
        """Returns once the database is found down (at once if it is)."""
        await self._down.wait()

    def suspect(self) -> None:
        """A connection failed: find out whether the database is down (one probe at a time)."""
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            try:
                await self._ping()
            except Exception as err:  # noqa: BLE001 - any failure to reach it is the database down
                if not self.down:
                    log.warning(
                        "vector store unreachable; refusing calls until it answers",
                        extra={"error": type(err).__name__},
                    )
                self._down.set()
                await asyncio.sleep(self._probe_seconds)
                continue
            if self.down:
                await self._recovered()
                self._down.clear()
                log.info("vector store answers again")
            return

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
            self._probe = None
