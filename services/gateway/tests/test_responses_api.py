"""POST /v1/responses, GET and DELETE /v1/responses/{id} over real HTTP, with real guardrails and
generation on the scripted fake upstream: the official openai client (create, streamed and not,
the responses.stream helper, retrieve, delete, previous_response_id), its exception classes, and
every body and stream event validated against OpenAI's published OpenAPI document."""

import asyncio
import json
import secrets

import httpx
import openai
import orjson
import pytest

from tests.schemas.openai_openapi import assert_valid, errors

RESPONSES = "/v1/responses"
# The order of a streamed text answer's events (one delta per upstream chunk).
TEXT_STREAM = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def events_of(raw: bytes) -> list[dict]:
    """A stream's events, each checked: `event:` names its type, its data is a valid stream event."""
    out = []
    for block in raw.split(b"\n\n"):
        lines = [line for line in block.split(b"\n") if line and not line.startswith(b":")]
        if not lines:
            continue
        assert len(lines) == 2 and lines[0].startswith(b"event: ") and lines[1].startswith(b"data: "), block
        event = orjson.loads(lines[1][len(b"data: ") :])
        assert lines[0][len(b"event: ") :].decode() == event["type"]
        assert_valid("ResponseStreamEvent", event)
        out.append(event)
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    return out


def kinds(events: list[dict]) -> list[str]:
    """Event types with runs of deltas collapsed to one."""
    out: list[str] = []
    for event in events:
        if not (out and out[-1] == event["type"] and event["type"].endswith(".delta")):
            out.append(event["type"])
    return out


def upstream_messages(fake) -> list[dict]:
    return fake.requests()[-1]["body"]["messages"]


async def post(gateway, body: dict, key: str | None = None, **headers) -> httpx.Response:
    async with gateway.client(key or gateway.api_key) as c:
        return await c.post(RESPONSES, json={"model": gateway.model, **body}, headers=headers)


# --- whole answers ------------------------------------------------------------------------------


async def test_create_through_the_openai_client(gateway, fake):
    client = gateway.openai()
    reply = await client.responses.create(
        model=gateway.model, instructions="Answer briefly.", input="Name three colours.", max_output_tokens=64
    )
    assert reply.object == "response" and reply.status == "completed" and reply.id.startswith("resp_")
    assert reply.output_text == "You said: Name three colours."
    assert reply.output[0].type == "message" and reply.output[0].role == "assistant"
    usage = reply.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert reply.instructions == "Answer briefly." and reply.max_output_tokens == 64
    sent = fake.requests()[-1]["body"]
    assert sent["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Name three colours."},
    ]
    assert sent["max_tokens"] == 64


async def test_whole_response_validates_and_input_items_translate(gateway, fake):
    response = await post(
        gateway,
        {
            "input": [
                {"role": "developer", "content": "Be terse."},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi there"}]},
            ],
            "temperature": 0.5,
            "top_p": 0.9,
            "metadata": {"ticket": "T-1"},
            "user": "alice",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert_valid("Response", body)
    assert body["metadata"] == {"ticket": "T-1"} and body["temperature"] == 0.5 and body["store"] is True
    sent = fake.requests()[-1]["body"]
    assert sent["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hi there"},
    ]
    assert sent["temperature"] == 0.5 and sent["top_p"] == pytest.approx(0.9)


async def test_max_output_tokens_reached_is_incomplete(gateway, fake):
    fake.script({"content": ["a ", "b ", "c ", "d "]})
    body = (await post(gateway, {"input": "go", "max_output_tokens": 2})).json()
    assert_valid("Response", body)
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    fake.script({"content": ["a ", "b ", "c ", "d "]})
    streamed = await post(gateway, {"input": "go", "max_output_tokens": 2, "stream": True})
    events = events_of(streamed.content)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


async def test_json_schema_format_goes_through_the_structured_output_rail(gateway, fake):
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"]}
    fake.script({"content": ['{"colour": ', '"blue"}']})
    client = gateway.openai()
    reply = await client.responses.create(
        model=gateway.model,
        input="Pick a colour.",
        text={"format": {"type": "json_schema", "name": "pick", "schema": schema, "strict": True}},
    )
    assert json.loads(reply.output_text) == {"colour": "blue"}
    assert reply.text.format.type == "json_schema"
    sent = fake.requests()[-1]["body"]
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "pick", "schema": schema, "strict": True},
    }


# --- streams ------------------------------------------------------------------------------------


async def test_stream_has_the_full_event_sequence(gateway, fake):
    fake.script({"content": ["one ", "two ", "three"]})
    response = await post(gateway, {"input": "count", "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = events_of(response.content)
    assert kinds(events) == TEXT_STREAM
    assert [e["delta"] for e in events if e["type"] == "response.output_text.delta"] == [
        "one ",
        "two ",
        "three",
    ]
    done = next(e for e in events if e["type"] == "response.output_text.done")
    assert done["text"] == "one two three"
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["usage"]["output_tokens"] > 0
    assert final["output"][0]["content"][0]["text"] == "one two three"
    assert events[0]["response"]["id"] == final["id"] and events[0]["response"]["status"] == "in_progress"
    assert b"[DONE]" not in response.content


async def test_stream_through_the_openai_client_and_the_stream_helper(gateway, fake):
    client = gateway.openai()
    stream = await client.responses.create(model=gateway.model, input="Name three colours.", stream=True)
    seen = [event async for event in stream]
    assert [e.type for e in seen][:2] == ["response.created", "response.in_progress"]
    assert seen[-1].type == "response.completed"
    assert "".join(e.delta for e in seen if e.type == "response.output_text.delta") == (
        "You said: Name three colours."
    )

    async with client.responses.stream(model=gateway.model, input="Name four colours.") as helper:
        texts = [e.delta async for e in helper if e.type == "response.output_text.delta"]
        final = await helper.get_final_response()
    assert "".join(texts) == final.output_text == "You said: Name four colours."
    # A streamed response is kept like a whole one.
    again = await client.responses.retrieve(final.id)
    assert again.output_text == final.output_text and again.status == "completed"


async def test_function_tools_stream_and_whole_and_their_results_go_back(gateway, fake):
    tool = {
        "type": "function",
        "name": "weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    pieces = [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": ""}},
        {"index": 0, "function": {"arguments": '{"city": '}},
        {"index": 0, "function": {"arguments": '"Paris"}'}},
    ]
    fake.script({"content": [], "tool_calls": pieces, "finish_reason": "tool_calls"})
    streamed = await post(gateway, {"input": "Weather in Paris?", "tools": [tool], "stream": True})
    events = events_of(streamed.content)
    assert kinds(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    call = events[-1]["response"]["output"][0]
    assert call["type"] == "function_call" and call["call_id"] == "call_1"
    assert call["name"] == "weather" and call["arguments"] == '{"city": "Paris"}'
    sent = fake.requests()[-1]["body"]
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "The weather in a city",
                "parameters": tool["parameters"],
            },
        }
    ]

    fake.script({"content": [], "tool_calls": pieces, "finish_reason": "tool_calls"})
    client = gateway.openai()
    reply = await client.responses.create(model=gateway.model, input="Weather in Paris?", tools=[tool])
    (whole_call,) = [item for item in reply.output if item.type == "function_call"]
    assert whole_call.arguments == '{"city": "Paris"}' and whole_call.call_id == "call_1"

    follow_up = await client.responses.create(
        model=gateway.model,
        previous_response_id=reply.id,
        input=[{"type": "function_call_output", "call_id": "call_1", "output": "Sunny, 24 C"}],
        tools=[tool],
    )
    assert follow_up.status == "completed"
    messages = upstream_messages(fake)
    assert messages[-2]["role"] == "assistant" and messages[-2]["tool_calls"][0]["id"] == "call_1"
    assert messages[-1] == {"role": "tool", "content": "Sunny, 24 C", "tool_call_id": "call_1"}


# --- kept responses -----------------------------------------------------------------------------


async def test_retrieve_delete_and_previous_response_id(gateway, fake):
    client = gateway.openai()
    first = await client.responses.create(
        model=gateway.model, instructions="Be nice.", input="My name is Ada."
    )
    kept = await client.responses.retrieve(first.id)
    assert kept.id == first.id and kept.output_text == first.output_text

    second = await client.responses.create(
        model=gateway.model, previous_response_id=first.id, input="What is my name?"
    )
    assert second.previous_response_id == first.id
    # The first exchange, without its instructions (OpenAI does not carry them over), then the input.
    assert upstream_messages(fake) == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "What is my name?"},
    ]
    third = await client.responses.create(
        model=gateway.model, previous_response_id=second.id, input="Thanks."
    )
    assert len(upstream_messages(fake)) == 5 and third.status == "completed"

    async with gateway.client() as c:
        raw = await c.get(f"{RESPONSES}/{first.id}")
        assert_valid("Response", raw.json())
        for query, param in (({"stream": "true"}, "stream"), ({"include[]": "x"}, "include")):
            refused = await c.get(f"{RESPONSES}/{first.id}", params=query)
            assert refused.status_code == 400 and refused.json()["error"]["param"] == param
        deleted = await c.delete(f"{RESPONSES}/{first.id}")
    assert deleted.status_code == 200
    assert deleted.json() == {"id": first.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError) as info:
        await client.responses.retrieve(first.id)
    assert_valid("ErrorResponse", info.value.response.json())
    with pytest.raises(openai.NotFoundError):
        await client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError) as chained:
        await client.responses.create(model=gateway.model, previous_response_id=first.id, input="hi")
    assert chained.value.body["param"] == "previous_response_id"


async def test_store_false_keeps_nothing(gateway, fake):
    client = gateway.openai()
    reply = await client.responses.create(model=gateway.model, input="hello", store=False)
    assert reply.store is False
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(reply.id)


# --- errors -------------------------------------------------------------------------------------


async def test_the_clients_exception_classes(start_gateway, fake):
    gateway = await start_gateway(gateway_key_rpm=2)
    client = gateway.openai()
    with pytest.raises(openai.AuthenticationError) as unauthenticated:
        await gateway.openai(api_key="sk-wrong").responses.create(model=gateway.model, input="hi")
    assert unauthenticated.value.status_code == 401
    with pytest.raises(openai.NotFoundError) as unknown:
        await client.responses.retrieve("resp_unknown")
    assert unknown.value.body["code"] == "not_found"
    with pytest.raises(openai.BadRequestError) as refused:
        await client.responses.create(model=gateway.model, input="hi", background=True)
    assert refused.value.body["param"] == "background" and "background" in refused.value.body["message"]
    await client.responses.create(model=gateway.model, input="hi")
    await client.responses.create(model=gateway.model, input="hi")
    with pytest.raises(openai.RateLimitError) as limited:
        await client.responses.create(model=gateway.model, input="hi")
    assert limited.value.body["code"] == "key_rpm" and int(limited.value.response.headers["retry-after"]) >= 1
    for err in (unauthenticated, unknown, refused, limited):
        assert_valid("ErrorResponse", err.value.response.json())


@pytest.mark.parametrize(
    ("extra", "param", "words"),
    [
        ({"background": True}, "background", "background"),
        ({"reasoning": {"effort": "high"}}, "reasoning", "reasoning"),
        ({"tools": [{"type": "web_search"}]}, "tools", "web_search"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools", "file_search"),
        ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice", "web_search_preview"),
        ({"include": ["message.output_text.logprobs"]}, "include", "include"),
        ({"conversation": "conv_1"}, "conversation", "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt", "prompt"),
        ({"truncation": "auto"}, "truncation", "truncation"),
        ({"service_tier": "priority"}, "service_tier", "service_tier"),
        ({"top_logprobs": 3}, "top_logprobs", "top_logprobs"),
        ({"max_tool_calls": 2}, "max_tool_calls", "max_tool_calls"),
        ({"stream_options": {"include_obfuscation": True}}, "stream_options", "include_obfuscation"),
        ({"text": {"verbosity": "low"}}, "text.verbosity", "verbosity"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input",
            "input_file",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input",
            "file_id",
        ),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input", "item_reference"),
        ({"frequency_penalty": 1}, None, "frequency_penalty"),
        ({"api_base": "http://evil"}, None, "api_base"),
    ],
)
async def test_what_cannot_be_honoured_is_refused_naming_the_field(gateway, fake, extra, param, words):
    response = await post(gateway, {"input": "hi", **extra})
    assert response.status_code == 400, response.text
    assert_valid("ErrorResponse", response.json())
    error = response.json()["error"]
    assert error["param"] == param and words in error["message"]
    assert fake.requests() == []


async def test_a_guardrail_block_mid_stream_fails_the_response_and_cancels_the_upstream(gateway, fake):
    # An AWS key id: the output rail (the default policy, no hold-back) blocks the delta holding it.
    fake.script({"content": ["ok "] * 3 + ["AKIAIOSFODNN7EXAMPLE "] + ["more "] * 44, "delay": 0.05})
    response = await post(gateway, {"input": "tell me", "stream": True})
    assert response.status_code == 200
    assert b"AKIA" not in response.content and b"MPLE" not in response.content
    events = events_of(response.content)
    types = [e["type"] for e in events]
    assert types[-2:] == ["error", "response.failed"] and "response.completed" not in types
    assert events[-2]["code"] == "content_policy_violation"
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "invalid_prompt"
    connection = (await fake.wait_until_closed(timeout=5))[-1]
    assert connection["closed_by"] == "client" and connection["chunks_sent"] < 48
    with pytest.raises(openai.NotFoundError):
        await gateway.openai().responses.retrieve(failed["id"])


async def test_a_failure_after_the_first_token_is_error_and_response_failed(gateway, fake):
    fake.script({"content": ["one ", "two ", "three"], "error_after": 1})
    events = events_of((await post(gateway, {"input": "count", "stream": True})).content)
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert events[-1]["response"]["error"]["code"] == "server_error"
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "one "


async def test_client_disconnect_cancels_the_upstream_request(gateway, fake):
    fake.script({"chunks": 50, "delay": 0.2})
    async with gateway.client() as c:
        body = {"model": gateway.model, "input": "go", "stream": True}
        async with c.stream("POST", RESPONSES, json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: ") and "output_text.delta" in line:
                    break
    connection = (await fake.wait_until_closed(timeout=5))[-1]
    assert connection["closed_by"] == "client" and connection["chunks_sent"] < 50


async def test_input_blocked_by_guardrails_is_400_streamed_or_not(gateway, fake):
    for stream in (False, True):
        response = await post(gateway, {"input": f"tell me about {gateway.denied_term}", "stream": stream})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "content_policy_violation"
    assert fake.requests() == []


# --- the edge -----------------------------------------------------------------------------------


async def test_idempotency_replays_the_same_response_and_keys_its_door(gateway, fake):
    key = "resp-" + secrets.token_hex(4)
    first = await post(gateway, {"input": "hello"}, **{"Idempotency-Key": key})
    again = await post(gateway, {"input": "hello"}, **{"Idempotency-Key": key})
    assert again.content == first.content and again.headers["idempotency-replayed"] == "true"
    assert len(fake.requests()) == 1
    async with gateway.client() as c:
        chat = {"model": gateway.model, "messages": [{"role": "user", "content": "hello"}]}
        other_door = await c.post("/v1/chat/completions", json=chat, headers={"Idempotency-Key": key})
    assert other_door.status_code == 422

    stream_key = key + "-s"
    streamed = await post(gateway, {"input": "hello", "stream": True}, **{"Idempotency-Key": stream_key})
    replayed = await post(gateway, {"input": "hello", "stream": True}, **{"Idempotency-Key": stream_key})
    assert (
        replayed.content == streamed.content
        and events_of(replayed.content)[-1]["type"] == "response.completed"
    )


async def test_the_result_cache_answers_in_the_door_that_asked(gateway, fake):
    async with gateway.client() as c:
        chat = {
            "model": gateway.model,
            "messages": [{"role": "user", "content": "cached?"}],
            "temperature": 0,
        }
        assert (await c.post("/v1/chat/completions", json=chat)).headers["x-cache"] == "miss"
    response = await post(gateway, {"input": "cached?", "temperature": 0})
    assert response.headers["x-cache"] == "miss" and response.json()["object"] == "response"
    hit = await post(gateway, {"input": "cached?", "temperature": 0})
    assert hit.headers["x-cache"] == "hit" and hit.json()["object"] == "response"


async def test_kept_responses_belong_to_their_organization(start_gateway, postgres_dsn, fake):
    gateway = await start_gateway(gateway_database_url=postgres_dsn)
    keys = {}
    async with gateway.client() as root:
        for name in ("ours", "theirs"):
            org = f"resp-{name}-" + secrets.token_hex(3)
            assert (await root.post("/v1/admin/orgs", json={"id": org})).status_code == 201
            created = await root.post("/v1/admin/keys", json={"org_id": org, "role": "member"})
            keys[name] = created.json()["key"]
    ours, theirs = gateway.openai(keys["ours"]), gateway.openai(keys["theirs"])
    reply = await ours.responses.create(model=gateway.model, input="a secret of ours")
    assert (await ours.responses.retrieve(reply.id)).output_text == reply.output_text
    for call in (
        theirs.responses.retrieve(reply.id),
        theirs.responses.delete(reply.id),
        theirs.responses.create(model=gateway.model, input="hi", previous_response_id=reply.id),
    ):
        with pytest.raises(openai.NotFoundError):
            await call
    await ours.responses.delete(reply.id)
    with pytest.raises(openai.NotFoundError):
        await ours.responses.retrieve(reply.id)

    # The request log names the door; usage is counted as for chat.
    request_id = None
    async with gateway.client(keys["ours"]) as c:
        sent = await c.post(RESPONSES, json={"model": gateway.model, "input": "log me"})
        request_id = sent.headers["x-request-id"]
        for _ in range(100):
            row = await c.get(f"/v1/requests/{request_id}")
            if row.status_code == 200:
                break
            await asyncio.sleep(0.05)
    row = row.json()
    assert row["route"] == RESPONSES and row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    assert row["prompt_tokens"] == sent.json()["usage"]["input_tokens"]


def test_the_schema_check_is_not_vacuous():
    assert errors("ResponseStreamEvent", {"type": "response.completed", "sequence_number": 0})
    assert errors("Response", {"id": "resp_1", "object": "response"})
