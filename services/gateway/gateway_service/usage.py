"""Usage and spend: recorded off the request path, enforced as a hard stop before the next request.

Each finished generation adds its cost to monthly spend counters (per key and per organization) in
the shared store, and queues a usage row; a background task writes queued rows to PostgreSQL in
batches. A key or organization whose spend this month reached its budget gets 429 `budget` until the
month ends (UTC) or the budget is raised.
"""

import asyncio
import calendar
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .auth import Identity
from .errors import ApiError
from .kv import KeyValueStore
from .pricing import ModelPrice, cost_usd
from .rate_limited import rate_limited

log = logging.getLogger(__name__)

# Counters outlive their month by a day, then expire on their own.
_COUNTER_TTL_SECONDS = 32 * 86400
MAX_QUEUED = 100_000


@dataclass(frozen=True)
class UsageEvent:
    org_id: str
    key_id: str
    user_id: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    request_id: str
    cancelled: bool


def month(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m")


def seconds_to_month_end(now: datetime | None = None) -> float:
    now = now or datetime.now(UTC)
    days = calendar.monthrange(now.year, now.month)[1]
    end = now.replace(day=days, hour=23, minute=59, second=59, microsecond=0)
    return max(1.0, (end - now).total_seconds() + 1)


class UsageRecorder:
    def __init__(
        self,
        counters: KeyValueStore,
        prices: dict[str, ModelPrice],
        *,
        database: Any = None,
        flush_seconds: float = 1.0,
        batch_size: int = 500,
    ) -> None:
        self._counters = counters
        self._prices = prices
        self._db = database
        self._flush_seconds = flush_seconds
        self._batch_size = batch_size
        self._queue: asyncio.Queue[UsageEvent] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    # --- enforcement --------------------------------------------------------------------------------

    async def check_budget(self, identity: Identity, client_ip: str | None) -> None:
        p = identity.policy
        for scope, budget in (
            (f"key:{identity.key_id}", p.key_budget_usd),
            (f"org:{identity.org_id}", p.org_budget_usd),
        ):
            if budget <= 0:
                continue
            try:
                raw = await self._counters.get(f"spend:{scope}:{month()}")
            except Exception as err:  # noqa: BLE001 - same policy as the limiter: a store outage admits
                log.warning("spend counters unavailable", extra={"error": type(err).__name__})
                return
            spent = float(raw) if raw else 0.0
            if spent >= budget:
                raise rate_limited(
                    "budget",
                    identity=identity,
                    client_ip=client_ip,
                    retry_after_seconds=seconds_to_month_end(),
                    message=f"the {scope.split(':')[0]} budget of {budget:.2f} USD for {month()} is spent "
                    f"({spent:.4f} USD)",
                )

    async def spent(self, scope: str) -> float:
        raw = await self._counters.get(f"spend:{scope}:{month()}")
        return float(raw) if raw else 0.0

    # --- recording ----------------------------------------------------------------------------------

    def record(
        self,
        identity: Identity,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        request_id: str,
        *,
        cancelled: bool = False,
    ) -> None:
        """Non-blocking: counters are updated and the row is queued in the background."""
        event = UsageEvent(
            identity.org_id,
            identity.key_id,
            identity.user_id,
            model,
            prompt_tokens,
            completion_tokens,
            cost_usd(self._prices, model, prompt_tokens, completion_tokens),
            request_id,
            cancelled,
        )
        task = asyncio.get_running_loop().create_task(self._count(event))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        if self._queue is not None:
            if self._queue.qsize() < MAX_QUEUED:
                self._queue.put_nowait(event)
            else:
                log.warning("usage queue full; dropping a usage row", extra={"key_id": event.key_id})

    async def _count(self, event: UsageEvent) -> None:
        if event.cost_usd <= 0:
            return
        try:
            for scope in (f"key:{event.key_id}", f"org:{event.org_id}"):
                await self._counters.add_float(
                    f"spend:{scope}:{month()}", event.cost_usd, _COUNTER_TTL_SECONDS
                )
        except Exception:
            log.warning("could not update spend counters", exc_info=True)

    # --- the batch writer ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._db is None:
            return
        self._queue = asyncio.Queue()
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def stop(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        await self.flush()

    async def flush(self) -> int:
        """Writes what is queued now; returns the number of rows."""
        if self._queue is None or self._db is None or self._db.pool is None:
            return 0
        batch: list[UsageEvent] = []
        while not self._queue.empty() and len(batch) < self._batch_size:
            batch.append(self._queue.get_nowait())
        if not batch:
            return 0
        async with self._db.pool.connection() as conn, conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO gateway.usage_events (org_id, key_id, user_id, model, prompt_tokens, completion_tokens, "
                "cost_usd, request_id, cancelled) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        e.org_id,
                        e.key_id,
                        e.user_id or None,
                        e.model,
                        e.prompt_tokens,
                        e.completion_tokens,
                        e.cost_usd,
                        e.request_id,
                        e.cancelled,
                    )
                    for e in batch
                ],
            )
        return len(batch)

    async def _write_loop(self) -> None:
        assert self._queue is not None
        while True:
            await asyncio.sleep(self._flush_seconds)
            started = time.perf_counter()
            try:
                while await self.flush() == self._batch_size:
                    pass
            except Exception:
                log.warning("usage batch write failed", exc_info=True)
            log.debug("usage flushed", extra={"seconds": round(time.perf_counter() - started, 4)})

    # --- reading ------------------------------------------------------------------------------------

    async def summary(
        self, identity: Identity, *, org_id: str | None, since: datetime
    ) -> list[dict[str, Any]]:
        if self._db is None or self._db.pool is None:
            raise ApiError(
                501, "usage history needs a database: set GATEWAY_DATABASE_URL", code="not_configured"
            )
        org = org_id or identity.org_id
        if org != identity.org_id and not identity.superuser:
            raise ApiError(404, f"organization '{org}' not found", code="not_found", param="org_id")
        # Members see their own key only; admins their whole organization.
        only_key = identity.key_id if identity.role != "admin" else None
        async with self._db.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT key_id, model, count(*), sum(prompt_tokens), sum(completion_tokens), sum(cost_usd) "
                "FROM gateway.usage_events WHERE org_id = %s AND created_at >= %s AND (%s::text IS NULL OR key_id = %s) "
                "GROUP BY key_id, model ORDER BY key_id, model",
                (org, since, only_key, only_key),
            )
            rows = await cur.fetchall()
        return [
            {
                "org_id": org,
                "key_id": r[0],
                "model": r[1],
                "requests": r[2],
                "prompt_tokens": int(r[3]),
                "completion_tokens": int(r[4]),
                "cost_usd": round(float(r[5]), 8),
            }
            for r in rows
        ]
