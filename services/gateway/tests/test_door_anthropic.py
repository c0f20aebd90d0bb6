"""The Anthropic Messages door's translation, table by table: requests into the internal chat
request (or a 400 naming the field), answers and stream events out, each event validated against
the anthropic SDK's own types (anthropic==2.17.0, requirements/dev.txt)."""

import anthropic.types as at
import orjson
import pytest
from gateway_service.api.completions import CompletionMeta
from gateway_service.api.doors.anthropic import MessagesRequest, to_chat
from gateway_service.api.doors.anthropic_output import MessageEvents, message_object
from gateway_service.api.errors import ApiError, anthropic_envelope
from gateway_service.api.validation import validation_error
from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2
from pydantic import TypeAdapter, ValidationError

STREAM_EVENT = TypeAdapter(at.RawMessageStreamEvent)
BASE = {"model": "m", "max_tokens": 32}
PNG = "iVBORw0KGgo="


def chat_of(**fields):
    return to_chat(MessagesRequest.model_validate({**BASE, **fields}))


def messages_of(**fields):
    return [m.model_dump(exclude_defaults=True) for m in chat_of(**fields).messages]


TRANSLATIONS = [
    (
        "a string turn",
        {"messages": [{"role": "user", "content": "hi"}]},
        [{"role": "user", "content": "hi"}],
    ),
    (
        "system as a string and as text blocks",
        {
            "system": [{"type": "text", "text": "be brief"}, {"type": "text", "text": "be kind"}],
            "messages": [{"role": "user", "content": "hi"}],
        },
        [{"role": "system", "content": "be brief\nbe kind"}, {"role": "user", "content": "hi"}],
    ),
    (
        "text blocks are joined, cache_control is a hint",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "one"},
                        {"type": "text", "text": "two", "cache_control": {"type": "ephemeral"}},
                    ],
                }
            ]
        },
        [{"role": "user", "content": "one\ntwo"}],
    ),
    (
        "images become image_url parts, never fetched",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
                    ],
                }
            ]
        },
        [
            {
                "role": "user",
                "content": "what is this?",
                "images": [{"url": f"data:image/png;base64,{PNG}"}, {"url": "https://example.com/a.jpg"}],
            }
        ],
    ),
    (
        "tool use and its result",
        {
            "messages": [
                {"role": "user", "content": "weather in Paris?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Let me look."},
                        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "21 C"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_2",
                            "content": [{"type": "text", "text": "no such city"}],
                            "is_error": True,
                        },
                        {"type": "text", "text": "and tomorrow?"},
                    ],
                },
            ]
        },
        [
            {"role": "user", "content": "weather in Paris?"},
            {
                "role": "assistant",
                "content": "Let me look.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "content": "21 C", "tool_call_id": "toolu_1"},
            {"role": "tool", "content": "Error: no such city", "tool_call_id": "toolu_2"},
            {"role": "user", "content": "and tomorrow?"},
        ],
    ),
]


@pytest.mark.parametrize(("case", "fields", "expected"), TRANSLATIONS, ids=[t[0] for t in TRANSLATIONS])
def test_messages_translate_into_chat_messages(case, fields, expected):
    assert messages_of(**fields) == expected


PARAMETERS = [
    ({"max_tokens": 7}, {"max_tokens": 7}),
    ({"stop_sequences": ["END", "###"]}, {"stop": ["END", "###"]}),
    ({"temperature": 0.2, "top_p": 0.9}, {"temperature": 0.2, "top_p": 0.9}),
    ({"metadata": {"user_id": "alice"}}, {"user": "alice"}),
    ({"stream": True}, {"stream": True}),
    ({"retrieval": {"collection": "docs", "k": 3}, "cache": True}, {"cache": True}),
    (
        {"tools": [{"name": "weather", "description": "d", "input_schema": {"type": "object"}}]},
        {
            "tools": [
                {
                    "type": "function",
                    "function": {"name": "weather", "parameters": {"type": "object"}, "description": "d"},
                }
            ]
        },
    ),
    ({"tool_choice": {"type": "auto"}}, {"tool_choice": "auto"}),
    ({"tool_choice": {"type": "any"}}, {"tool_choice": "required"}),
    ({"tool_choice": {"type": "none"}}, {"tool_choice": "none"}),
    (
        {"tool_choice": {"type": "tool", "name": "weather", "disable_parallel_tool_use": True}},
        {"tool_choice": {"type": "function", "function": {"name": "weather"}}, "parallel_tool_calls": False},
    ),
    ({"thinking": {"type": "disabled"}, "service_tier": "auto"}, {}),
]


@pytest.mark.parametrize(("fields", "expected"), PARAMETERS)
def test_parameters_translate_into_chat_fields(fields, expected):
    body = chat_of(messages=[{"role": "user", "content": "hi"}], **fields)
    dumped = body.model_dump(exclude_unset=True)
    for name, value in expected.items():
        assert dumped[name] == value, name
    assert body.model == "m" and body.token_limit == fields.get("max_tokens", 32)


HI = [{"role": "user", "content": "hi"}]
REFUSED = [
    ({"messages": HI, "top_k": 5}, "top_k", "unsupported"),
    ({"messages": HI, "thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking", "unsupported"),
    ({"messages": HI, "container": "c1"}, "container", "unsupported"),
    ({"messages": HI, "mcp_servers": [{"url": "https://x"}]}, "mcp_servers", "unsupported"),
    (
        {
            "messages": HI,
            "tools": [{"type": "web_search_20250305", "name": "web_search", "input_schema": {}}],
        },
        "tools[0].type",
        "unsupported",
    ),
    ({"messages": HI, "temperature": 1.5}, "temperature", "invalid_value"),
    ({"messages": HI, "stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences", "invalid_value"),
    ({"messages": HI, "surprise": 1}, None, "unrecognized_argument"),
    ({"messages": HI, "metadata": {"user_id": "u", "api_key": "sk-x"}}, None, "forbidden_parameter"),
    ({"messages": []}, "messages", "invalid_value"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role", "invalid_value"),
    (
        {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
        "messages[0].content",
        "invalid_value",
    ),
    (
        {"messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": "..."}]}]},
        "messages[0].content",
        "invalid_value",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": {}}]}
            ]
        },
        "messages[0]",
        "unsupported",
    ),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/bmp", "data": "x"},
                        }
                    ],
                }
            ]
        },
        "messages[0].content",
        "invalid_value",
    ),
]


@pytest.mark.parametrize(("fields", "param", "code"), REFUSED)
def test_what_cannot_be_honoured_is_refused_naming_the_field(fields, param, code):
    with pytest.raises(ValidationError) as info:
        MessagesRequest.model_validate({**BASE, **fields})
    err = validation_error(info.value.errors())
    assert err.status == 400 and err.code == code, err.message
    if param is not None:
        assert (err.param or "").startswith(param), err.param


def test_max_tokens_is_required():
    with pytest.raises(ValidationError) as info:
        MessagesRequest.model_validate({"model": "m", "messages": HI})
    assert validation_error(info.value.errors()).param == "max_tokens"


def test_forbidden_keys_inside_tool_inputs_and_schemas_are_data():
    body = chat_of(
        messages=[
            {"role": "user", "content": "call it"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"endpoint": "/x"}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
        ],
        tools=[
            {"name": "f", "input_schema": {"type": "object", "properties": {"base_url": {"type": "string"}}}}
        ],
    )
    assert body.messages[1].tool_calls[0]["function"]["arguments"] == '{"endpoint":"/x"}'


# --- answers ---------------------------------------------------------------------------------------

META = CompletionMeta(model="m", id="msg_1")


def final(reason="stop", prompt=12, completion=5, cached=0, calls=()):
    usage = common_pb2.Usage(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached)
    return generation_pb2.Final(finish_reason=reason, usage=usage, tool_calls=list(calls))


CALL = generation_pb2.ToolCallDelta(
    index=0, id="call_1", type="function", name="weather", arguments='{"city": "Paris"}'
)
STOPS = [
    ("stop", "end_turn"),
    ("length", "max_tokens"),
    ("tool_calls", "tool_use"),
    ("content_filter", "refusal"),
]


@pytest.mark.parametrize(("finish", "stop_reason"), STOPS)
def test_a_whole_answer_is_a_valid_message(finish, stop_reason):
    calls = (CALL,) if finish == "tool_calls" else ()
    out = message_object(META, "Hello.", final(finish, cached=4, calls=calls))
    message = at.Message.model_validate(out)
    assert message.stop_reason == stop_reason and message.content[0].text == "Hello."
    assert (
        message.usage.input_tokens,
        message.usage.cache_read_input_tokens,
        message.usage.output_tokens,
    ) == (8, 4, 5)
    if calls:
        assert message.content[1].type == "tool_use" and message.content[1].input == {"city": "Paris"}


def test_tool_arguments_that_are_not_an_object_are_an_upstream_error():
    bad = generation_pb2.ToolCallDelta(index=0, id="c", name="f", arguments="[1, 2")
    with pytest.raises(ApiError) as info:
        message_object(META, "", final("tool_calls", calls=[bad]))
    assert info.value.status == 502


def events_of(payloads: list[bytes]) -> list[tuple[str, dict]]:
    out = []
    for block in b"".join(payloads).decode().split("\n\n"):
        if block:
            kind, data = block.split("\n")
            out.append((kind.removeprefix("event: "), orjson.loads(data.removeprefix("data: "))))
    return out


def validated(events):
    for kind, data in events:
        assert data["type"] == kind
        if kind == "ping":
            assert data == {"type": "ping"}
        elif kind == "error":
            at.ErrorResponse.model_validate(data)
        else:
            STREAM_EVENT.validate_python(data)
    return [kind for kind, _ in events]


def test_a_stream_of_text_then_a_tool_call_is_the_messages_event_sequence():
    encoder = MessageEvents(META, chat_of(messages=HI))
    pieces = [
        generation_pb2.ToolCallDelta(index=0, id="call_1", type="function", name="weather"),
        generation_pb2.ToolCallDelta(index=0, arguments='{"city": '),
        generation_pb2.ToolCallDelta(index=0, arguments='"Paris"}'),
    ]
    payloads = [
        encoder.delta("Hel"),
        encoder.delta("lo"),
        encoder.delta("", pieces[:1]),
        encoder.delta("", pieces[1:]),
    ]
    payloads += encoder.finish(final("tool_calls"))
    events = events_of(payloads)
    assert validated(events) == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = dict(events)["message_start"]["message"]
    assert start["id"] == "msg_1" and start["content"] == [] and start["stop_reason"] is None
    tool = events[6][1]["content_block"]
    assert (tool["type"], tool["id"], tool["name"], tool["input"]) == ("tool_use", "call_1", "weather", {})
    assert events[7][1]["index"] == 1 and events[7][1]["delta"]["type"] == "input_json_delta"
    delta = dict(events)["message_delta"]
    assert delta["delta"]["stop_reason"] == "tool_use" and delta["usage"]["output_tokens"] == 5


def test_an_empty_answer_still_starts_and_stops_the_message():
    events = events_of(MessageEvents(META, chat_of(messages=HI)).finish(final()))
    assert validated(events) == ["message_start", "ping", "message_delta", "message_stop"]


def test_a_failure_mid_stream_is_an_error_event_in_anthropic_shape():
    encoder = MessageEvents(META, chat_of(messages=HI))
    first = encoder.delta("partial")
    err = ApiError(400, "content policy violation: secret", code="content_policy_violation")
    events = events_of([first, encoder.error(err)])
    assert validated(events)[-1] == "error"
    assert events[-1][1]["error"] == {
        "type": "invalid_request_error",
        "message": "content policy violation: secret",
    }


ERROR_TYPES = [
    (400, "invalid_request_error"),
    (401, "authentication_error"),
    (403, "permission_error"),
    (404, "not_found_error"),
    (409, "invalid_request_error"),
    (413, "invalid_request_error"),
    (429, "rate_limit_error"),
    (500, "api_error"),
    (502, "api_error"),
    (503, "overloaded_error"),
    (504, "timeout_error"),
]


@pytest.mark.parametrize(("status", "kind"), ERROR_TYPES)
def test_every_status_has_its_anthropic_error_type(status, kind):
    body = anthropic_envelope(ApiError(status, "nope"))
    parsed = at.ErrorResponse.model_validate(body)
    assert parsed.error.type == kind and parsed.error.message == "nope"
