"""Idempotency-Key with Stripe semantics, against a real gateway and the scripted upstream."""

import asyncio

import pytest
from gateway_service.api.errors import ApiError
from gateway_service.edge.idempotency import Claim, Idempotency, body_fingerprint
from gateway_service.edge.kv import MemoryStore
from llmsuite_common.clock import ManualClock

URL = "/v1/chat/completions"


def chat(model: str, text: str = "say something", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def test_fingerprint_ignores_key_order():
    assert body_fingerprint({"a": 1, "b": [1, 2]}) == body_fingerprint({"b": [1, 2], "a": 1})
    assert body_fingerprint({"a": 1}) != body_fingerprint({"a": 2})


async def test_same_key_same_body_replays_byte_for_byte_with_one_upstream_call(gateway, fake):
    async with gateway.client() as http:
        first = await http.post(URL, json=chat(gateway.model), headers={"idempotency-key": "k-1"})
        second = await http.post(URL, json=chat(gateway.model), headers={"idempotency-key": "k-1"})
    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    assert second.headers["idempotency-replayed"] == "true"
    assert "idempotency-replayed" not in first.headers
    assert len(fake.requests()) == 1


async def test_same_key_different_body_is_422_without_an_upstream_call(gateway, fake):
    async with gateway.client() as http:
        assert (
            await http.post(URL, json=chat(gateway.model, "a"), headers={"idempotency-key": "k-2"})
        ).status_code == 200
        other = await http.post(URL, json=chat(gateway.model, "b"), headers={"idempotency-key": "k-2"})
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(fake.requests()) == 1


async def test_fifty_concurrent_duplicates_make_one_upstream_call(gateway, fake):
    fake.script({"chunks": 5, "delay": 0.1})
    async with gateway.client() as http:
        responses = await asyncio.gather(
            *(http.post(URL, json=chat(gateway.model), headers={"idempotency-key": "k-3"}) for _ in range(50))
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses.count(200) == 1 and statuses.count(409) == 49, statuses
        assert all(
            r.json()["error"]["code"] == "idempotency_key_in_use" for r in responses if r.status_code == 409
        )
        # Once it finished, the same key replays.
        replay = await http.post(URL, json=chat(gateway.model), headers={"idempotency-key": "k-3"})
    assert replay.status_code == 200 and replay.headers["idempotency-replayed"] == "true"
    assert replay.content == next(r.content for r in responses if r.status_code == 200)
    assert len(fake.requests()) == 1


async def test_streams_replay_the_same_event_sequence(gateway, fake):
    body = chat(gateway.model, stream=True, stream_options={"include_usage": True})
    async with gateway.client() as http:
        first = await http.post(URL, json=body, headers={"idempotency-key": "k-4"})
        second = await http.post(URL, json=body, headers={"idempotency-key": "k-4"})
    assert first.status_code == second.status_code == 200
    assert second.headers["content-type"].startswith("text/event-stream")
    assert second.headers["idempotency-replayed"] == "true"
    assert second.content == first.content and first.content.endswith(b"data: [DONE]\n\n")
    assert len(fake.requests()) == 1


async def test_a_failed_attempt_frees_the_key(gateway, fake):
    fake.script({"status": 400, "body": {"error": {"message": "bad", "type": "invalid_request_error"}}})
    async with gateway.client() as http:
        failed = await http.post(URL, json=chat(gateway.model), headers={"idempotency-key": "k-5"})
        retried = await http.post(URL, json=chat(gateway.model), headers={"idempotency-key": "k-5"})
    assert failed.status_code >= 400
    assert retried.status_code == 200 and "idempotency-replayed" not in retried.headers


async def test_invalid_key_is_400(gateway):
    async with gateway.client() as http:
        response = await http.post(URL, json=chat(gateway.model), headers={"idempotency-key": "x" * 300})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_idempotency_key"


async def test_keys_are_scoped_per_tenant_in_shared_redis(start_gateway, fake, redis):
    a = await start_gateway(gateway_redis_url=redis.url, gateway_org_id="org-a")
    b = await start_gateway(gateway_redis_url=redis.url, gateway_org_id="org-b")
    key = {"idempotency-key": "shared-key-" + fake.base_url[-12:]}
    async with a.client() as http_a, b.client() as http_b:
        first = await http_a.post(URL, json=chat(a.model), headers=key)
        other_tenant = await http_b.post(URL, json=chat(b.model), headers=key)
        same_tenant_again = await http_a.post(URL, json=chat(a.model), headers=key)
    assert "idempotency-replayed" not in other_tenant.headers
    assert other_tenant.content != first.content
    assert same_tenant_again.headers["idempotency-replayed"] == "true"
    assert len(fake.requests()) == 2


async def test_claim_expires_when_its_holder_never_finishes():
    clock = ManualClock()
    idem = Idempotency(MemoryStore(clock=clock), ttl_seconds=60, pending_seconds=0.05)
    assert isinstance(await idem.claim("org", "k", "f"), Claim)
    clock.advance(0.04)
    with pytest.raises(ApiError) as held:
        await idem.claim("org", "k", "f")
    assert held.value.status == 409
    clock.advance(0.02)
    # The first holder vanished without finishing: a retry may run instead of getting 409 forever.
    assert isinstance(await idem.claim("org", "k", "f"), Claim)
