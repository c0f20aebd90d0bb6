"""What each API's clients see of the doors: Anthropic-shaped errors on the Messages route whatever
fails, its key headers, OpenAI's fields passed through or refused naming the field, GET
/v1/models/{id}, and images going only to models that declare vision, never fetched here."""

import socket
from contextlib import AsyncExitStack

import anthropic
import pytest
from gateway_service.pipeline.clients import BackendTargets
from generation_service.app import GenerationApp
from generation_service.metrics import GenerationMetrics
from generation_service.settings import GenerationSettings, ModelRoute
from prometheus_client import CollectorRegistry

from services.gateway.tests.conftest import MODEL, _grpc_server
from services.gateway.tests.doors import CHAT, MESSAGES

HI = [{"role": "user", "content": "hi"}]


def client(gateway, api_key: str | None = None) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gateway.url, api_key=api_key or gateway.api_key, max_retries=0)


async def test_the_key_may_come_as_x_api_key_with_any_anthropic_version(gateway):
    headers = {"x-api-key": gateway.api_key, "anthropic-version": "2023-06-01"}
    async with gateway.client(api_key=None) as c:
        served = await c.post(MESSAGES.path, json=MESSAGES.body(gateway.model, "hi", None), headers=headers)
        chat = await c.post(CHAT.path, json=CHAT.body(gateway.model, "hi", None), headers=headers)
    assert served.status_code == 200 and served.json()["type"] == "message"
    assert chat.status_code == 200


@pytest.mark.parametrize(
    ("headers", "body", "status", "kind"),
    [
        ({}, None, 401, "authentication_error"),
        ({"x-api-key": "sk-wrong"}, None, 401, "authentication_error"),
        (None, {"model": "fake-model", "messages": HI}, 400, "invalid_request_error"),
        (None, {"model": "no-such-model", "max_tokens": 8, "messages": HI}, 404, "not_found_error"),
        (None, b"{not json", 400, "invalid_request_error"),
    ],
    ids=["no key", "wrong key", "no max_tokens", "unknown model", "not json"],
)
async def test_errors_on_the_messages_route_are_anthropic_shaped(gateway, headers, body, status, kind):
    body = body if body is not None else MESSAGES.body(gateway.model, "hi", None)
    async with gateway.client(api_key=None if headers is not None else gateway.api_key) as c:
        if isinstance(body, bytes):
            response = await c.post(MESSAGES.path, content=body, headers={"content-type": "application/json"})
        else:
            response = await c.post(MESSAGES.path, json=body, headers=headers or {})
    assert response.status_code == status, response.text
    error = MESSAGES.error_of(response.json())
    assert error["type"] == kind and response.json()["request_id"] == response.headers["x-request-id"]


async def test_a_body_too_large_and_an_unknown_messages_path_are_anthropic_shaped(start_gateway):
    gateway = await start_gateway(gateway_max_body_bytes=2048)
    async with gateway.client() as c:
        large = await c.post(MESSAGES.path, json=MESSAGES.body(gateway.model, "x" * 4096, None))
        unknown = await c.get("/v1/messages/batches")
    assert large.status_code == 413 and MESSAGES.error_of(large.json())["type"] == "invalid_request_error"
    assert unknown.status_code in (404, 405) and MESSAGES.error_of(unknown.json())["message"]


async def test_the_anthropic_client_raises_its_own_exception_classes(start_gateway, fake):
    gateway = await start_gateway(gateway_key_rpm=1)
    with pytest.raises(anthropic.AuthenticationError):
        await client(gateway, "sk-wrong").messages.create(model=gateway.model, max_tokens=8, messages=HI)
    with pytest.raises(anthropic.BadRequestError) as bad:
        await client(gateway).messages.create(
            model=gateway.model, max_tokens=8, messages=HI, extra_body={"top_k": 3}
        )
    assert "top_k" in bad.value.message
    await client(gateway).messages.create(model=gateway.model, max_tokens=8, messages=HI)
    with pytest.raises(anthropic.RateLimitError) as limited:
        await client(gateway).messages.create(model=gateway.model, max_tokens=8, messages=HI)
    assert int(limited.value.response.headers["retry-after"]) >= 1
    assert limited.value.body["error"]["type"] == "rate_limit_error"


async def test_penalties_logit_bias_and_parallel_tool_calls_reach_the_upstream(gateway, fake):
    fields = {"presence_penalty": 0.5, "frequency_penalty": -0.25, "logit_bias": {"50256": -100}}
    async with gateway.client() as c:
        response = await c.post(
            CHAT.path, json=CHAT.body(gateway.model, "hi", None, parallel_tool_calls=False, **fields)
        )
        completion = await c.post("/v1/completions", json={"model": gateway.model, "prompt": "hi", **fields})
    assert response.status_code == 200 and completion.status_code == 200, completion.text
    chat_sent, completion_sent = (r["body"] for r in fake.requests())
    for name, value in fields.items():
        assert chat_sent[name] == completion_sent[name] == value, name
    assert chat_sent["parallel_tool_calls"] is False


@pytest.mark.parametrize(
    ("field", "value"),
    [("logprobs", True), ("top_logprobs", 3), ("n", 2), ("store", True), ("service_tier", "flex")],
)
async def test_what_chat_cannot_honour_is_refused_naming_the_field(gateway, fake, field, value):
    async with gateway.client() as c:
        response = await c.post(CHAT.path, json=CHAT.body(gateway.model, "hi", None, **{field: value}))
    assert response.status_code == 400
    error = CHAT.error_of(response.json())
    assert error["param"] == field and error["code"] == "unsupported"
    assert fake.requests() == []


async def test_a_whole_chat_answer_carries_a_null_refusal(gateway):
    async with gateway.client() as c:
        message = (await c.post(CHAT.path, json=CHAT.body(gateway.model, "hi", None))).json()["choices"][0][
            "message"
        ]
    assert "refusal" in message and message["refusal"] is None


async def test_a_model_is_read_by_its_id_and_an_unknown_one_is_404(gateway):
    async with gateway.client() as c:
        known = await c.get(f"/v1/models/{gateway.model}")
        unknown = await c.get("/v1/models/no-such-model")
    assert known.json() == {"id": gateway.model, "object": "model", "created": 0, "owned_by": "llmsuite"}
    assert unknown.status_code == 404
    assert CHAT.error_of(unknown.json())["code"] == "model_not_found"


# --- images --------------------------------------------------------------------------------------


@pytest.fixture
async def vision_gateway(start_gateway, backend_addresses, fake_upstream):
    """A gateway whose generation routes the model to an upstream that declares vision."""
    async with AsyncExitStack() as stack:
        settings = GenerationSettings(
            generation_upstream_base_url=fake_upstream.base_url,
            generation_models={MODEL: ModelRoute(upstream_model=MODEL, vision=True)},
        )
        # Its own metrics registry: the session's generation holds the default one.
        metrics = GenerationMetrics(CollectorRegistry())
        generation = await _grpc_server(GenerationApp(settings, metrics), stack)
        b = backend_addresses
        yield await start_gateway(BackendTargets(b.guardrails, b.unreachable, generation))


@pytest.fixture
def image_host():
    """A listener an image URL points at: nothing may connect to it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sock.setblocking(False)
        yield sock


def _connected(sock: socket.socket) -> bool:
    try:
        sock.accept()[0].close()
    except BlockingIOError:
        return False
    return True


async def test_images_go_to_a_vision_model_as_parts_and_are_never_fetched(vision_gateway, fake, image_host):
    url = f"http://127.0.0.1:{image_host.getsockname()[1]}/cat.png"
    content = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": url}}]
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    async with vision_gateway.client() as c:
        chat = await c.post(
            CHAT.path, json={"model": MODEL, "messages": [{"role": "user", "content": content}]}
        )
        messages = await c.post(
            MESSAGES.path,
            json={"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": [block]}]},
        )
    assert chat.status_code == 200 and messages.status_code == 200, messages.text
    sent = [r["body"]["messages"][0]["content"] for r in fake.requests()]
    assert sent[0] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    assert sent[1] == [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]
    assert not _connected(image_host)


async def test_images_to_a_model_without_vision_are_400_naming_the_message(gateway, fake, image_host):
    url = f"http://127.0.0.1:{image_host.getsockname()[1]}/cat.png"
    content = [{"type": "image_url", "image_url": {"url": url}}]
    async with gateway.client() as c:
        chat = await c.post(
            CHAT.path, json={"model": MODEL, "messages": [{"role": "user", "content": content}]}
        )
        block = {"type": "image", "source": {"type": "url", "url": url}}
        messages = await c.post(
            MESSAGES.path,
            json={"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": [block]}]},
        )
    error = CHAT.error_of(chat.json())
    assert chat.status_code == 400 and error["code"] == "images_not_supported"
    assert error["param"] == "messages[0].content" and "vision" in error["message"]
    assert messages.status_code == 400 and "vision" in MESSAGES.error_of(messages.json())["message"]
    assert fake.requests() == [] and not _connected(image_host)


async def test_a_redacted_turn_keeps_its_images_and_a_tool_turn_its_call_id(vision_gateway, fake):
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "mail ada@example.com"}, image]},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "write to bob@example.com"},
    ]
    async with vision_gateway.client() as c:
        response = await c.post(CHAT.path, json={"model": MODEL, "messages": messages})
    assert response.status_code == 200, response.text
    user, _, tool = fake.requests()[-1]["body"]["messages"]
    assert "ada@example.com" not in str(user) and user["content"][1] == image
    assert tool["tool_call_id"] == "call_1" and "bob@example.com" not in tool["content"]
