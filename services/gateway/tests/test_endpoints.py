"""The gateway over real HTTP, with real guardrails and generation (on the scripted fake upstream)."""

import httpx
import openai
import orjson
import pytest
from gateway_service.pipeline.clients import BackendTargets


def chat(gateway, content: str = "hello there friend", **extra) -> dict:
    return {"model": gateway.model, "messages": [{"role": "user", "content": content}], **extra}


def data_events(raw: bytes) -> list:
    out = []
    for block in raw.split(b"\n\n"):
        if block.startswith(b"data: "):
            payload = block[len(b"data: ") :]
            out.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return out


def assert_envelope(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    if code is not None:
        assert body["error"]["code"] == code
    assert "Traceback" not in response.text
    assert response.headers.get("x-request-id")
    return body["error"]


# --- operations -----------------------------------------------------------------------------------


async def test_healthz_needs_no_key_and_no_backend(gateway):
    async with gateway.client(api_key=None) as c:
        response = await c.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"]


async def test_readyz_is_ready_without_retrieval_and_names_it_degraded(gateway):
    """Retrieval is optional: its outage degrades only requests naming a collection, so the pod stays
    in its Service (the gateway fixture runs no retrieval service)."""
    async with gateway.client(api_key=None) as c:
        response = await c.get("/readyz")
        verbose = await c.get("/readyz?verbose")
        metrics = (await c.get("/metrics")).text
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["degraded"] == ["retrieval"]
    assert body["backends"]["retrieval"] == "UNAVAILABLE"
    assert body["backends"]["guardrails"] == body["backends"]["generation"] == "SERVING"
    assert verbose.status_code == 200
    assert verbose.text.splitlines() == [
        "[+]guardrails ok",
        "[+]generation ok",
        "[-]retrieval failed: UNAVAILABLE (optional)",
        "readyz check passed",
    ]
    assert 'llmsuite_gateway_backend_serving{backend="retrieval"} 0.0' in metrics
    assert 'llmsuite_gateway_backend_serving{backend="guardrails"} 1.0' in metrics


async def test_readyz_names_the_required_backend_that_is_down(start_gateway, backend_addresses):
    b = backend_addresses
    gateway = await start_gateway(BackendTargets(b.guardrails, b.unreachable, b.unreachable))
    async with gateway.client(api_key=None) as c:
        response = await c.get("/readyz")
        verbose = await c.get("/readyz?verbose")
    error = assert_envelope(response, 503, "not_ready")
    assert "generation=UNAVAILABLE" in error["message"]
    assert "guardrails" not in error["message"] and "retrieval" not in error["message"]
    assert response.headers["retry-after"]
    assert verbose.status_code == 503
    assert "[-]generation failed: UNAVAILABLE" in verbose.text
    assert verbose.text.endswith("readyz check failed\n")


async def test_readyz_is_ready_when_every_backend_serves(start_gateway, backend_addresses):
    b = backend_addresses
    # Generation's health service also answers for the retrieval slot: all three report SERVING.
    gateway = await start_gateway(BackendTargets(b.guardrails, b.generation, b.generation))
    async with gateway.client(api_key=None) as c:
        response = await c.get("/readyz")
    assert response.status_code == 200
    assert response.json()["backends"] == {
        name: "SERVING" for name in ("guardrails", "retrieval", "generation")
    }


async def test_metrics_count_requests_by_route_and_status(gateway):
    async with gateway.client() as c:
        await c.get("/healthz")
        await c.get("/v1/nowhere")
        response = await c.get("/metrics")
    text = response.text
    assert response.status_code == 200
    assert 'llmsuite_gateway_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert 'llmsuite_gateway_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert "llmsuite_gateway_request_duration_seconds_bucket" in text
    assert "llmsuite_gateway_streams_in_flight 0.0" in text
    # The serving loop's unfinished tasks (make soak watches it): the request-log writer's at least.
    (tasks,) = [line for line in text.splitlines() if line.startswith("llmsuite_process_asyncio_tasks ")]
    assert float(tasks.split()[1]) >= 1


# --- auth and request errors --------------------------------------------------------------------------


async def test_v1_without_key_is_401(gateway):
    async with gateway.client(api_key=None) as c:
        for response in (await c.get("/v1/models"), await c.post("/v1/chat/completions", content=b"{broken")):
            assert_envelope(response, 401, "invalid_api_key")


async def test_openai_client_wrong_key_is_authentication_error(gateway):
    client = gateway.openai(api_key="sk-wrong")
    with pytest.raises(openai.AuthenticationError) as info:
        await client.chat.completions.create(
            model=gateway.model, messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.status_code == 401
    assert info.value.body["code"] == "invalid_api_key"
    assert "sk-wrong" not in str(info.value.body)


async def test_openai_client_invalid_request_is_bad_request_error(gateway):
    client = gateway.openai()
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model=gateway.model, messages="not a list")  # type: ignore[arg-type]
    assert info.value.body["type"] == "invalid_request_error"
    assert info.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model=gateway.model, messages=[{"role": "user", "content": "hi"}], temperature=9
        )
    assert info.value.body["param"] == "temperature"


async def test_malformed_json_is_400(gateway):
    async with gateway.client() as c:
        response = await c.post(
            "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
        )
    assert_envelope(response, 400, "invalid_json")


async def test_oversized_body_is_413(start_gateway):
    gateway = await start_gateway(gateway_max_body_bytes=2048)
    async with gateway.client() as c:
        response = await c.post("/v1/chat/completions", json=chat(gateway, "x" * 4096))
    error = assert_envelope(response, 413, "request_too_large")
    assert error["type"] == "invalid_request_error"


async def test_unknown_route_and_wrong_method(gateway):
    async with gateway.client() as c:
        assert_envelope(await c.get("/v1/nowhere"), 404, "unknown_url")
        assert_envelope(await c.get("/nowhere"), 404, "unknown_url")
        response = await c.get("/v1/chat/completions")
    assert_envelope(response, 405, "method_not_allowed")
    assert "POST" in response.headers["allow"]


async def test_request_id_is_echoed_when_sane_and_replaced_when_not(gateway):
    async with gateway.client() as c:
        kept = await c.get("/healthz", headers={"x-request-id": "client-id_1.2"})
        replaced = await c.get("/healthz", headers={"x-request-id": "bad id;" + "x" * 200})
        error = await c.get("/v1/nowhere", headers={"x-request-id": "err-1"})
    assert kept.headers["x-request-id"] == "client-id_1.2"
    assert replaced.headers["x-request-id"] != "bad id;" + "x" * 200
    assert len(replaced.headers["x-request-id"]) <= 128
    assert error.headers["x-request-id"] == "err-1"


# --- chat: guardrails, generation, errors ----------------------------------------------------------------


async def test_guardrails_block_is_400_and_nothing_goes_upstream(gateway, fake):
    client = gateway.openai()
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model=gateway.model,
            messages=[{"role": "user", "content": f"tell me about the {gateway.denied_term}"}],
        )
    assert info.value.body["code"] == "content_policy_violation"
    assert "denied term" in info.value.body["message"]
    assert fake.requests() == []


async def test_guardrails_block_applies_to_streams_too(gateway, fake):
    async with gateway.client() as c:
        response = await c.post("/v1/chat/completions", json=chat(gateway, gateway.denied_term, stream=True))
    assert_envelope(response, 400, "content_policy_violation")
    assert fake.requests() == []


async def test_non_streaming_completion(gateway, fake):
    reply = await gateway.openai().chat.completions.create(
        model=gateway.model,
        messages=[{"role": "user", "content": [{"type": "text", "text": "hello there friend"}]}],
        max_tokens=50,
        temperature=0.2,
        stop="###",
        seed=7,
        user="user-1",
    )
    assert reply.id.startswith("chatcmpl-")
    assert reply.object == "chat.completion"
    assert reply.model == gateway.model
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == "You said: hello there friend"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens > 0
    sent = fake.requests()[-1]["body"]
    assert sent["messages"][-1]["content"] == "hello there friend"
    assert (sent["max_tokens"], sent["temperature"], sent["seed"]) == (50, pytest.approx(0.2), 7)


async def test_default_model_is_used_when_none_is_given(gateway, fake):
    async with gateway.client() as c:
        response = await c.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
        )
    assert response.status_code == 200
    assert response.json()["model"] == gateway.model


async def test_streaming_completion_through_the_openai_client(gateway, fake):
    stream = await gateway.openai().chat.completions.create(
        model=gateway.model,
        messages=[{"role": "user", "content": "hello there friend"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: hello there friend"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 5, "one chunk per delta"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    assert len({c.id for c in chunks}) == 1


async def test_stream_headers_and_done(gateway, fake):
    async with gateway.client() as c:
        response = await c.post("/v1/chat/completions", json=chat(gateway, stream=True))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["x-request-id"]
    events = data_events(response.content)
    assert events[-1] == "[DONE]"
    assert all("usage" not in e for e in events[:-1])


async def test_keep_alive_comments_while_waiting_for_the_first_token(start_gateway, fake):
    gateway = await start_gateway(gateway_keepalive_seconds=0.2)
    fake.script({"stall_after_headers": 1.0, "content": ["late"]})
    async with gateway.client() as c:
        response = await c.post("/v1/chat/completions", json=chat(gateway, stream=True))
    assert response.status_code == 200
    raw = response.content
    assert raw.startswith(b": keep-alive\n\n")
    assert raw.index(b": keep-alive") < raw.index(b'"late"')
    assert data_events(raw)[-1] == "[DONE]"


async def test_unknown_model_is_not_found_error_streaming_or_not(gateway, fake):
    client = gateway.openai()
    for stream in (False, True):
        with pytest.raises(openai.NotFoundError) as info:
            await client.chat.completions.create(
                model="no-such-model", messages=[{"role": "user", "content": "hi"}], stream=stream
            )
        assert info.value.body["code"] == "model_not_found"
        assert info.value.body["param"] == "model"


async def test_upstream_rate_limit_is_rate_limit_error_with_retry_after(gateway, fake):
    fake.script({"status": 429, "retry_after": "3"})
    with pytest.raises(openai.RateLimitError) as info:
        await gateway.openai().chat.completions.create(
            model=gateway.model, messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.response.headers["retry-after"] == "3"
    assert info.value.body["code"] == "rate_limit_exceeded"


async def test_failure_after_the_first_token_is_an_error_event_without_done(gateway, fake):
    fake.script({"content": ["one ", "two ", "three"], "error_after": 1})
    async with gateway.client() as c:
        response = await c.post("/v1/chat/completions", json=chat(gateway, stream=True))
    assert response.status_code == 200
    events = data_events(response.content)
    assert events[0]["choices"][0]["delta"]["content"] == "one "
    assert set(events[-1]) == {"error"}
    assert "[DONE]" not in events


async def test_generation_down_is_503(start_gateway, backend_addresses):
    b = backend_addresses
    gateway = await start_gateway(BackendTargets(b.guardrails, b.unreachable, b.unreachable))
    async with gateway.client() as c:
        for stream in (False, True):
            response = await c.post("/v1/chat/completions", json=chat(gateway, stream=stream))
            error = assert_envelope(response, 503, "generation_unavailable")
            assert error["message"] == "the generation service is unavailable"
            assert int(response.headers["retry-after"]) >= 1
        assert_envelope(await c.get("/v1/models"), 503)


async def test_retrieval_down_fails_only_the_requests_that_name_a_collection(gateway, fake):
    body = chat(gateway, retrieval={"collection": "docs", "k": 3})
    async with gateway.client() as c:
        response = await c.post("/v1/chat/completions", json=body)
        error = assert_envelope(response, 503, "retrieval_unavailable")
        assert "retrieval" in error["message"]
        assert int(response.headers["retry-after"]) >= 1
        assert fake.requests() == []
        served = await c.post("/v1/chat/completions", json=chat(gateway))
    assert served.status_code == 200, served.text


async def test_overall_deadline_is_504(start_gateway, fake):
    gateway = await start_gateway(gateway_request_timeout_seconds=0.5)
    fake.script({"stall": 3})
    async with gateway.client() as c:
        response = await c.post("/v1/chat/completions", json=chat(gateway))
    assert_envelope(response, 504, "timeout")


async def test_models_list(gateway):
    models = await gateway.openai().models.list()
    assert [m.id for m in models.data] == [gateway.model]
    assert models.data[0].object == "model"


async def test_client_disconnect_cancels_the_upstream_request(gateway, fake):
    fake.script({"chunks": 50, "delay": 0.2})
    async with gateway.client() as c:
        async with c.stream("POST", "/v1/chat/completions", json=chat(gateway, stream=True)) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    break
    connection = (await fake.wait_until_closed(timeout=5))[-1]
    assert connection["state"] == "closed"
    assert connection["closed_by"] == "client"
    assert connection["chunks_sent"] < 50


@pytest.mark.parametrize("stream", [True, False])
async def test_disconnect_before_the_first_token_cancels_the_upstream_request(gateway, fake, stream):
    fake.script({"stall_after_headers": 5, "content": ["never"]})
    async with gateway.client(timeout=0.5) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.post("/v1/chat/completions", json=chat(gateway, stream=stream))
    connection = (await fake.wait_until_closed(timeout=3))[-1]
    assert connection["state"] == "closed", "the upstream request was left open"
    assert connection["closed_by"] == "client" and connection["chunks_sent"] == 0


async def test_openapi_documents_the_bearer_scheme_and_the_request(gateway):
    async with gateway.client(api_key=None) as c:
        schema = (await c.get("/openapi.json")).json()
    operation = schema["paths"]["/v1/chat/completions"]["post"]
    assert operation["security"] == [{"HTTPBearer": []}]
    assert "/healthz" not in schema["paths"]
    request_schema = schema["components"]["schemas"]["ChatCompletionRequest"]
    assert {"messages", "retrieval", "stream_options"} <= set(request_schema["properties"])


async def test_openapi_can_be_turned_off(start_gateway):
    gateway = await start_gateway(gateway_openapi_enabled=False)
    async with gateway.client(api_key=None) as c:
        assert (await c.get("/openapi.json")).status_code == 404
        assert (await c.get("/docs")).status_code == 404


async def test_request_id_travels_to_the_backends(gateway, fake):
    async with gateway.client() as c:
        response = await c.post(
            "/v1/chat/completions", json=chat(gateway), headers={"x-request-id": "trace-me-42"}
        )
    assert response.headers["x-request-id"] == "trace-me-42"
    # Generation takes it from the gRPC metadata and passes it on to the upstream.
    assert fake.requests()[-1]["headers"]["x-request-id"] == "trace-me-42"
    assert "authorization" not in {
        k for k, v in fake.requests()[-1]["headers"].items() if gateway.api_key in v
    }
