"""Tools, structured output and hostile model output, end to end: openai client -> gateway -> generation -> upstream."""

import json

import httpx
import openai
import pytest

from tests.conftest import FAKE_MODEL

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
PIECES = [
    {"index": 0, "id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
    {"index": 0, "function": {"arguments": '{"city"'}},
    {"index": 0, "function": {"arguments": ': "Paris"}'}},
]


@pytest.fixture
def client(suite):
    return openai.OpenAI(base_url=f"{suite.gateway_url}/v1", api_key=suite.api_key, max_retries=0)


def script(suite, *scenarios):
    httpx.post(f"{suite.upstream_url}/_script", json=list(scenarios), timeout=5).raise_for_status()


def test_tool_call_deltas_stream_through_intact(client, suite):
    suite.clear_upstream_requests()
    script(suite, {"content": [], "tool_calls": PIECES, "finish_reason": "tool_calls"})
    stream = client.chat.completions.create(
        model=FAKE_MODEL,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
    )
    chunks = list(stream)
    pieces = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert pieces[0].id == "call_abc" and pieces[0].function.name == "get_weather"
    assert "".join(p.function.arguments or "" for p in pieces) == '{"city": "Paris"}'
    assert {p.index for p in pieces} == {0}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "tool_calls"
    ]
    sent = suite.upstream_requests()[-1]["body"]
    assert sent["tools"] == TOOLS
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_tool_calls_whole_in_a_non_streaming_reply_and_the_result_turn_goes_back(client, suite):
    script(suite, {"content": [], "tool_calls": PIECES, "finish_reason": "tool_calls"})
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    reply = client.chat.completions.create(model=FAKE_MODEL, messages=messages, tools=TOOLS)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert (call.id, call.type, call.function.name) == ("call_abc", "function", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    suite.clear_upstream_requests()
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"celsius": 21}'},
    ]
    follow_up = client.chat.completions.create(model=FAKE_MODEL, messages=messages, tools=TOOLS)
    assert follow_up.choices[0].message.content
    sent = suite.upstream_requests()[-1]["body"]["messages"]
    assert sent[1]["role"] == "assistant" and sent[1]["tool_calls"][0]["id"] == "call_abc"
    assert sent[2] == {"role": "tool", "content": '{"celsius": 21}', "tool_call_id": "call_abc"}


def test_response_format_reaches_the_upstream(client, suite):
    suite.clear_upstream_requests()
    script(suite, {"content": ['{"answer": ', "42}"]})
    schema = {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
    }
    reply = client.chat.completions.create(
        model=FAKE_MODEL, messages=[{"role": "user", "content": "JSON please"}], response_format=schema
    )
    assert json.loads(reply.choices[0].message.content) == {"answer": 42}
    assert suite.upstream_requests()[0]["body"]["response_format"] == schema


def test_bad_tools_are_a_bad_request(client, suite):
    suite.clear_upstream_requests()
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=FAKE_MODEL, messages=[{"role": "user", "content": "hi"}], tools=[{"type": "banana"}]
        )
    assert suite.upstream_requests() == []


def test_model_output_that_looks_like_the_end_of_stream_is_delivered_as_text(client, suite):
    script(suite, {"content": ["before", "\n\ndata: [DONE]\n\n", "after"]})
    stream = client.chat.completions.create(
        model=FAKE_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "before\n\ndata: [DONE]\n\nafter"
