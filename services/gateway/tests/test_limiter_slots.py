"""A replica under a burst keeps limiting: waiting behind its own requests is not a Redis outage."""

import asyncio
import secrets

import redis.asyncio as aioredis
from gateway_service.api.errors import ApiError
from gateway_service.edge.auth import Identity
from gateway_service.edge.limits import LimitConfig, Limiter
from gateway_service.edge.policy import Policy
from gateway_service.edge.ratelimit_redis import RedisLimitStore

CONFIG = LimitConfig(window_seconds=60, ip_rpm=0, lease_seconds=60, failure_mode="open")


def identity(rpm: int) -> Identity:
    return Identity(
        org_id="o-" + secrets.token_hex(4), key_id="k-" + secrets.token_hex(4), policy=Policy(key_rpm=rpm)
    )


async def outcomes(limiter: Limiter, who: Identity, n: int) -> list[str]:
    async def one() -> str:
        try:
            admission = await limiter.admit(who, None)
        except ApiError as err:
            return str(err.status)
        return "limited" if admission.store is not None else "unlimited"

    return await asyncio.gather(*(one() for _ in range(n)))


async def test_a_burst_larger_than_the_pool_stays_exact(redis):
    # Two connections and a pool wait far shorter than the burst takes: without the limiter's own
    # queue, requests would time out waiting for a connection and be admitted unlimited.
    pool = aioredis.BlockingConnectionPool.from_url(redis.url, max_connections=2, timeout=0.001)
    client = aioredis.Redis(connection_pool=pool)
    try:
        limiter = Limiter(RedisLimitStore(client), CONFIG, store_slots=2)
        results = await outcomes(limiter, identity(10), 60)
    finally:
        await client.aclose()
    assert results.count("limited") == 10
    assert results.count("429") == 50
    assert "unlimited" not in results


class FailingStore:
    """Redis going away while requests queue: the first call fails, once its slot is taken."""

    def __init__(self) -> None:
        self.calls = 0

    async def acquire(self, rules, member):
        self.calls += 1
        await asyncio.sleep(0.05)
        raise ConnectionError("redis went away")


async def test_requests_queued_behind_a_failure_take_the_policy_without_calling_redis():
    store = FailingStore()
    limiter = Limiter(store, CONFIG, store_slots=1)
    results = await outcomes(limiter, identity(10), 20)
    assert results == ["unlimited"] * 20
    assert store.calls == 1
