"""Responses API answers kept for later (`store: true`, the default, as OpenAI does).

A kept response is the Response object as it was answered and the conversation that led to it,
its own output included (chat messages: what a follow-up naming it as `previous_response_id`
continues). It belongs to the organization that made it: reads and deletes name the organization,
and another organization's id is as unknown as one never made.

With a database it lives in `gateway.responses` (migration 0004), written on the request path
(a follow-up may name it the moment the answer is in), and deleted after
GATEWAY_RESPONSE_RETENTION_DAYS by a background loop; rows past retention are never read even
before that loop reaches them. Without one it is kept in process, for one replica only, bounded
by GATEWAY_RESPONSE_MEMORY_MAX (the oldest go first).
"""

import asyncio
import logging
import random
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from ..api.errors import ApiError
from .storable_text import storable_row

log = logging.getLogger(__name__)

RETENTION_INTERVAL_SECONDS = 3600.0
RETENTION_BATCH = 5000


@dataclass(frozen=True)
class KeptResponse:
    id: str
    org_id: str
    key_id: str
    # The Response object as the client got it.
    response: dict[str, Any]
    # The chat messages that led to it (without its instructions), then its own output.
    conversation: list[dict[str, Any]]
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def unavailable() -> ApiError:
    return ApiError(503, "stored responses are unavailable; retry shortly", code="response_store_unavailable")


class ResponseStore(Protocol):
    async def put(self, kept: KeptResponse) -> None: ...

    async def get(self, org_id: str, response_id: str) -> KeptResponse | None: ...

    async def delete(self, org_id: str, response_id: str) -> bool: ...

    def start(self) -> None: ...

    async def stop(self) -> None: ...


class MemoryResponseStore:
    """In process: one replica only, the newest `max_entries`, none older than the retention."""

    def __init__(self, *, retention_days: int, max_entries: int) -> None:
        self._retention = timedelta(days=retention_days) if retention_days > 0 else None
        self._max = max_entries
        self._kept: OrderedDict[str, KeptResponse] = OrderedDict()

    async def put(self, kept: KeptResponse) -> None:
        self._kept[kept.id] = kept
        while len(self._kept) > self._max:
            self._kept.popitem(last=False)

    async def get(self, org_id: str, response_id: str) -> KeptResponse | None:
        kept = self._kept.get(response_id)
        if kept is None or kept.org_id != org_id:
            return None
        if self._retention is not None and kept.created_at < datetime.now(UTC) - self._retention:
            del self._kept[response_id]
            return None
        return kept

    async def delete(self, org_id: str, response_id: str) -> bool:
        if await self.get(org_id, response_id) is None:
            return False
        del self._kept[response_id]
        return True

    def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class PoolHolder(Protocol):
    """The gateway's Database: its pool exists once the app has started."""

    @property
    def pool(self) -> AsyncConnectionPool | None: ...


_INSERT = (
    "INSERT INTO gateway.responses (id, org_id, key_id, created_at, response, conversation) "
    "VALUES (%s, %s, %s, %s, %s, %s)"
)
_LIVE = "created_at > now() - make_interval(days => %s)"
_SELECT = (
    "SELECT id, org_id, key_id, created_at, response, conversation FROM gateway.responses "
    f"WHERE id = %s AND org_id = %s AND (%s = 0 OR {_LIVE})"
)
_DELETE = f"DELETE FROM gateway.responses WHERE id = %s AND org_id = %s AND (%s = 0 OR {_LIVE})"
# SKIP LOCKED: replicas deleting at the same time take different rows instead of queueing on locks.
_DELETE_EXPIRED = (
    "DELETE FROM gateway.responses WHERE id IN (SELECT id FROM gateway.responses "
    f"WHERE NOT {_LIVE} ORDER BY created_at LIMIT %s FOR UPDATE SKIP LOCKED)"
)


class PostgresResponseStore:
    """In `gateway.responses`. A failing database is 503 `response_store_unavailable`: a response
    the client asked to keep is never answered as if it had been kept."""

    def __init__(
        self,
        database: PoolHolder,
        *,
        retention_days: int,
        retention_interval_seconds: float = RETENTION_INTERVAL_SECONDS,
    ) -> None:
        self._db = database
        self._retention_days = retention_days
        self._interval = retention_interval_seconds
        self._task: asyncio.Task[None] | None = None

    def _pool(self) -> AsyncConnectionPool:
        pool = self._db.pool
        if pool is None:
            raise unavailable()
        return pool

    async def put(self, kept: KeptResponse) -> None:
        row, _ = storable_row(
            (
                kept.id,
                kept.org_id,
                kept.key_id,
                kept.created_at,
                Jsonb(kept.response),
                Jsonb(kept.conversation),
            )
        )
        try:
            async with self._pool().connection() as conn:
                await conn.execute(_INSERT, row)
        except ApiError:
            raise
        except Exception as err:
            log.warning("could not keep a response", extra={"error": type(err).__name__})
            raise unavailable() from None

    async def get(self, org_id: str, response_id: str) -> KeptResponse | None:
        days = self._retention_days
        try:
            async with self._pool().connection() as conn:
                cur = await conn.execute(_SELECT, (response_id, org_id, days, days))
                row = await cur.fetchone()
        except ApiError:
            raise
        except Exception as err:
            log.warning("could not read a kept response", extra={"error": type(err).__name__})
            raise unavailable() from None
        if row is None:
            return None
        ident, org, key, created, response, conversation = row
        return KeptResponse(ident, org, key, response, conversation, created)

    async def delete(self, org_id: str, response_id: str) -> bool:
        days = self._retention_days
        try:
            async with self._pool().connection() as conn:
                cur = await conn.execute(_DELETE, (response_id, org_id, days, days))
                return cur.rowcount > 0
        except ApiError:
            raise
        except Exception as err:
            log.warning("could not delete a kept response", extra={"error": type(err).__name__})
            raise unavailable() from None

    async def delete_expired(self, *, batch: int = RETENTION_BATCH) -> int:
        """Deletes responses past retention in batches (short transactions); returns how many."""
        if self._retention_days <= 0:
            return 0
        total = 0
        while True:
            async with self._pool().connection() as conn:
                cur = await conn.execute(_DELETE_EXPIRED, (self._retention_days, batch))
                deleted = cur.rowcount
            total += deleted
            if deleted < batch:
                return total

    def start(self) -> None:
        if self._retention_days > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._retention_loop())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _retention_loop(self) -> None:
        # Replicas start together; a random first delay spreads their deletes.
        await asyncio.sleep(random.uniform(1.0, min(60.0, self._interval)))
        while True:
            try:
                deleted = await self.delete_expired()
                if deleted:
                    log.info("responses past retention deleted", extra={"rows": deleted})
            except Exception:  # noqa: BLE001 - the next round tries again
                log.warning("response retention delete failed", exc_info=True)
            await asyncio.sleep(self._interval)
