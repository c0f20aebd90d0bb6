"""Spend counters and limits live apart from the result cache, which may evict; never together."""

import asyncio
import secrets

import redis.asyncio as aioredis
from gateway_service.edge.kv import MemoryStore, RedisStore
from gateway_service.edge.shared_state import SharedState
from gateway_service.settings import GatewaySettings

URL = "/v1/chat/completions"
# One dollar per completion token: every answer has a cost, so it writes spend counters.
PRICES = {"fake-model": {"prompt_per_1m": 0, "completion_per_1m": 1_000_000}}


def db_url(redis, db: int) -> str:
    return redis.url.rsplit("/", 1)[0] + f"/{db}"


async def test_without_a_cache_redis_the_cache_stays_in_process(redis):
    shared = SharedState.from_settings(GatewaySettings(gateway_api_key="k", gateway_redis_url=redis.url))
    try:
        assert isinstance(shared.kv, RedisStore) and isinstance(shared.cache, MemoryStore)
    finally:
        await shared.close()
    shared = SharedState.from_settings(
        GatewaySettings(
            gateway_api_key="k", gateway_redis_url=redis.url, gateway_cache_redis_url=db_url(redis, 7)
        )
    )
    try:
        assert isinstance(shared.cache, RedisStore) and shared.cache_redis is not shared.redis
    finally:
        await shared.close()


async def test_cache_entries_never_land_beside_spend_counters(start_gateway, redis, fake):
    state_url, cache_url = db_url(redis, 3), db_url(redis, 4)
    gw = await start_gateway(
        gateway_redis_url=state_url,
        gateway_cache_redis_url=cache_url,
        gateway_prices=PRICES,
        gateway_org_id="spend-" + secrets.token_hex(4),
    )
    body = {"model": gw.model, "messages": [{"role": "user", "content": "count me"}], "temperature": 0}
    async with gw.client() as http:
        assert (await http.post(URL, json=body)).headers["x-cache"] == "miss"
        assert (await http.post(URL, json=body)).headers["x-cache"] == "hit"
    state, cache = aioredis.from_url(state_url), aioredis.from_url(cache_url)
    try:
        org = gw.settings.gateway_org_id
        spend: list = []
        for _ in range(100):
            spend = await state.keys(f"llmsuite:spend:org:{org}:*")
            if spend:
                break
            await asyncio.sleep(0.02)
        assert spend, "no spend counter in the state Redis"
        assert await state.keys("llmsuite:cache:*") == []
        assert await cache.keys("llmsuite:cache:*")
        assert await cache.keys("llmsuite:spend:*") == []
    finally:
        await state.aclose()
        await cache.aclose()
