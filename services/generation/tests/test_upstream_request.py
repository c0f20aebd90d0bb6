import math

import orjson
import pytest
from generation_service.routing import Deployment, Route
from generation_service.settings import GenerationSettings, ModelRoute
from generation_service.upstream import request_headers
from generation_service.upstream_request import (
    bodies_for,
    build_body,
    effective_max_tokens,
    merged_stops,
    route_request,
)
from generation_service.usage import estimate_prompt_tokens, resolve_usage
from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2
from llmsuite_common.errors import InvalidArgument
from llmsuite_common.request_context import REQUEST_ID_METADATA_KEY, request_id_var
from pydantic import SecretStr


def request(**kw):
    kw.setdefault("model", "m")
    kw.setdefault("messages", [common_pb2.ChatMessage(role="user", content="hi")])
    return generation_pb2.GenerateRequest(**kw)


ROUTE = ModelRoute(upstream_model="up-m", stop=["\n###"], max_tokens=64)


def test_body_maps_model_merges_stops_and_asks_for_usage():
    body = build_body(request(stop=["END", "\n###"], max_tokens=10, temperature=0.5, seed=3), ROUTE, "up-m")
    assert body["model"] == "up-m"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["stop"] == ["\n###", "END"]
    assert body["max_tokens"] == 10
    assert body["temperature"] == 0.5
    assert body["seed"] == 3
    assert "top_p" not in body


def test_unset_optionals_stay_out_of_the_body():
    body = build_body(request(), ModelRoute(upstream_model="x"), "x")
    assert set(body) == {"model", "messages", "stream", "stream_options"}


def test_max_tokens_default_and_ceiling():
    assert effective_max_tokens(64, None) == 64
    assert effective_max_tokens(64, 1000) == 64
    assert effective_max_tokens(None, 5) == 5
    assert effective_max_tokens(None, None) is None
    assert effective_max_tokens(64, 1000, 32) == 32
    assert effective_max_tokens(None, None, 32) == 32
    assert effective_max_tokens(None, 10, 32) == 10
    assert merged_stops([], ["", "a", "a"]) == ["a"]


@pytest.mark.parametrize(
    ("kw", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [common_pb2.ChatMessage(role="wizard", content="x")]}, "messages[0].role"),
        ({"temperature": math.nan}, "temperature"),
        ({"temperature": 3.0}, "temperature"),
        ({"top_p": math.inf}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"tools_json": "[{"}, "tools"),
        ({"tools_json": "[1, 2]"}, "tools"),
        ({"tools_json": '{"type": "function"}'}, "tools"),
        ({"tool_choice_json": "[]"}, "tool_choice"),
        ({"response_format_json": '"json"'}, "response_format"),
        (
            {"messages": [common_pb2.ChatMessage(role="assistant", tool_calls_json="{")]},
            "messages[0].tool_calls",
        ),
    ],
)
def test_bad_requests_name_the_field(kw, param):
    with pytest.raises(InvalidArgument) as info:
        build_body(request(**kw), ROUTE, "up-m")
    assert info.value.param == param


def test_usage_prefers_upstream_and_estimates_the_rest():
    given = resolve_usage(
        {"prompt_tokens": 9, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 2}},
        contents=["hello"],
        deltas=99,
    )
    assert (given.prompt_tokens, given.completion_tokens, given.cached_tokens, given.total_tokens) == (
        9,
        4,
        2,
        13,
    )
    estimated = resolve_usage(None, contents=["hi there"], deltas=5)
    assert estimated.completion_tokens == 5
    assert estimated.prompt_tokens == estimate_prompt_tokens(["hi there"]) == 2 + 4 + 3
    assert resolve_usage({"prompt_tokens": True}, contents=[], deltas=0).prompt_tokens == 3


def test_models_setting_parses_json_from_the_environment(monkeypatch):
    monkeypatch.setenv(
        "GENERATION_MODELS", '{"big": {"upstream_model": "org/big", "stop": ["</s>"], "max_tokens": 512}}'
    )
    monkeypatch.setenv("GENERATION_UPSTREAM_API_KEY", "sk-canary-123")
    settings = GenerationSettings()
    assert settings.generation_models == {
        "big": ModelRoute(upstream_model="org/big", stop=["</s>"], max_tokens=512)
    }
    assert "sk-canary-123" not in repr(settings)
    assert settings.otel_service_name == "generation" and settings.port == 50063


def test_default_model_carries_the_alpaca_stop():
    assert GenerationSettings().generation_models["gemma-3-270m"].stop == ["\n###"]


@pytest.mark.parametrize(
    "url", ["http://user:sk-canary@127.0.0.1:8081/v1", "ftp://127.0.0.1/v1", "127.0.0.1:8081"]
)
def test_upstream_url_must_be_plain_http(url):
    with pytest.raises(ValueError):
        GenerationSettings(generation_upstream_base_url=url)


def test_at_least_one_model_is_configured():
    with pytest.raises(ValueError):
        GenerationSettings(generation_models={})


def test_tools_tool_choice_and_response_format_pass_through_unchanged():
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    calls = [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]
    body = build_body(
        request(
            messages=[
                common_pb2.ChatMessage(role="user", content="weather?"),
                common_pb2.ChatMessage(role="assistant", tool_calls_json=orjson.dumps(calls).decode()),
                common_pb2.ChatMessage(role="tool", content='{"c": 21}', tool_call_id="call_1"),
            ],
            tools_json=orjson.dumps(tools).decode(),
            tool_choice_json='{"type": "function", "function": {"name": "get_weather"}}',
            response_format_json='{"type": "json_object"}',
        ),
        ROUTE,
        "up-m",
    )
    assert body["tools"] == tools
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"][1] == {"role": "assistant", "content": None, "tool_calls": calls}
    assert body["messages"][2] == {"role": "tool", "content": '{"c": 21}', "tool_call_id": "call_1"}


def test_org_cap_limits_max_tokens():
    assert build_body(request(max_tokens=100), ROUTE, "up-m", org_max_tokens=20)["max_tokens"] == 20


def test_a_whole_answer_is_asked_for_without_streaming():
    body = build_body(request(whole_answer=True), ROUTE, "up-m")
    assert body["stream"] is False
    assert "stream_options" not in body
    assert body["stop"] == ["\n###"] and body["max_tokens"] == 64


def test_route_request_is_the_model_and_the_requests_shape():
    plain = route_request(request(model="auto"), "acme")
    assert (plain.model, plain.org_id, plain.max_tokens, plain.has_tools) == ("auto", "acme", None, False)
    assert plain.prompt_tokens == estimate_prompt_tokens(["hi"])
    shaped = route_request(request(max_tokens=8, tools_json='[{"type": "function"}]'), "")
    assert (shaped.max_tokens, shaped.has_tools) == (8, True)


def test_bodies_for_checks_the_request_at_once_then_builds_each_deployments_body():
    first = Deployment("a", "http://127.0.0.1:1/v1", "up-a", SecretStr(""))
    other = Deployment("b", "http://127.0.0.1:1/v1", "up-b", SecretStr(""))
    route = Route("m", (first, other), stop=("\n###",), max_tokens=64)
    with pytest.raises(InvalidArgument):
        bodies_for(request(messages=[]), route, org_max_tokens=None)
    body_for = bodies_for(request(max_tokens=100), route, org_max_tokens=16)
    body = body_for(route, other)
    assert body["model"] == "up-b" and body["max_tokens"] == 16 and body["stop"] == ["\n###"]


def test_upstream_headers_carry_the_key_and_the_request_id():
    token = request_id_var.set("req-1")
    try:
        streamed = request_headers("sk-1", streamed=True)
    finally:
        request_id_var.reset(token)
    assert streamed["accept"] == "text/event-stream" and streamed["accept-encoding"] == "identity"
    assert streamed["authorization"] == "Bearer sk-1"
    assert streamed[REQUEST_ID_METADATA_KEY] == "req-1"
    whole = request_headers("", streamed=False)
    assert whole["accept"] == "application/json"
    assert "authorization" not in whole and REQUEST_ID_METADATA_KEY not in whole


def test_penalties_logit_bias_and_parallel_tool_calls_pass_through_unchanged():
    body = build_body(
        request(
            presence_penalty=0.5,
            frequency_penalty=-1.0,
            logit_bias_json='{"50256": -100}',
            parallel_tool_calls=False,
        ),
        ROUTE,
        "up-m",
    )
    assert body["presence_penalty"] == 0.5 and body["frequency_penalty"] == -1.0
    assert body["logit_bias"] == {"50256": -100}
    assert body["parallel_tool_calls"] is False


@pytest.mark.parametrize(
    ("kw", "param"),
    [
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"frequency_penalty": -3.0}, "frequency_penalty"),
        ({"logit_bias_json": "[1]"}, "logit_bias"),
    ],
)
def test_out_of_range_penalties_name_the_field(kw, param):
    with pytest.raises(InvalidArgument) as err:
        build_body(request(**kw), ROUTE, "up-m")
    assert err.value.param == param


def _with_image() -> generation_pb2.GenerateRequest:
    image = common_pb2.ImageUrl(url="https://example.com/cat.png", detail="low")
    inline = common_pb2.ImageUrl(url="data:image/png;base64,iVBORw0KGgo=")
    return request(
        messages=[common_pb2.ChatMessage(role="user", content="what is this?", images=[image, inline])]
    )


def test_images_go_to_a_vision_model_as_content_parts_after_the_text():
    body = build_body(_with_image(), ModelRoute(upstream_model="v", vision=True), "v")
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]


def test_images_to_a_model_without_vision_are_refused_naming_the_message():
    with pytest.raises(InvalidArgument) as err:
        build_body(_with_image(), ROUTE, "up-m")
    assert err.value.code == "images_not_supported" and err.value.param == "messages[0].content"
    assert "vision" in err.value.message


def test_a_request_with_images_falls_back_only_to_models_with_vision():
    from generation_service.routing import RoutingTable
    from generation_service.routing_config import RoutingConfig

    deployment = {"base_url": "http://127.0.0.1:1/v1", "upstream_model": "u"}
    config = RoutingConfig.model_validate(
        {
            "models": {
                "main": {"deployments": [deployment], "vision": True, "fallback": ["text", "eyes"]},
                "text": {"deployments": [deployment]},
                "eyes": {"deployments": [deployment], "vision": True},
            }
        }
    )
    table = RoutingTable(config, {})
    main = table.resolve(route_request(request(model="main"), ""))
    assert [r.model for r in table.chain(main)] == ["main", "text", "eyes"]
    assert [r.model for r in table.chain(main, vision=True)] == ["main", "eyes"]
