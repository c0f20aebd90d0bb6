"""The official clients against the gateway's doors, through the real chain (gateway, guardrails,
retrieval and generation as processes, the scripted fake upstream): the anthropic client on
/v1/messages and the openai client on /v1/completions and /v1/chat/completions, whole and
streamed, with each client's own exception classes for 401, 404, 429 and 400. Every body and
stream event is validated against the published schemas: OpenAI's OpenAPI document (tests/schemas,
openai-openapi f85dbe2, version 2.3.0) and the anthropic SDK's types (anthropic==2.17.0)."""

import copy
import functools
import secrets
from typing import Any

import anthropic
import anthropic.types as at
import httpx
import openai
import orjson
import pytest
from jsonschema import Draft202012Validator
from pydantic import TypeAdapter
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.conftest import FAKE_MODEL
from tests.schemas.openai_openapi import spec

ANTHROPIC_EVENT = TypeAdapter(at.RawMessageStreamEvent)
_URI = "urn:openai:openapi:nullable"


def _with_nullable(node: Any) -> Any:
    """The document's OpenAPI 3.0 `nullable: true` (still used in places of this 3.1 document, e.g.
    a chat chunk's `logprobs`, `finish_reason` and `usage`) as JSON Schema says it: null allowed."""
    if isinstance(node, list):
        return [_with_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _with_nullable(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    document = _with_nullable(copy.deepcopy(spec()))
    registry = Registry().with_resource(_URI, Resource(contents=document, specification=DRAFT202012))
    return Draft202012Validator({"$ref": f"{_URI}#/components/schemas/{name}"}, registry=registry)


def assert_valid(name: str, instance: Any) -> None:
    """`instance` is a valid `#/components/schemas/<name>` of OpenAI's document."""
    problems = [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in _validator(name).iter_errors(instance)
    ]
    assert not problems, f"not a valid {name}:\n" + "\n".join(problems)


HI = [{"role": "user", "content": "Name three colours."}]


def new_key(suite, **settings) -> str:
    """An admin key of a new organization."""
    org = "sdk-" + secrets.token_hex(4)
    with httpx.Client(
        base_url=suite.gateway_url, headers={"authorization": f"Bearer {suite.api_key}"}
    ) as root:
        assert root.post("/v1/admin/orgs", json={"id": org}).status_code == 201
        created = root.post("/v1/admin/keys", json={"org_id": org, "role": "admin", "settings": settings})
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


def claude(suite, api_key: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=suite.gateway_url, api_key=api_key or suite.api_key, max_retries=0)


def gpt(suite, api_key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{suite.gateway_url}/v1", api_key=api_key or suite.api_key, max_retries=0)


def post(suite, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    with httpx.Client(base_url=suite.gateway_url, timeout=30) as http:
        return http.post(path, json=body, headers={"authorization": f"Bearer {suite.api_key}", **headers})


def sse_blocks(raw: str) -> list[list[str]]:
    blocks = [
        [line for line in b.split("\n") if line and not line.startswith(":")] for b in raw.split("\n\n")
    ]
    return [b for b in blocks if b]


# --- Anthropic Messages --------------------------------------------------------------------------


def test_messages_whole_and_streamed_with_the_anthropic_client(suite):
    client = claude(suite)
    message = client.messages.create(model=FAKE_MODEL, max_tokens=64, system="Be brief.", messages=HI)
    assert message.type == "message" and message.role == "assistant" and message.stop_reason == "end_turn"
    assert message.content[0].text == "You said: Name three colours."
    assert message.usage.output_tokens > 0
    raw = client.messages.with_raw_response.create(model=FAKE_MODEL, max_tokens=64, messages=HI)
    at.Message.model_validate(orjson.loads(raw.http_response.content))

    with client.messages.stream(model=FAKE_MODEL, max_tokens=64, messages=HI) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == final.content[0].text == "You said: Name three colours."
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0


def test_every_messages_stream_event_is_a_valid_anthropic_event(suite):
    raw = post(suite, "/v1/messages", {"model": FAKE_MODEL, "max_tokens": 64, "messages": HI, "stream": True})
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/event-stream")
    kinds = []
    for name, data in sse_blocks(raw.text):
        event = orjson.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        if event["type"] == "ping":
            assert event == {"type": "ping"}
        else:
            ANTHROPIC_EVENT.validate_python(event)
        kinds.append(event["type"])
    assert kinds[:3] == ["message_start", "ping", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[3:-3]) == {"content_block_delta"}


def test_messages_tool_use_round_trip(suite):
    tool_calls = [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": ""}},
        {"index": 0, "function": {"arguments": '{"city": "Paris"}'}},
    ]
    httpx.post(
        f"{suite.upstream_url}/_script",
        json={"content": [], "tool_calls": tool_calls, "finish_reason": "tool_calls"},
    )
    tools = [{"name": "weather", "description": "today's weather", "input_schema": {"type": "object"}}]
    message = claude(suite).messages.create(model=FAKE_MODEL, max_tokens=64, messages=HI, tools=tools)
    assert message.stop_reason == "tool_use"
    [call] = [b for b in message.content if b.type == "tool_use"]
    assert (call.id, call.name, call.input) == ("call_1", "weather", {"city": "Paris"})
    follow_up = [
        *HI,
        {"role": "assistant", "content": [call.model_dump(exclude_none=True)]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "21 C"}]},
    ]
    suite.clear_upstream_requests()
    claude(suite).messages.create(model=FAKE_MODEL, max_tokens=64, messages=follow_up, tools=tools)
    sent = suite.upstream_requests()[-1]["body"]
    assert sent["messages"][-1] == {"role": "tool", "content": "21 C", "tool_call_id": "call_1"}
    assert sent["tools"][0]["function"]["name"] == "weather"


def test_the_anthropic_clients_exception_classes(suite):
    key = new_key(suite, rpm=1)
    for error, call in [
        (anthropic.AuthenticationError, lambda: claude(suite, "sk-wrong")),
        (anthropic.BadRequestError, lambda: claude(suite)),
        (anthropic.NotFoundError, lambda: claude(suite)),
    ]:
        model = "no-such-model" if error is anthropic.NotFoundError else FAKE_MODEL
        extra = {"extra_body": {"top_k": 5}} if error is anthropic.BadRequestError else {}
        with pytest.raises(error) as info:
            call().messages.create(model=model, max_tokens=8, messages=HI, **extra)
        at.ErrorResponse.model_validate(info.value.body)
    claude(suite, key).messages.create(model=FAKE_MODEL, max_tokens=8, messages=HI)
    with pytest.raises(anthropic.RateLimitError) as limited:
        claude(suite, key).messages.create(model=FAKE_MODEL, max_tokens=8, messages=HI)
    assert at.ErrorResponse.model_validate(limited.value.body).error.type == "rate_limit_error"
    assert int(limited.value.response.headers["retry-after"]) >= 1


# --- OpenAI Completions --------------------------------------------------------------------------


def _valid_completion_chunk(chunk: dict[str, Any]) -> None:
    """OpenAI's document gives streamed and whole completions one shape, with `finish_reason`
    required and never null; its own API streams null until the last chunk, as chat's stream schema
    allows. Streamed chunks are checked with that one field set as the last chunk has it."""
    choices = [{**c, "finish_reason": c["finish_reason"] or "stop"} for c in chunk["choices"]]
    assert_valid("CreateCompletionResponse", {**chunk, "choices": choices})


def test_completions_whole_and_streamed_with_the_openai_client(suite):
    client = gpt(suite)
    whole = client.completions.create(model=FAKE_MODEL, prompt="Once upon a time", max_tokens=32)
    assert whole.object == "text_completion" and whole.choices[0].text == "You said: Once upon a time"
    assert whole.choices[0].finish_reason == "stop" and whole.usage.completion_tokens > 0
    raw = client.completions.with_raw_response.create(
        model=FAKE_MODEL, prompt=["Once upon a time"], max_tokens=32
    )
    assert_valid("CreateCompletionResponse", orjson.loads(raw.http_response.content))

    stream = client.completions.create(
        model=FAKE_MODEL, prompt="Once upon a time", stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "You said: Once upon a time"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    raw_stream = post(suite, "/v1/completions", {"model": FAKE_MODEL, "prompt": "hi", "stream": True})
    blocks = sse_blocks(raw_stream.text)
    assert blocks[-1] == ["data: [DONE]"]
    for [data] in blocks[:-1]:
        _valid_completion_chunk(orjson.loads(data.removeprefix("data: ")))


@pytest.mark.parametrize("path", ["completions", "chat"])
def test_the_openai_clients_exception_classes(suite, path):
    key = new_key(suite, rpm=1)

    def create(client: openai.OpenAI, **kw: Any) -> Any:
        kw.setdefault("model", FAKE_MODEL)
        if path == "completions":
            return client.completions.create(prompt=kw.pop("prompt", "hi"), **kw)
        return client.chat.completions.create(messages=[{"role": "user", "content": "hi"}], **kw)

    cases = [
        (openai.AuthenticationError, gpt(suite, "sk-wrong"), {}),
        (openai.NotFoundError, gpt(suite), {"model": "no-such-model"}),
        (openai.BadRequestError, gpt(suite), {"n": 2}),
    ]
    for error, client, kw in cases:
        with pytest.raises(error) as info:
            create(client, **kw)
        assert_valid("ErrorResponse", info.value.response.json())
    create(gpt(suite, key))
    with pytest.raises(openai.RateLimitError) as limited:
        create(gpt(suite, key))
    assert limited.value.code == "key_rpm" and int(limited.value.response.headers["retry-after"]) >= 1
    assert_valid("ErrorResponse", limited.value.response.json())


def test_a_prompt_of_token_ids_is_refused_naming_it(suite):
    with pytest.raises(openai.BadRequestError) as info:
        gpt(suite).completions.create(model=FAKE_MODEL, prompt=[1, 2, 3])
    assert info.value.body["param"] == "prompt" and info.value.body["code"] == "unsupported"


# --- OpenAI Chat ---------------------------------------------------------------------------------


def test_chat_bodies_and_chunks_are_valid_openai_objects(suite):
    whole = post(suite, "/v1/chat/completions", {"model": FAKE_MODEL, "messages": HI})
    body = whole.json()
    assert_valid("CreateChatCompletionResponse", body)
    assert body["choices"][0]["message"]["refusal"] is None
    streamed = post(
        suite,
        "/v1/chat/completions",
        {"model": FAKE_MODEL, "messages": HI, "stream": True, "stream_options": {"include_usage": True}},
    )
    blocks = sse_blocks(streamed.text)
    assert blocks[-1] == ["data: [DONE]"]
    for [data] in blocks[:-1]:
        assert_valid("CreateChatCompletionStreamResponse", orjson.loads(data.removeprefix("data: ")))
    tool = post(suite, "/v1/chat/completions", {"model": FAKE_MODEL, "messages": HI, "logprobs": True})
    assert tool.status_code == 400
    assert_valid("ErrorResponse", tool.json())


def test_models_list_and_retrieve(suite):
    client = gpt(suite)
    assert client.models.retrieve(FAKE_MODEL).id == FAKE_MODEL
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("no-such-model")
    assert info.value.body["code"] == "model_not_found"
    with httpx.Client(
        base_url=suite.gateway_url, headers={"authorization": f"Bearer {suite.api_key}"}
    ) as http:
        assert_valid("ListModelsResponse", http.get("/v1/models").json())
        assert_valid("Model", http.get(f"/v1/models/{FAKE_MODEL}").json())
