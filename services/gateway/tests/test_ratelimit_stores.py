"""The sliding-window limiter, in memory and in a real Redis: same rules, same answers.

Time passes through `elapse`: the in-process store runs on a ManualClock that it moves at once;
the Redis store reads Redis's own TIME, so there it is a real (sub-second) wait.
"""

import asyncio
import secrets

import pytest
import redis.asyncio as aioredis
from gateway_service.edge.ratelimit import CONCURRENCY, MemoryLimitStore, Rule, header_seconds
from gateway_service.edge.ratelimit_redis import RedisLimitStore
from llmsuite_common.clock import ManualClock, Sleep


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(params=["memory", "redis"])
async def store(request, clock):
    if request.param == "memory":
        yield MemoryLimitStore(clock)
        return
    server = request.getfixturevalue("redis")
    client = aioredis.from_url(server.url)
    yield RedisLimitStore(client)
    await client.aclose()


@pytest.fixture
def elapse(store, clock) -> Sleep:
    """Lets `seconds` pass for the store under test."""
    return clock.sleep if isinstance(store, MemoryLimitStore) else asyncio.sleep


def bucket() -> str:
    return "t:" + secrets.token_hex(6)


async def test_concurrent_burst_admits_exactly_the_limit(store):
    rule = Rule("key_rpm", bucket(), 10, 60)
    decisions = await asyncio.gather(*(store.acquire([rule], f"m{i}") for i in range(50)))
    allowed = [d for d in decisions if d.allowed]
    refused = [d for d in decisions if not d.allowed]
    assert len(allowed) == 10
    assert all(d.rule == rule and d.used == 10 and 0 < d.retry_after_seconds <= 60 for d in refused)
    assert sorted(d.remaining for d in allowed) == list(range(10))


async def test_waiting_retry_after_is_enough(store, elapse):
    rule = Rule("key_rpm", bucket(), 2, 0.5)
    assert (await store.acquire([rule], "a")).allowed
    assert (await store.acquire([rule], "b")).allowed
    refused = await store.acquire([rule], "c")
    assert not refused.allowed and 0 < refused.retry_after_seconds <= 0.5
    await elapse(refused.retry_after_seconds + 0.01)
    assert (await store.acquire([rule], "c")).allowed


async def test_window_slides_rather_than_resetting(store, elapse):
    rule = Rule("key_rpm", bucket(), 3, 0.6)
    for m in ("a", "b"):
        assert (await store.acquire([rule], m)).allowed
    await elapse(0.35)
    assert (await store.acquire([rule], "c")).allowed
    assert not (await store.acquire([rule], "d")).allowed
    await elapse(0.3)
    # a and b left the window, c is still in it.
    assert (await store.acquire([rule], "e")).allowed
    assert (await store.acquire([rule], "f")).allowed
    assert not (await store.acquire([rule], "g")).allowed


async def test_a_refusal_consumes_nothing_from_the_other_rules(store):
    loose = Rule("org_rpm", bucket(), 100, 60)
    tight = Rule("key_rpm", bucket(), 1, 60)
    assert (await store.acquire([loose, tight], "a")).allowed
    refused = await store.acquire([loose, tight], "b")
    assert not refused.allowed and refused.rule == tight
    ok = await store.acquire([loose], "c")
    assert ok.allowed and ok.used == 1


async def test_weighted_reservation_is_reconciled(store):
    name = bucket()
    reserve = Rule("key_tpm", name, 100, 60, cost=80)
    assert (await store.acquire([reserve], "a")).allowed
    assert not (await store.acquire([Rule("key_tpm", name, 100, 60, cost=30)], "b")).allowed
    await store.adjust(reserve, "a", 20)
    decision = await store.acquire([Rule("key_tpm", name, 100, 60, cost=30)], "b")
    assert decision.allowed and decision.used == 20


async def test_a_cost_above_the_limit_never_fits(store):
    decision = await store.acquire([Rule("key_tpm", bucket(), 10, 60, cost=11)], "a")
    assert not decision.allowed and decision.retry_after_seconds == 60


async def test_concurrency_leases(store):
    rule = Rule("concurrency", bucket(), 2, 60, kind=CONCURRENCY)
    assert (await store.acquire([rule], "a")).allowed
    assert (await store.acquire([rule], "b")).allowed
    refused = await store.acquire([rule], "c")
    assert not refused.allowed and refused.rule == rule and refused.used == 2
    await store.release(rule, "a")
    assert (await store.acquire([rule], "c")).allowed


async def test_a_lost_lease_expires(store, elapse):
    rule = Rule("concurrency", bucket(), 1, 0.3, kind=CONCURRENCY)
    assert (await store.acquire([rule], "a")).allowed
    assert not (await store.acquire([rule], "b")).allowed
    await elapse(0.35)
    assert (await store.acquire([rule], "b")).allowed


def test_header_seconds_round_up():
    assert header_seconds(0) == 1
    assert header_seconds(1.0) == 1
    assert header_seconds(1.01) == 2
    assert header_seconds(59.2) == 60
