"""The result cache never serves an answer made under another guardrails policy or another version
of the collection it was grounded in; hits are logged with the request and the key, no content."""

import logging
import secrets
from contextlib import AsyncExitStack

from gateway_service.api.schemas import ChatCompletionRequest
from gateway_service.edge.result_cache import cache_key
from gateway_service.pipeline.clients import BackendTargets
from guardrails_service.app import GuardrailsApp
from guardrails_service.metrics import GuardrailsMetrics
from guardrails_service.settings import GuardrailsSettings
from prometheus_client import CollectorRegistry

from services.gateway.tests.conftest import _grpc_server
from services.gateway.tests.retrieval_backend import retrieval_backend  # noqa: F401 - fixture

URL = "/v1/chat/completions"


def chat(model: str, text: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], "temperature": 0, **extra}


def guardrails(deny_terms: list[str]) -> GuardrailsApp:
    """A guardrails service whose policy differs from the session's (another policy version)."""
    settings = GuardrailsSettings(guardrails_deny_terms=deny_terms)
    return GuardrailsApp(settings, GuardrailsMetrics(CollectorRegistry()))


def test_key_holds_the_policy_and_collection_versions():
    plain = ChatCompletionRequest.model_validate(chat("m", "hi"))
    base = cache_key("org", "m", plain, policy_version="p1")
    assert base is not None and base == cache_key("org", "m", plain, policy_version="p1")
    assert base != cache_key("org", "m", plain, policy_version="p2")
    # Without a policy version the answer's provenance is unknown: not cached.
    assert cache_key("org", "m", plain, policy_version="") is None
    grounded = ChatCompletionRequest.model_validate(chat("m", "hi", retrieval={"collection": "c"}))
    v1 = cache_key("org", "m", grounded, policy_version="p1", collection_version="1.0:3")
    v2 = cache_key("org", "m", grounded, policy_version="p1", collection_version="1.0:4")
    assert v1 is not None and v1 != v2
    assert cache_key("org", "m", grounded, policy_version="p1") is None


async def test_a_policy_change_never_serves_the_old_answer(start_gateway, backend_addresses, redis, fake):
    # Two gateways share one cache (as replicas do) but their guardrails run different policies, as
    # before and after a policy change.
    cache_url = redis.url.rsplit("/", 1)[0] + "/5"
    text = "cache across policies " + secrets.token_hex(4)
    async with AsyncExitStack() as stack:
        changed = await _grpc_server(guardrails(["another term"]), stack)
        before = await start_gateway(gateway_cache_redis_url=cache_url)
        after = await start_gateway(
            targets=BackendTargets(changed, backend_addresses.unreachable, backend_addresses.generation),
            gateway_cache_redis_url=cache_url,
        )
        async with before.client() as http:
            first = await http.post(URL, json=chat(before.model, text))
            second = await http.post(URL, json=chat(before.model, text))
        async with after.client() as http:
            third = await http.post(URL, json=chat(after.model, text))
            fourth = await http.post(URL, json=chat(after.model, text))
    assert [r.status_code for r in (first, second, third, fourth)] == [200] * 4
    assert [r.headers["x-cache"] for r in (first, second, third, fourth)] == ["miss", "hit", "miss", "hit"]
    assert len(fake.requests()) == 2


async def test_a_cached_answer_is_checked_by_todays_input_policy(
    start_gateway, backend_addresses, redis, fake
):
    cache_url = redis.url.rsplit("/", 1)[0] + "/5"
    text = "about the newly banned word " + secrets.token_hex(4)
    async with AsyncExitStack() as stack:
        strict = await _grpc_server(guardrails(["banned word"]), stack)
        lenient = await start_gateway(gateway_cache_redis_url=cache_url)
        blocking = await start_gateway(
            targets=BackendTargets(strict, backend_addresses.unreachable, backend_addresses.generation),
            gateway_cache_redis_url=cache_url,
        )
        async with lenient.client() as http:
            assert (await http.post(URL, json=chat(lenient.model, text))).status_code == 200
        async with blocking.client() as http:
            blocked = await http.post(URL, json=chat(blocking.model, text))
    assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "content_policy_violation"


async def test_hits_are_logged_with_request_and_key_but_no_content(gateway, fake, caplog):
    text = "log my hit " + secrets.token_hex(4)
    with caplog.at_level(logging.INFO, logger="gateway_service.edge.result_cache"):
        async with gateway.client() as http:
            await http.post(URL, json=chat(gateway.model, text))
            hit = await http.post(URL, json=chat(gateway.model, text))
    assert hit.headers["x-cache"] == "hit"
    [record] = [r for r in caplog.records if r.getMessage() == "result cache hit"]
    assert record.request_id == hit.headers["x-request-id"]
    assert record.key_id.startswith("key_") and record.org_id == gateway.settings.gateway_org_id
    assert record.cache_key.startswith("cache:")
    answer = hit.json()["choices"][0]["message"]["content"]
    logged = " ".join(str(v) for v in vars(record).values())
    assert text not in logged and answer not in logged


async def test_a_reingest_never_serves_the_answer_grounded_in_the_old_text(
    start_gateway,
    backend_addresses,
    retrieval_backend,  # noqa: F811
    fake,
):
    gw = await start_gateway(
        targets=BackendTargets(backend_addresses.guardrails, retrieval_backend, backend_addresses.generation),
        gateway_org_id="grounded-" + secrets.token_hex(4),
    )
    body = chat(gw.model, "How many days of leave?", retrieval={"collection": "policies", "k": 1})

    async def ingest(http, text: str) -> None:
        documents = {"documents": [{"id": "leave", "text": text}]}
        done = await http.post("/v1/collections/policies/documents", json=documents)
        assert done.status_code == 200 and done.json()["failed"] == 0, done.text

    async with gw.client() as http:
        await ingest(http, "Employees get 25 days of paid leave a year.")
        statuses = [(await http.post(URL, json=body)).headers["x-cache"] for _ in range(2)]
        await ingest(http, "Employees get 30 days of paid leave a year.")
        after = await http.post(URL, json=body)
    assert statuses == ["miss", "hit"]
    assert after.status_code == 200 and after.headers["x-cache"] == "miss"
    # The new answer was grounded in the new text.
    assert "30 days" in str(fake.requests()[-1])
