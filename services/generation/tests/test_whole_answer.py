"""GenerateRequest.whole_answer: a non-streamed upstream answer, sent as one Delta and the Final,
with routing, retries, deadlines, limits and accounting as for streams."""

import asyncio
import time

import grpc
import orjson
import pytest
from generation_service.metrics import GenerationMetrics
from generation_service.upstream import (
    ContentDelta,
    StreamDone,
    ToolCallPiece,
    ToolCallsDelta,
    whole_answer_events,
)
from llmsuite_common.errors import ServiceError, read_error_detail
from prometheus_client import CollectorRegistry

from .test_latency_metrics import INTER_TOKEN, TTFT, UPSTREAM, attempts, counts
from .test_resilience import by_model, routing_file
from .test_servicer import collect, failure
from .test_servicer import request as stream_request


def request(**kw):
    return stream_request(whole_answer=True, **kw)


async def test_the_whole_answer_is_one_delta_then_the_final_with_upstream_usage(fake, start_generation):
    stub = await start_generation()
    fake.script({"content": ["Hel", "lo, ", "wör", "ld 🌍"], "id": "chatcmpl-whole"})
    responses = [r async for r in stub.Generate(request())]
    assert [r.WhichOneof("event") for r in responses] == ["delta", "final"]
    delta, final = responses[0].delta, responses[1].final
    assert (delta.content, delta.role) == ("Hello, wörld 🌍", "assistant")
    assert (final.finish_reason, final.upstream_id) == ("stop", "chatcmpl-whole")
    # The fake counts 6 prompt words and one token per chunk it would have streamed.
    assert (final.usage.prompt_tokens, final.usage.completion_tokens, final.usage.total_tokens) == (6, 4, 10)
    [sent] = fake.requests()
    assert sent["body"]["stream"] is False and "stream_options" not in sent["body"]
    assert sent["headers"]["accept"] == "application/json"
    assert sent["body"]["stop"] == ["\n###"]


async def test_the_connection_is_reused_after_a_whole_answer(fake, start_generation):
    stub = await start_generation()
    for _ in range(3):
        await collect(stub.Generate(request()))
    assert len({r["client"] for r in fake.requests()}) == 1


async def test_usage_is_estimated_when_the_upstream_sends_none(fake, start_generation):
    stub = await start_generation()
    fake.script({"content": ["one two ", "three"], "usage": False})
    [delta], [final] = await collect(stub.Generate(request(content="a b c")))
    assert delta.content == "one two three"
    # As a prompt is estimated: the larger of words (3) and UTF-8 bytes / 4 (13 -> 4).
    assert final.usage.completion_tokens == 4
    assert final.usage.prompt_tokens == 3 + 4 + 3


async def test_whole_tool_calls_in_the_delta_and_the_final(fake, start_generation):
    stub = await start_generation()
    pieces = [
        {
            "index": 0,
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        },
        {"index": 0, "function": {"arguments": '{"city": '}},
        {"index": 0, "function": {"arguments": '"Paris"}'}},
        {"index": 1, "id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]
    fake.script({"content": [], "tool_calls": pieces, "finish_reason": "tool_calls"})
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    [delta], [final] = await collect(stub.Generate(request(tools_json=orjson.dumps(tools).decode())))
    expected = [
        (0, "call_1", "function", "get_weather", '{"city": "Paris"}'),
        (1, "call_2", "function", "get_time", "{}"),
    ]
    assert [(c.index, c.id, c.type, c.name, c.arguments) for c in delta.tool_calls] == expected
    assert (delta.content, delta.role) == ("", "assistant")
    assert [(c.index, c.id, c.type, c.name, c.arguments) for c in final.tool_calls] == expected
    assert final.finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("scenario", "code", "detail", "attempts"),
    [
        (
            {"status": 400, "body": {"error": {"message": "bad stop", "param": "stop"}}},
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_request",
            1,
        ),
        ({"status": 404}, grpc.StatusCode.NOT_FOUND, "model_not_found", 1),
        ({"status": 401}, grpc.StatusCode.UNAVAILABLE, "upstream_auth_failed", 1),
        (
            {"status": 500, "body": "Traceback (most recent call last): secret"},
            grpc.StatusCode.UNAVAILABLE,
            "upstream_error",
            3,
        ),
        ({"status": 504}, grpc.StatusCode.DEADLINE_EXCEEDED, "upstream_timeout", 3),
        ({"status": 429, "retry_after": "7"}, grpc.StatusCode.RESOURCE_EXHAUSTED, "rate_limit_exceeded", 1),
    ],
)
async def test_upstream_error_statuses(fake, start_generation, scenario, code, detail, attempts):
    stub = await start_generation(generation_backoff_base_seconds=0.001)
    fake.set_default(scenario)
    error = await failure(stub.Generate(request()))
    assert error.code() == code
    assert read_error_detail(error).code == detail
    assert "Traceback" not in (error.details() or "")
    assert len(fake.requests()) == attempts


async def test_retry_before_the_answer_then_success(fake, start_generation):
    stub = await start_generation(generation_backoff_base_seconds=0.001)
    fake.script({"status": 503}, {"status": 502}, {"chunks": 3})
    [delta], [final] = await collect(stub.Generate(request()))
    assert delta.content == "tok0 tok1 tok2 "
    assert final.attempts == 3


async def test_fallback_to_another_model(fake, start_generation, tmp_path):
    path = routing_file(
        tmp_path,
        fake,
        {"big": {"deployments": ["big-a"], "fallback": ["small"]}, "small": {"deployments": ["small-a"]}},
    )
    registry = CollectorRegistry()
    stub = await start_generation(GenerationMetrics(registry), generation_routing_file=path)
    fake.set_model_default("big-a", {"status": 503})
    [delta], [final] = await collect(stub.Generate(request(model="big")))
    assert (final.model, final.deployment, final.attempts) == ("small", "small-a", 2)
    assert delta.content
    assert by_model(fake) == {"big-a": 1, "small-a": 1}
    assert attempts(registry) == {("big-a", "upstream_error"): 1, ("small-a", "ok"): 1}


async def test_breaker_opens_on_failing_whole_answers(fake, start_generation):
    stub = await start_generation(generation_breaker_failures=2, generation_max_attempts=1)
    fake.set_default({"status": 500})
    for _ in range(2):
        await failure(stub.Generate(request()))
    error = await failure(stub.Generate(request()))
    assert read_error_detail(error).code == "upstream_circuit_open"
    assert len(fake.requests()) == 2


async def test_deadline_shorter_than_the_upstreams_answer(fake, start_generation):
    stub = await start_generation()
    fake.script({"chunks": 5, "stall": 5})
    started = time.monotonic()
    error = await failure(stub.Generate(request(), timeout=0.5))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 2
    [conn] = await fake.wait_until_closed()
    assert conn["closed_by"] == "client"


async def test_the_read_timeout_does_not_cut_a_long_generation(fake, start_generation):
    # A whole answer is silent while it is generated; only the total timeout bounds that.
    stub = await start_generation(generation_read_timeout_seconds=0.2, generation_max_attempts=1)
    fake.script({"chunks": 2, "stall": 0.6})
    [delta], [final] = await collect(stub.Generate(request()))
    assert delta.content == "tok0 tok1 " and final.finish_reason == "stop"


async def test_client_cancel_while_the_answer_is_generated_closes_the_upstream(fake, start_generation):
    stub = await start_generation()
    fake.script({"stall": 10})
    call = stub.Generate(request())
    for _ in range(100):
        if fake.connections()["open"]:
            break
        await asyncio.sleep(0.02)
    call.cancel()
    [conn] = await fake.wait_until_closed(timeout=1.0)
    assert conn["closed_by"] == "client"


async def test_stop_sequences_cut_the_whole_answer(fake, start_generation):
    stub = await start_generation()
    # The fake ignores `stop`; the default model stops at "\n###".
    fake.script({"content": ["Paris", " is the capital.\n#", "## Instruction:", " more"]})
    [delta], [final] = await collect(stub.Generate(request()))
    assert delta.content == "Paris is the capital."
    assert final.finish_reason == "stop"
    # Billed as generated: the upstream's own count.
    assert final.usage.completion_tokens == 4


async def test_the_token_cap_cuts_an_answer_past_it(fake, start_generation):
    stub = await start_generation()
    fake.script({"chunks": 50, "ignore_max_tokens": True})
    [delta], [final] = await collect(stub.Generate(request(max_tokens=4)))
    assert delta.content == "tok0 tok1 tok2 tok3 "
    assert final.finish_reason == "length"
    assert final.usage.completion_tokens == 50
    fake.script({"chunks": 50})
    [delta], [final] = await collect(stub.Generate(request(max_tokens=4)))
    assert (delta.content, final.finish_reason) == ("tok0 tok1 tok2 tok3 ", "length")


async def test_one_attempt_one_first_token_and_no_gaps(fake, start_generation, tmp_path):
    registry = CollectorRegistry()
    path = routing_file(tmp_path, fake, {"m": {"deployments": ["d"]}})
    stub = await start_generation(GenerationMetrics(registry), generation_routing_file=path)
    fake.script({"chunks": 20})
    await collect(stub.Generate(request(model="m")))
    assert counts(registry, UPSTREAM) == {("d", "ok"): 1}
    assert counts(registry, TTFT) == {("d",): 1}
    assert counts(registry, INTER_TOKEN) == {}
    assert (
        registry.get_sample_value(
            "llmsuite_generation_tokens_total",
            {"org": "default", "model": "m", "deployment": "d", "kind": "completion"},
        )
        == 20
    )


def test_answer_json_becomes_stream_events():
    raw = orjson.dumps(
        {
            "id": "x",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}],
                        "tool_calls": [
                            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                        ],
                    },
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5},
        }
    )
    assert whole_answer_events(raw) == [
        ContentDelta("Hi there", "assistant"),
        ToolCallsDelta((ToolCallPiece(0, "c", "function", "f", "{}"),), ""),
        StreamDone("tool_calls", {"prompt_tokens": 3, "completion_tokens": 5}, "x"),
    ]
    assert whole_answer_events(b'{"choices": []}') == [StreamDone("stop", None, "")]
    # A NUL is text like any other: it reaches the caller, not an error.
    nul = whole_answer_events(b'{"choices": [{"index": 0, "message": {"content": "a\\u0000b"}}]}')
    assert nul[0] == ContentDelta("a\x00b", "")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "upstream_protocol_error"),
        (b"[1, 2]", "upstream_protocol_error"),
        (b'{"error": {"message": "overloaded"}}', "upstream_stream_error"),
        # Hostile bodies: a lone surrogate, nesting past the parser's depth limit.
        (b'{"choices": [{"index": 0, "message": {"content": "a\\ud800b"}}]}', "upstream_protocol_error"),
        (b'{"choices": ' + b"[" * 5000 + b"]" * 5000 + b"}", "upstream_protocol_error"),
    ],
)
def test_unusable_answers_are_retryable_upstream_errors(raw, code):
    with pytest.raises(ServiceError) as info:
        whole_answer_events(raw)
    assert info.value.code == code


async def test_complete_is_the_whole_answer_in_one_reply(fake, start_generation):
    stub = await start_generation()
    fake.script({"content": ["Hel", "lo"], "id": "chatcmpl-one"})
    reply = await stub.Complete(stream_request())  # whole_answer is implied
    assert (reply.delta.content, reply.delta.role) == ("Hello", "assistant")
    assert (reply.final.finish_reason, reply.final.upstream_id, reply.final.attempts) == (
        "stop",
        "chatcmpl-one",
        1,
    )
    [sent] = fake.requests()
    assert sent["body"]["stream"] is False


async def test_complete_fails_with_the_same_status_as_generate(fake, start_generation):
    stub = await start_generation()
    fake.script({"status": 401}, {"status": 401})
    with pytest.raises(grpc.aio.AioRpcError) as completed:
        await stub.Complete(stream_request())
    generated = await failure(stub.Generate(request()))
    assert completed.value.code() == generated.code()
    assert read_error_detail(completed.value) == read_error_detail(generated)


async def test_an_answer_larger_than_a_message_may_be_is_refused_not_buffered(fake, start_generation):
    # The bound is the gRPC message limit: a larger answer could not be sent on anyway.
    stub = await start_generation(grpc_max_message_bytes=64 * 1024)
    fake.script({"content": ["x" * 1024] * 200})
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Complete(stream_request())
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert read_error_detail(info.value).code == "upstream_answer_too_large"
