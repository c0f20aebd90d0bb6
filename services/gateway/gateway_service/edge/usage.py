"""Usage and spend: recorded off the request path, enforced as a hard stop before the next request.

Each finished generation (and embeddings request) adds its cost to monthly spend counters (per key
and per organization) in the shared store, and queues its request-log row; the writer
(request_log_writer.py) stores queued rows in PostgreSQL in batches. A key or organization whose spend this month reached its budget gets
429 `budget` until the month ends (UTC) or the budget is raised.
"""

import asyncio
import calendar
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..api.errors import ApiError
from ..api.guardrails_summary import GuardrailsSummary
from ..api.rate_limited import rate_limited
from .auth import Identity
from .end_users import end_user_id, spend_scopes, user_scopes
from .kv import KeyValueStore
from .pricing import ModelPrice, cost_usd
from .request_log import (
    Outcome,
    RequestEntry,
    RequestPage,
    RequestQuery,
    entry_for,
    failed,
    list_requests,
    read_request,
)
from .request_log_writer import RequestLogWriter

log = logging.getLogger(__name__)

# Counters outlive their month by a day, then expire on their own.
_COUNTER_TTL_SECONDS = 32 * 86400


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
        writer: RequestLogWriter | None = None,
        drain_seconds: float = 20.0,
    ) -> None:
        self._counters = counters
        self._prices = prices
        self._db = database
        self.request_log = writer or RequestLogWriter(database, flush_seconds=1.0, queue_max=10_000)
        self._drain_seconds = drain_seconds
        self._background: set[asyncio.Task[None]] = set()

    # --- enforcement --------------------------------------------------------------------------------

    async def check_budget(
        self, identity: Identity, client_ip: str | None, *, end_user: str | None = None
    ) -> None:
        """429 `budget` once the month's spend of the key, its organization or a user the request
        speaks for (the key's own, the end user it names) reached its budget."""
        p = identity.policy
        budgets = [(f"key:{identity.key_id}", p.key_budget_usd), (f"org:{identity.org_id}", p.org_budget_usd)]
        budgets += [(scope, p.user_budget_usd) for _, scope in user_scopes(identity, end_user)]
        for scope, budget in budgets:
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
                    message=f"the {scope.split(':')[0].replace('_', ' ')} budget of {budget:.2f} USD for {month()} is spent "
                    f"({spent:.4f} USD)",
                )

    async def spent(self, scope: str) -> float:
        raw = await self._counters.get(f"spend:{scope}:{month()}")
        return float(raw) if raw else 0.0

    # --- recording ----------------------------------------------------------------------------------

    def check_capacity(self) -> None:
        """503 `overloaded` while the request log is at its bound (rows are never dropped)."""
        self.request_log.check_capacity()

    def record(
        self,
        identity: Identity,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        request_id: str,
        *,
        cancelled: bool = False,
        outcome: Outcome | None = None,
        messages: Sequence[Any] = (),
        guardrails: GuardrailsSummary | None = None,
        end_user: str = "",
    ) -> None:
        """Non-blocking: counters are updated and the row is queued in the background."""
        entry = entry_for(
            identity,
            model,
            prompt_tokens,
            completion_tokens,
            cost_usd(self._prices, model, prompt_tokens, completion_tokens),
            request_id,
            cancelled=cancelled,
            outcome=outcome,
            messages=messages,
            guardrails=guardrails,
            end_user=end_user,
        )
        task = asyncio.get_running_loop().create_task(self._count(entry))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        self.request_log.put(entry)

    def record_failure(
        self, identity: Identity, model: str, request_id: str, body: Any, deadline: Any, error: BaseException
    ) -> None:
        """Logs a request that passed admission and then failed (blocked, upstream error, timeout)."""
        self.record(identity, model, 0, 0, request_id, **failed(body, deadline, error))

    async def _count(self, event: RequestEntry) -> None:
        if event.cost_usd <= 0:
            return
        try:
            users = spend_scopes(event.org_id, event.user_id, event.end_user)
            for scope in (f"key:{event.key_id}", f"org:{event.org_id}", *users):
                await self._counters.add_float(
                    f"spend:{scope}:{month()}", event.cost_usd, _COUNTER_TTL_SECONDS
                )
        except Exception:
            log.warning("could not update spend counters", exc_info=True)

    def start(self) -> None:
        self.request_log.start()

    async def stop(self, timeout: float | None = None) -> None:
        """Writes what is queued before exit, within `timeout` (default: the drain seconds)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.request_log.stop(self._drain_seconds if timeout is None else timeout)

    async def flush(self) -> int:
        """Writes what is queued now; returns the number of rows."""
        return await self.request_log.flush()

    # --- reading ------------------------------------------------------------------------------------

    def _pool(self) -> Any:
        if self._db is None or self._db.pool is None:
            raise ApiError(
                501, "usage history needs a database: set GATEWAY_DATABASE_URL", code="not_configured"
            )
        return self._db.pool

    async def _flushed_pool(self) -> Any:
        pool = self._pool()
        # A row still queued is written first, so a request can be read back right after its response.
        try:
            await self.flush()
        except Exception:  # noqa: BLE001 - the writer retries; what is stored can still be read
            log.warning("request log flush before a read failed", exc_info=True)
        return pool

    async def request(self, identity: Identity, request_id: str) -> dict[str, Any]:
        return await read_request(await self._flushed_pool(), identity, request_id)

    async def requests(self, identity: Identity, query: RequestQuery) -> RequestPage:
        return await list_requests(await self._flushed_pool(), identity, query)

    async def summary(
        self,
        identity: Identity,
        *,
        org_id: str | None,
        since: datetime,
        end_user: str | None = None,
        until: datetime | None = None,
        by_day: bool = False,
    ) -> list[dict[str, Any]]:
        """Per key, model and route from `since` to `until` (exclusive), or with `by_day` per day (UTC),
        key and model; only the requests naming `end_user` when given."""
        pool = self._pool()
        org = org_id or identity.org_id
        if org != identity.org_id and not identity.superuser:
            raise ApiError(404, f"organization '{org}' not found", code="not_found", param="org_id")
        # Members see their own key only; admins their whole organization.
        only_key = identity.key_id if identity.role != "admin" else None
        hashed = end_user_id(end_user) if end_user is not None else None
        async with pool.connection() as conn:
            cur = await conn.execute(
                _BY_DAY if by_day else _BY_ROUTE,
                (org, since, until, until, only_key, only_key, hashed, hashed),
            )
            rows = await cur.fetchall()
        if by_day:
            return [{"day": r[0], "key_id": r[1], "model": r[2], **_totals(r[3:])} for r in rows]
        by_user = {"end_user": end_user} if end_user is not None else {}
        # Chat, embeddings and collection routes each count apart.
        return [
            {"org_id": org, **by_user, "key_id": r[0], "model": r[1], "route": r[2], **_totals(r[3:])}
            for r in rows
        ]


# Requests that failed (guardrail blocks, upstream errors) are logged with 0 tokens; they are
# counted apart.
_TOTALS = (
    "count(*) FILTER (WHERE status < 400), count(*) FILTER (WHERE status >= 400), "
    "sum(prompt_tokens), sum(completion_tokens), sum(cost_usd)"
)
_WHERE = (
    "FROM gateway.usage_events WHERE org_id = %s AND created_at >= %s "
    "AND (%s::timestamptz IS NULL OR created_at < %s) AND (%s::text IS NULL OR key_id = %s) "
    "AND (%s::text IS NULL OR end_user = %s) "
)
_BY_ROUTE = (
    f"SELECT key_id, model, route, {_TOTALS} {_WHERE}"
    "GROUP BY key_id, model, route ORDER BY key_id, model, route"
)
_BY_DAY = (
    f"SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, key_id, model, {_TOTALS} "
    f"{_WHERE}GROUP BY day, key_id, model ORDER BY day, key_id, model"
)


def _totals(r: Sequence[Any]) -> dict[str, Any]:
    return {
        "requests": r[0],
        "failed_requests": r[1],
        "prompt_tokens": int(r[2]),
        "completion_tokens": int(r[3]),
        "cost_usd": round(float(r[4]), 8),
    }
