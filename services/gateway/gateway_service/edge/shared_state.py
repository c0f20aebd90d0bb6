"""Where limits, spend counters, idempotency records and cached responses live.

Two stores, because they must fail differently under memory pressure. Limits, spend counters and
idempotency records are state: losing one re-opens a spent budget or replays a request, so their
Redis (GATEWAY_REDIS_URL) runs with `maxmemory-policy noeviction` and refuses writes rather than
drop anything. The result cache is disposable and grows with traffic: sharing that Redis, it would
either fill it (noeviction: limit writes start failing) or, under an evicting policy, push spend
counters out. So the cache lives in its own Redis (GATEWAY_CACHE_REDIS_URL, meant for
`allkeys-lru` with a maxmemory), or in a bounded in-process LRU per replica when none is set; a
separate database number of the same Redis would not do, eviction being per instance.
"""

from dataclasses import dataclass, field
from typing import Any

from llmsuite_common.clock import Clock, monotonic

from ..settings import GatewaySettings
from .kv import KeyValueStore, MemoryStore, RedisStore
from .ratelimit import LimitStore, MemoryLimitStore
from .ratelimit_redis import RedisLimitStore

REDIS_POOL_SIZE = 32
# The limiter's share of the pool; the rest serves idempotency records and spend counters.
LIMITER_SLOTS = 24
# Waiting for a pooled connection is queueing behind this replica's own requests, not Redis being
# slow, so it has its own, longer bound than a Redis command's deadline.
POOL_WAIT_SECONDS = 10.0


@dataclass
class SharedState:
    limits: LimitStore
    # Idempotency records and spend counters: never evicted.
    kv: KeyValueStore
    redis: Any = None
    # The result cache: may lose entries at any time.
    cache: KeyValueStore = field(default_factory=MemoryStore)
    cache_redis: Any = None

    @property
    def limiter_slots(self) -> int | None:
        """Concurrent limiter calls into Redis; None in memory, where there is nothing to wait for."""
        return LIMITER_SLOTS if self.redis is not None else None

    @classmethod
    def from_settings(cls, settings: GatewaySettings, *, clock: Clock = monotonic) -> "SharedState":
        """The stores the settings name; `clock` runs the in-process ones (Redis keeps its own time)."""
        timeout = settings.gateway_redis_timeout_seconds
        cache_url = settings.gateway_cache_redis_url.get_secret_value()
        cache_redis = _redis_client(cache_url, timeout) if cache_url else None
        cache: KeyValueStore = (
            RedisStore(cache_redis) if cache_redis is not None else MemoryStore(clock=clock)
        )
        url = settings.gateway_redis_url.get_secret_value()
        if not url:
            return cls(
                MemoryLimitStore(clock), MemoryStore(clock=clock), cache=cache, cache_redis=cache_redis
            )
        client = _redis_client(url, timeout)
        return cls(RedisLimitStore(client), RedisStore(client), client, cache=cache, cache_redis=cache_redis)

    async def close(self) -> None:
        for client in (self.redis, self.cache_redis):
            if client is not None:
                await client.aclose()


def _redis_client(url: str, timeout: float) -> Any:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    # No client-side retries of a slow or unanswered command: a slow or dead Redis must cost one
    # bounded wait, then the documented failure policy, not several timeouts in a row. A pooled
    # connection the server closed (Redis restarted: every connection opened before fails its
    # next command at once) is retried once, on a new connection: without it a restarted Redis
    # would fail the first command on each of them and put the limiter into its failure mode.
    # A small pool that requests queue for (a script runs in microseconds) instead of a burst
    # of requests each opening its own connection at once.
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=REDIS_POOL_SIZE,
        timeout=max(timeout, POOL_WAIT_SECONDS),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
    return aioredis.Redis(connection_pool=pool)
