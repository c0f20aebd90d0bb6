"""Where limits, idempotency records and cached responses live: Redis when configured, else memory."""

from dataclasses import dataclass
from typing import Any

from .kv import KeyValueStore, MemoryStore, RedisStore
from .ratelimit import LimitStore, MemoryLimitStore
from .ratelimit_redis import RedisLimitStore
from .settings import GatewaySettings

REDIS_POOL_SIZE = 32
# The limiter's share of the pool; the rest serves idempotency records and the result cache.
LIMITER_SLOTS = 24
# Waiting for a pooled connection is queueing behind this replica's own requests, not Redis being
# slow, so it has its own, longer bound than a Redis command's deadline.
POOL_WAIT_SECONDS = 10.0


@dataclass
class SharedState:
    limits: LimitStore
    kv: KeyValueStore
    redis: Any = None

    @property
    def limiter_slots(self) -> int | None:
        """Concurrent limiter calls into Redis; None in memory, where there is nothing to wait for."""
        return LIMITER_SLOTS if self.redis is not None else None

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> "SharedState":
        url = settings.gateway_redis_url.get_secret_value()
        if not url:
            return cls(MemoryLimitStore(), MemoryStore())
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        timeout = settings.gateway_redis_timeout_seconds
        # No client-side retries: a slow or dead Redis must cost one bounded wait, then the
        # documented failure policy, not several timeouts in a row.
        # A small pool that requests queue for (a script runs in microseconds) instead of a burst
        # of requests each opening its own connection at once.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=REDIS_POOL_SIZE,
            timeout=max(timeout, POOL_WAIT_SECONDS),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        client = aioredis.Redis(connection_pool=pool)
        return cls(RedisLimitStore(client), RedisStore(client), client)

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
