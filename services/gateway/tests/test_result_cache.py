"""Exact-match result cache: deterministic requests by default, opt-in/out, streams, the hit metric."""

from gateway_service.api.schemas import ChatCompletionRequest
from gateway_service.edge.result_cache import cache_key, cacheable

URL = "/v1/chat/completions"


def chat(model: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "cache me"}], **extra}


def request(**extra) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(chat("m", **extra))


def key(org: str, model: str, body: ChatCompletionRequest) -> str | None:
    return cache_key(org, model, body, policy_version="policy-1")


def test_key_covers_tenant_model_messages_and_parameters():
    base = key("org-a", "m", request(temperature=0))
    assert base is not None
    assert base == key("org-a", "m", request(temperature=0, user="someone-else"))
    assert base != key("org-b", "m", request(temperature=0))
    assert base != key("org-a", "other", request(temperature=0))
    assert base != key("org-a", "m", request(temperature=0, max_tokens=5))
    assert base != key("org-a", "m", request(temperature=0, stream=True))
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert base != key("org-a", "m", request(temperature=0, tools=tools))


def test_only_deterministic_requests_by_default():
    assert cacheable(request(temperature=0))
    assert not cacheable(request())
    assert not cacheable(request(temperature=0.7))
    assert cacheable(request(temperature=0.7, cache=True))
    assert not cacheable(request(temperature=0, cache=False))


async def test_hit_miss_and_metric(gateway, fake):
    async with gateway.client() as http:
        first = await http.post(URL, json=chat(gateway.model, temperature=0))
        second = await http.post(URL, json=chat(gateway.model, temperature=0))
        sampled = await http.post(URL, json=chat(gateway.model, temperature=0.9))
        opted_out = await http.post(URL, json=chat(gateway.model, temperature=0, cache=False))
        metrics = (await http.get("/metrics")).text
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
    assert second.content == first.content
    assert "x-cache" not in sampled.headers and "x-cache" not in opted_out.headers
    assert len(fake.requests()) == 3
    assert 'llmsuite_gateway_cache_lookups_total{outcome="hit"} 1.0' in metrics
    assert 'llmsuite_gateway_cache_lookups_total{outcome="miss"} 1.0' in metrics


async def test_streams_are_cached_as_their_event_sequence(gateway, fake):
    body = chat(gateway.model, temperature=0, stream=True)
    async with gateway.client() as http:
        first = await http.post(URL, json=body)
        second = await http.post(URL, json=body, headers={"idempotency-key": "cached-stream"})
        third = await http.post(URL, json=body, headers={"idempotency-key": "cached-stream"})
    assert first.headers["x-cache"] == "miss" and second.headers["x-cache"] == "hit"
    assert second.content == first.content == third.content
    assert third.headers["idempotency-replayed"] == "true"
    assert len(fake.requests()) == 1
