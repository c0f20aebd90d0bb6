"""The Responses API door's translation, table-driven: requests into the internal chat request,
generation's events into the Response object and the stream's typed events (each validated against
OpenAI's published OpenAPI document), and the kept-response stores."""

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from gateway_service.api.doors.responses import ResponsesRequest, conversation_of, to_chat
from gateway_service.api.doors.responses_output import (
    ResponseEvents,
    ResponseMeta,
    annotations,
    assistant_turn,
    whole_response,
)
from gateway_service.api.errors import ApiError
from gateway_service.edge.response_store import KeptResponse, MemoryResponseStore
from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2
from pydantic import ValidationError

from tests.schemas.openai_openapi import assert_valid

TOOL = {"type": "function", "name": "weather", "parameters": {"type": "object"}, "strict": True}
CALL = {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": '{"city":"Oslo"}'}
CHAT_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
}
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}}


def chat_of(request: dict, history: list | None = None) -> dict:
    body = to_chat(ResponsesRequest.model_validate(request), history or [])
    return body.model_dump(mode="json", exclude_none=True, exclude_defaults=True)


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        ({"input": "Hi"}, {"messages": [{"role": "user", "content": "Hi"}]}),
        (
            {"input": "Hi", "instructions": "Be brief."},
            {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]},
        ),
        (
            {
                "input": [
                    {"role": "system", "content": "S"},
                    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}]},
                    {
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": "b", "annotations": []}],
                    },
                    {
                        "role": "user",
                        "content": [{"type": "input_text", "text": "c"}, {"type": "input_text", "text": "d"}],
                    },
                ]
            },
            {
                "messages": [
                    {"role": "system", "content": "S"},
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"},
                    {"role": "user", "content": "c\nd"},
                ]
            },
        ),
        (
            {
                "input": [
                    {"role": "user", "content": "Weather?"},
                    CALL,
                    {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"},
                ]
            },
            {
                "messages": [
                    {"role": "user", "content": "Weather?"},
                    {"role": "assistant", "tool_calls": [CHAT_CALL]},
                    {"role": "tool", "content": "Sunny", "tool_call_id": "call_1"},
                ]
            },
        ),
        (
            {
                "input": [
                    {"role": "assistant", "content": "Let me look."},
                    CALL,
                    {**CALL, "call_id": "call_2"},
                ]
            },
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": "Let me look.",
                        "tool_calls": [CHAT_CALL, {**CHAT_CALL, "id": "call_2"}],
                    }
                ]
            },
        ),
        (
            {"input": "Hi", "tools": [TOOL], "tool_choice": {"type": "function", "name": "weather"}},
            {
                "messages": [{"role": "user", "content": "Hi"}],
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "weather", "parameters": {"type": "object"}, "strict": True},
                    }
                ],
                "tool_choice": {"type": "function", "function": {"name": "weather"}},
            },
        ),
        (
            {"input": "Hi", "tools": [TOOL], "tool_choice": "required", "parallel_tool_calls": False},
            {
                "messages": [{"role": "user", "content": "Hi"}],
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "weather", "parameters": {"type": "object"}, "strict": True},
                    }
                ],
                "tool_choice": "required",
                "parallel_tool_calls": False,
            },
        ),
        (
            {
                "input": "Hi",
                "text": {"format": {"type": "json_schema", "name": "x", "schema": SCHEMA, "strict": True}},
            },
            {
                "messages": [{"role": "user", "content": "Hi"}],
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": SCHEMA, "strict": True},
                },
            },
        ),
        (
            {"input": "Hi", "text": {"format": {"type": "json_object"}}},
            {"messages": [{"role": "user", "content": "Hi"}], "response_format": {"type": "json_object"}},
        ),
        (
            {"input": "Hi", "text": {"format": {"type": "text"}}},
            {"messages": [{"role": "user", "content": "Hi"}]},
        ),
        (
            {
                "input": "Hi",
                "max_output_tokens": 50,
                "temperature": 0,
                "top_p": 0.5,
                "stream": True,
                "user": "u1",
            },
            {
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 50,
                "temperature": 0.0,
                "top_p": 0.5,
                "stream": True,
                "user": "u1",
            },
        ),
        (
            {
                "input": "Hi",
                "safety_identifier": "hashed-user",
                "retrieval": {"collection": "docs", "k": 3},
                "cache": True,
            },
            {
                "messages": [{"role": "user", "content": "Hi"}],
                "user": "hashed-user",
                "retrieval": {"collection": "docs", "k": 3},
                "cache": True,
            },
        ),
        (
            {
                "input": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "What is this?"},
                            {
                                "type": "input_image",
                                "image_url": "https://example.com/a.png",
                                "detail": "low",
                            },
                        ],
                    }
                ]
            },
            {
                "messages": [
                    {
                        "role": "user",
                        "content": "What is this?",
                        "images": [{"url": "https://example.com/a.png", "detail": "low"}],
                    }
                ]
            },
        ),
        # Accepted at the values that ask for nothing more than what the gateway does.
        (
            {
                "input": "Hi",
                "store": False,
                "background": False,
                "truncation": "disabled",
                "service_tier": "auto",
                "include": [],
                "metadata": {"k": "v"},
            },
            {"messages": [{"role": "user", "content": "Hi"}]},
        ),
    ],
)
def test_requests_translate_into_the_chat_request(request_, expected):
    assert chat_of(request_) == expected


def test_a_follow_up_continues_the_kept_conversation_without_the_old_instructions():
    first = ResponsesRequest.model_validate({"input": "My name is Ada.", "instructions": "Be nice."})
    answer = {"role": "assistant", "content": "Hello Ada."}
    kept = conversation_of(first, [], answer)
    assert kept == [{"role": "user", "content": "My name is Ada."}, answer]
    follow_up = chat_of({"input": "Who am I?", "instructions": "Be terse."}, kept)
    assert follow_up["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "Who am I?"},
    ]


@pytest.mark.parametrize(
    ("request_", "field", "words"),
    [
        ({"input": "Hi", "background": True}, "background", "background"),
        ({"input": "Hi", "reasoning": {"effort": "low"}}, "reasoning", "reasoning"),
        ({"input": "Hi", "tools": [{"type": "web_search"}]}, "tools", "web_search"),
        (
            {"input": "Hi", "tools": [{"type": "code_interpreter", "container": "x"}]},
            "tools",
            "code_interpreter",
        ),
        ({"input": "Hi", "tool_choice": {"type": "mcp", "server_label": "x"}}, "tool_choice", "mcp"),
        ({"input": "Hi", "text": {"format": {"type": "grammar"}}}, "text", "grammar"),
        ({"input": [{"type": "reasoning", "summary": []}]}, "input", "reasoning"),
        ({"input": [{"type": "message", "role": "robot", "content": "x"}]}, "input", "role"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input", "call_id"),
        ({"input": "Hi", "logit_bias": {"1": 2}}, None, "logit_bias"),
        ({"input": "Hi", "messages": []}, None, "messages"),
        (
            {"input": "Hi", "tools": [{"type": "function", "name": "f", "parameters": {"$ref": "http://x"}}]},
            "tools",
            "$ref",
        ),
    ],
)
def test_what_cannot_be_honoured_is_refused_naming_the_field(request_, field, words):
    with pytest.raises(ValidationError) as info:
        ResponsesRequest.model_validate(request_)
    error = info.value.errors()[0]
    assert (error["loc"][0] if error["loc"] else None) == field
    assert words in error["msg"]


def test_schemas_inside_tools_and_text_format_may_name_provider_settings():
    request = {
        "input": "Hi",
        "tools": [
            {
                "type": "function",
                "name": "f",
                "parameters": {"type": "object", "properties": {"api_key": {"type": "string"}}},
            }
        ],
        "text": {
            "format": {
                "type": "json_schema",
                "name": "s",
                "schema": {"type": "object", "properties": {"base_url": {"type": "string"}}},
            }
        },
    }
    assert chat_of(request)["tools"][0]["function"]["parameters"]["properties"] == {
        "api_key": {"type": "string"}
    }
    with pytest.raises(ValidationError):
        ResponsesRequest.model_validate({"input": "Hi", "metadata": {"api_key": "x"}})


# --- answers ------------------------------------------------------------------------------------

USAGE = common_pb2.Usage(prompt_tokens=7, completion_tokens=3, cached_tokens=2)


def meta(citations=None, **request) -> ResponseMeta:
    return ResponseMeta(ResponsesRequest.model_validate({"input": "Hi", **request}), "fake-model", citations)


def final(reason: str = "stop", calls=()) -> generation_pb2.Final:
    return generation_pb2.Final(finish_reason=reason, usage=USAGE, tool_calls=list(calls))


def parsed(payloads: list[bytes]) -> list[dict]:
    events = []
    for block in b"".join(payloads).split(b"\n\n"):
        if block:
            head, data = block.split(b"\n", 1)
            event = orjson.loads(data.removeprefix(b"data: "))
            assert head == b"event: " + event["type"].encode()
            assert_valid("ResponseStreamEvent", event)
            events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


WEATHER = generation_pb2.ToolCallDelta(
    index=0, id="call_1", type="function", name="weather", arguments='{"city":"Oslo"}'
)


@pytest.mark.parametrize(
    ("content", "fin", "status", "items", "incomplete"),
    [
        ("Hello.", final(), "completed", ["message"], None),
        ("Hel", final("length"), "incomplete", ["message"], {"reason": "max_output_tokens"}),
        ("", final("content_filter"), "incomplete", ["message"], {"reason": "content_filter"}),
        ("", final("tool_calls", [WEATHER]), "completed", ["function_call"], None),
        ("Checking.", final("tool_calls", [WEATHER]), "completed", ["message", "function_call"], None),
    ],
)
def test_whole_answers_are_valid_responses(content, fin, status, items, incomplete):
    response = whole_response(meta(), content, fin)
    assert_valid("Response", response)
    assert response["status"] == status and response["incomplete_details"] == incomplete
    assert [item["type"] for item in response["output"]] == items
    assert response["usage"] == {
        "input_tokens": 7,
        "input_tokens_details": {"cached_tokens": 2, "cache_write_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 10,
    }


def test_a_streamed_answer_carries_the_same_response_a_whole_one_would():
    m = meta(tools=[TOOL], metadata={"a": "b"})
    events = ResponseEvents(m)
    pieces = [
        generation_pb2.ToolCallDelta(index=0, id="call_1", type="function", name="weather"),
        generation_pb2.ToolCallDelta(index=0, arguments='{"city":'),
        generation_pb2.ToolCallDelta(index=0, arguments='"Oslo"}'),
    ]
    payloads = [
        events.delta("Checking"),
        events.delta("."),
        events.delta("", pieces[:2]),
        events.delta("", pieces[2:]),
    ]
    payloads += events.finish(final("tool_calls", [WEATHER]))
    streamed = parsed(payloads)
    assert [e["type"] for e in streamed] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    done = streamed[-1]["response"]
    whole = whole_response(m, "Checking.", final("tool_calls", [WEATHER]))
    for key in ("completed_at",):
        done.pop(key), whole.pop(key)
    assert done == whole
    assert assistant_turn(done) == {"role": "assistant", "content": "Checking.", "tool_calls": [CHAT_CALL]}


def test_a_stream_failing_ends_with_error_and_response_failed():
    events = ResponseEvents(meta())
    payloads = [events.delta("ok "), events.error(ApiError(400, "blocked", code="content_policy_violation"))]
    streamed = parsed(payloads)
    assert [e["type"] for e in streamed][-2:] == ["error", "response.failed"]
    assert streamed[-2]["code"] == "content_policy_violation" and streamed[-2]["message"] == "blocked"
    failed = streamed[-1]["response"]
    assert failed["status"] == "failed" and failed["error"] == {
        "code": "invalid_prompt",
        "message": "blocked",
    }
    assert (
        failed["output"][0]["status"] == "incomplete" and failed["output"][0]["content"][0]["text"] == "ok "
    )

    before_any_token = parsed(
        [ResponseEvents(meta()).error(ApiError(503, "down", code="generation_unavailable"))]
    )
    assert [e["type"] for e in before_any_token] == [
        "response.created",
        "response.in_progress",
        "error",
        "response.failed",
    ]
    assert before_any_token[-1]["response"]["error"]["code"] == "server_error"


def test_an_empty_answer_is_one_empty_message():
    streamed = parsed(ResponseEvents(meta()).finish(final()))
    assert streamed[-1]["response"]["output"][0]["content"][0]["text"] == ""


CITED = [
    {"source_id": "https://example.com/guide", "chunk_id": "c1", "score": 0.9},
    {"source_id": "handbook.pdf", "chunk_id": "c2", "score": 0.8},
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Use the guide [1] and the handbook [2].",
            [
                {
                    "type": "url_citation",
                    "url": "https://example.com/guide",
                    "title": "https://example.com/guide",
                    "start_index": 14,
                    "end_index": 17,
                },
                {"type": "file_citation", "file_id": "c2", "filename": "handbook.pdf", "index": 1},
            ],
        ),
        (
            "No markers.",
            [
                {
                    "type": "url_citation",
                    "url": "https://example.com/guide",
                    "title": "https://example.com/guide",
                    "start_index": 0,
                    "end_index": 11,
                },
                {"type": "file_citation", "file_id": "c2", "filename": "handbook.pdf", "index": 1},
            ],
        ),
    ],
)
def test_retrieval_citations_become_annotations(text, expected):
    assert annotations(CITED, text) == expected
    response = whole_response(meta(CITED), text, final())
    assert_valid("Response", response)
    assert response["output"][0]["content"][0]["annotations"] == expected
    events = ResponseEvents(meta(CITED))
    streamed = parsed([events.delta(text), *events.finish(final())])
    added = [e["annotation"] for e in streamed if e["type"] == "response.output_text.annotation.added"]
    assert added == expected


# --- kept responses -----------------------------------------------------------------------------


async def test_the_memory_store_scopes_by_organization_bounds_and_expires():
    store = MemoryResponseStore(retention_days=30, max_entries=2)
    kept = [KeptResponse(f"resp_{i}", "org-a", "k", {"id": f"resp_{i}"}, []) for i in range(3)]
    for k in kept:
        await store.put(k)
    assert await store.get("org-a", "resp_0") is None  # the oldest went first
    assert await store.get("org-a", "resp_2") == kept[2]
    assert await store.get("org-b", "resp_2") is None
    assert not await store.delete("org-b", "resp_2")
    assert await store.delete("org-a", "resp_2") and await store.get("org-a", "resp_2") is None
    old = KeptResponse("resp_old", "org-a", "k", {}, [], datetime.now(UTC) - timedelta(days=31))
    await store.put(old)
    assert await store.get("org-a", "resp_old") is None


async def test_the_postgres_store_reads_live_rows_of_the_org_only_and_deletes_expired(postgres_dsn):
    from types import SimpleNamespace

    from gateway_service.db import migrate
    from gateway_service.edge.response_store import PostgresResponseStore
    from psycopg_pool import AsyncConnectionPool

    async with AsyncConnectionPool(postgres_dsn, min_size=1, max_size=2, open=False) as pool:
        await migrate(pool)
        store = PostgresResponseStore(SimpleNamespace(pool=pool), retention_days=30)
        tag = datetime.now(UTC).strftime("%H%M%S%f")
        live = KeptResponse(
            f"resp_live{tag}", "org-a", "k", {"id": "x", "text": "nul \x00 kept"}, [{"role": "user"}]
        )
        old = KeptResponse(f"resp_old{tag}", "org-a", "k", {}, [], datetime.now(UTC) - timedelta(days=31))
        for kept in (live, old):
            await store.put(kept)
        read = await store.get("org-a", live.id)
        assert read is not None and read.conversation == [{"role": "user"}]
        assert read.response["text"] == "nul \ufffd kept"
        assert await store.get("org-b", live.id) is None
        assert await store.get("org-a", old.id) is None
        assert not await store.delete("org-a", old.id)
        assert await store.delete_expired() >= 1
        async with pool.connection() as conn:
            rows = await (
                await conn.execute("SELECT id FROM gateway.responses WHERE id = %s", (old.id,))
            ).fetchall()
        assert rows == []
        assert await store.delete("org-a", live.id) and await store.get("org-a", live.id) is None
