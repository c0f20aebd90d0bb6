"""The official openai client against the gateway, through real guardrails and generation."""

import openai
import pytest

from tests.conftest import FAKE_MODEL


@pytest.fixture
def client(suite):
    return openai.OpenAI(base_url=f"{suite.gateway_url}/v1", api_key=suite.api_key, max_retries=0)


def test_non_streaming_completion(client, suite):
    reply = client.chat.completions.create(
        model=FAKE_MODEL, messages=[{"role": "user", "content": "Name three colours."}], max_tokens=32
    )
    assert reply.object == "chat.completion"
    assert reply.model == FAKE_MODEL
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_streaming_completion_has_one_chunk_per_upstream_delta_and_usage(client, suite):
    suite.clear_upstream_requests()
    stream = client.chat.completions.create(
        model=FAKE_MODEL,
        messages=[{"role": "user", "content": "Name three colours."}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) >= 2, "deltas must arrive as separate chunks"
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert len({c.id for c in chunks}) == 1
    sent = suite.upstream_requests()
    assert sent[-1]["body"]["messages"][-1]["content"] == "Name three colours."


def test_models_lists_the_configured_model(client):
    assert FAKE_MODEL in [m.id for m in client.models.list().data]


def test_wrong_key_is_authentication_error(suite):
    bad = openai.OpenAI(base_url=f"{suite.gateway_url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model=FAKE_MODEL, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 401
    assert info.value.body["code"] == "invalid_api_key"


def test_invalid_request_is_bad_request_error(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=FAKE_MODEL, messages="not a list")  # type: ignore[arg-type]
    assert info.value.status_code == 400
    assert info.value.body["type"] == "invalid_request_error"


def test_unknown_model_is_not_found_error(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["code"] == "model_not_found"


def test_request_id_is_echoed(suite):
    import httpx

    reply = httpx.post(
        f"{suite.gateway_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {suite.api_key}", "x-request-id": "abc-123"},
        json={"model": FAKE_MODEL, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert reply.status_code == 200
    assert reply.headers["x-request-id"] == "abc-123"
    generated = httpx.get(f"{suite.gateway_url}/healthz", timeout=5).headers["x-request-id"]
    assert generated and generated != "abc-123"
