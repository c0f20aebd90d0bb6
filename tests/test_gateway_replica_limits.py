"""Three gateway processes sharing one real Redis hold one exact limit between them."""

import asyncio
import itertools
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from llmsuite_testkit.processes import ProcessGroup, free_port, python_service

from services.gateway.tests.redis_server import RedisServer, redis_server
from tests.conftest import FAKE_MODEL, Suite
from tools.localsuite.suite import service_envs

LIMIT = 100
REQUESTS = 500
# Short enough to wait out in a test; the burst takes a few seconds, well inside it.
WINDOW_SECONDS = 20


@dataclass
class Replicas:
    urls: list[str]
    api_key: str


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def replicas(suite: Suite, shared_redis: RedisServer) -> Iterator[Replicas]:
    api_key = "sk-replicas-" + secrets.token_urlsafe(12)
    env = {
        **service_envs(suite.cfg)["gateway"],
        "GATEWAY_API_KEY": api_key,
        "GATEWAY_REDIS_URL": shared_redis.url,
        # Exactness is the point here, not Redis outages: a machine busy with other work must not
        # turn a slow reply into the fail-open policy (test_limits_endpoints covers that policy).
        "GATEWAY_REDIS_TIMEOUT_SECONDS": "5",
        "GATEWAY_KEY_RPM": str(LIMIT),
        "GATEWAY_RATE_LIMIT_WINDOW_SECONDS": str(WINDOW_SECONDS),
        "GATEWAY_DEFAULT_MODEL": FAKE_MODEL,
    }
    group = ProcessGroup()
    ports = [free_port() for _ in range(3)]
    try:
        group.start_many(
            [
                python_service("gateway", port, env, suite.log_dir / f"replica-{i}")
                for i, port in enumerate(ports)
            ],
            timeout=60,
        )
        yield Replicas([f"http://127.0.0.1:{p}" for p in ports], api_key)
    finally:
        group.stop()


def chat_body(text: str) -> dict:
    return {"model": FAKE_MODEL, "messages": [{"role": "user", "content": text}]}


async def test_limit_is_exact_across_three_replicas(replicas: Replicas):
    targets = itertools.cycle(replicas.urls)
    headers = {"authorization": f"Bearer {replicas.api_key}"}
    limits = httpx.Limits(max_connections=REQUESTS, max_keepalive_connections=REQUESTS)
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits, trust_env=False) as client:
        responses = await asyncio.gather(
            *(
                client.post(f"{next(targets)}/v1/chat/completions", json=chat_body(f"hello {i}"))
                for i in range(REQUESTS)
            )
        )
        statuses = [r.status_code for r in responses]
        assert statuses.count(200) == LIMIT, {s: statuses.count(s) for s in set(statuses)}
        assert statuses.count(429) == REQUESTS - LIMIT
        refused = [r for r in responses if r.status_code == 429]
        for r in refused:
            assert r.json()["error"]["code"] == "key_rpm"
            assert r.json()["error"]["type"] == "rate_limit_error"
            assert 1 <= int(r.headers["retry-after"]) <= WINDOW_SECONDS
            assert r.headers["ratelimit-limit"] == str(LIMIT)
            assert r.headers["ratelimit-remaining"] == "0"
        # Every replica refused some: the count really is shared.
        by_replica = {url: 0 for url in replicas.urls}
        for r in refused:
            by_replica[str(r.request.url).split("/v1/")[0]] += 1
        assert all(n > 0 for n in by_replica.values()), by_replica

        # Retry-After comes from the limiter's state: waiting it out is enough, on any replica.
        wait = int(refused[-1].headers["retry-after"])
        still = await client.post(f"{replicas.urls[0]}/v1/chat/completions", json=chat_body("too early"))
        assert still.status_code == 429
        await asyncio.sleep(int(still.headers["retry-after"]))
        later = await client.post(f"{replicas.urls[1]}/v1/chat/completions", json=chat_body("after waiting"))
        assert later.status_code == 200, later.text
        assert wait >= 1
