"""Limits through a real gateway: the openai client's view, token reservations on streams, Redis outages."""

import asyncio
import time

import httpx
import openai
import pytest
from gateway_service.api.schemas import ChatCompletionRequest
from gateway_service.edge.limits import RETRY_STORE_AFTER_SECONDS
from gateway_service.edge.tokens import prompt_estimate, reservation
from llmsuite_common.clock import ManualClock

MESSAGES = [{"role": "user", "content": "count to ten"}]


def chat(model: str, **extra) -> dict:
    return {"model": model, "messages": MESSAGES, **extra}


async def test_openai_client_sees_rate_limit_error_and_its_retry_honours_retry_after(start_gateway):
    gw = await start_gateway(gateway_key_rpm=1, gateway_rate_limit_window_seconds=2)
    client = gw.openai()
    await client.chat.completions.create(model=gw.model, messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model=gw.model, messages=MESSAGES)
    assert info.value.code == "key_rpm"
    retry_after = int(info.value.response.headers["retry-after"])
    assert 1 <= retry_after <= 2
    assert info.value.response.headers["ratelimit-remaining"] == "0"

    retrying = gw.openai().with_options(max_retries=3)
    reply = await retrying.chat.completions.create(model=gw.model, messages=MESSAGES)
    assert reply.choices[0].message.content
    async with gw.client() as http:
        metrics = (await http.get("/metrics")).text
    # The retrying client was refused at least once and then got through on its own.
    assert 'llmsuite_gateway_rate_limited_total{cause="key_rpm"}' in metrics
    count = float(metrics.split('llmsuite_gateway_rate_limited_total{cause="key_rpm"} ')[1].split()[0])
    assert count >= 2


async def test_ip_limit_ignores_spoofed_forwarded_for(start_gateway):
    gw = await start_gateway(gateway_ip_rpm=3)
    async with gw.client() as http:
        statuses = [
            (
                await http.post(
                    "/v1/chat/completions", json=chat(gw.model), headers={"x-forwarded-for": f"10.0.0.{i}"}
                )
            ).status_code
            for i in range(6)
        ]
        assert statuses == [200, 200, 200, 429, 429, 429]
        refused = await http.post("/v1/chat/completions", json=chat(gw.model))
        assert refused.json()["error"]["code"] == "ip_rpm"


async def test_trusted_proxy_hop_selects_the_client_address(start_gateway):
    gw = await start_gateway(gateway_ip_rpm=1, gateway_trusted_proxy_hops=1)
    async with gw.client() as http:
        first = await http.post(
            "/v1/chat/completions", json=chat(gw.model), headers={"x-forwarded-for": "spoof, 10.1.1.1"}
        )
        other = await http.post(
            "/v1/chat/completions", json=chat(gw.model), headers={"x-forwarded-for": "10.1.1.2"}
        )
        again = await http.post(
            "/v1/chat/completions", json=chat(gw.model), headers={"x-forwarded-for": "x, 10.1.1.1"}
        )
    assert (first.status_code, other.status_code, again.status_code) == (200, 200, 429)


def _used_tokens(response: httpx.Response, body: dict, default_completion: int) -> int:
    """Tokens already counted in the window, from the RateLimit headers of an admitted request."""
    cost = reservation(ChatCompletionRequest.model_validate(body), default_completion)
    return int(response.headers["ratelimit-limit"]) - int(response.headers["ratelimit-remaining"]) - cost


async def test_token_limit_on_streams_reserves_up_front_and_counts_cancelled_streams(start_gateway, fake):
    limit, max_tokens = 200, 60
    gw = await start_gateway(gateway_key_tpm=limit, gateway_rate_limit_window_seconds=60)
    body = chat(gw.model, stream=True, max_tokens=max_tokens)
    reserved = reservation(ChatCompletionRequest.model_validate(body), 1024)
    assert 2 * reserved <= limit < 4 * reserved
    fake.script(*[{"chunks": 40, "delay": 0.05}] * 3)
    async with gw.client() as http:
        # Three slow streams at once: each reserves prompt + max_tokens, so the one that would
        # overshoot is refused before anything is generated.
        async with http.stream("POST", "/v1/chat/completions", json=body) as a:
            assert a.status_code == 200
            async with http.stream("POST", "/v1/chat/completions", json=body) as b:
                assert b.status_code == 200
                third = await http.post("/v1/chat/completions", json=body)
                assert third.status_code == 429
                assert third.json()["error"]["code"] == "key_tpm"
                assert int(third.headers["retry-after"]) >= 1
                # Read a little of each, then hang up mid-stream.
                for stream in (a, b):
                    lines = stream.aiter_lines()
                    seen = 0
                    while seen < 3:
                        if (await lines.__anext__()).startswith("data: {"):
                            seen += 1
        # Both were cancelled: what they sent is counted, the rest of the reservation is returned.
        small = chat(gw.model, max_tokens=5)
        used = None
        for _ in range(100):
            probe = await http.post("/v1/chat/completions", json=small)
            assert probe.status_code == 200, probe.text
            used = _used_tokens(probe, small, 1024)
            if used < 2 * reserved:
                break
            await asyncio.sleep(0.05)
    estimate = prompt_estimate(ChatCompletionRequest.model_validate(body))
    assert used is not None
    # At least prompt + the 3 chunks each client read; far less than the two reservations.
    assert 2 * (estimate + 3) <= used < 2 * reserved


async def test_concurrent_streams_limit(start_gateway, fake):
    gw = await start_gateway(gateway_key_max_streams=1)
    fake.script({"chunks": 20, "delay": 0.05}, {"chunks": 1})
    body = chat(gw.model, stream=True)
    async with gw.client() as http:
        async with http.stream("POST", "/v1/chat/completions", json=body) as first:
            assert first.status_code == 200
            second = await http.post("/v1/chat/completions", json=body)
            assert second.status_code == 429
            assert second.json()["error"]["code"] == "concurrency"
            assert second.headers["retry-after"] == "1"
        for _ in range(100):
            again = await http.post("/v1/chat/completions", json=body)
            if again.status_code == 200:
                break
            await asyncio.sleep(0.05)
        assert again.status_code == 200


async def _statuses(http: httpx.AsyncClient, model: str, n: int) -> list[int]:
    return [(await http.post("/v1/chat/completions", json=chat(model))).status_code for _ in range(n)]


async def test_redis_outage_follows_the_policy_and_recovers(start_gateway, redis):
    if not redis.private:
        pytest.skip("needs a private redis-server to stop")
    # Runs the pause after a store failure; the limits themselves live in Redis, on its time.
    clock = ManualClock()
    fail_open = await start_gateway(gateway_redis_url=redis.url, gateway_key_rpm=3, clock=clock)
    fail_closed = await start_gateway(
        gateway_redis_url=redis.url,
        gateway_key_rpm=3,
        gateway_rate_limit_failure_mode="closed",
        gateway_api_key="sk-gateway-test-key-2",
        clock=clock,
    )
    async with (
        fail_open.client() as open_http,
        fail_closed.client(api_key="sk-gateway-test-key-2") as closed_http,
    ):
        assert await _statuses(open_http, fail_open.model, 4) == [200, 200, 200, 429]
        redis.stop()
        try:
            started = time.monotonic()
            during = await asyncio.gather(
                *(open_http.post("/v1/chat/completions", json=chat(fail_open.model)) for _ in range(10))
            )
            assert [r.status_code for r in during] == [200] * 10
            assert time.monotonic() - started < 10  # bounded: one Redis deadline, not one per request
            refused = await closed_http.post("/v1/chat/completions", json=chat(fail_closed.model))
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "limiter_unavailable"
            # Without the store a duplicate cannot be ruled out: idempotent requests wait for it.
            keyed = await open_http.post(
                "/v1/chat/completions",
                json=chat(fail_open.model),
                headers={"idempotency-key": "during-outage"},
            )
            assert keyed.status_code == 503
            assert keyed.json()["error"]["code"] == "idempotency_unavailable"
            # The result cache is only an optimisation: it misses.
            cached = await open_http.post("/v1/chat/completions", json=chat(fail_open.model, temperature=0))
            assert cached.status_code == 200 and cached.headers["x-cache"] == "miss"
        finally:
            redis.start()
        # Recovery is automatic once the store answers again (an empty Redis: counts start over):
        # the first request after the pause uses it. start() returned once Redis answered a PING;
        # should a reconnect still fail, the pause starts over, so the clock moves once more.
        statuses: list[int] = []
        for _ in range(5):
            clock.advance(RETRY_STORE_AFTER_SECONDS)
            statuses = await _statuses(open_http, fail_open.model, 4)
            if statuses[-1] == 429:
                break
        assert statuses[-1] == 429
