"""Routing, retries, breaker, fallbacks and cost controls over real gRPC against the fake upstream.

One fake plays several deployments: each deployment asks for its own upstream
model name, and the fake scripts behaviour per model name.
"""

import asyncio
import json
import logging
import time

import grpc
import orjson
import pytest
from generation_service.metrics import GenerationMetrics
from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2
from llmsuite_common.clock import ManualClock
from llmsuite_common.errors import read_error_detail
from prometheus_client import CollectorRegistry

from .test_servicer import collect, deltas_of, failure, request


def routing_file(tmp_path, fake, models, **extra):
    """A routing file whose deployments all point at the fake, told apart by upstream model."""
    doc = {"models": {}, **extra}
    for name, spec in models.items():
        spec = dict(spec)
        spec["deployments"] = [
            {"name": d, "base_url": fake.base_url, "upstream_model": d} if isinstance(d, str) else d
            for d in spec["deployments"]
        ]
        doc["models"][name] = spec
    path = tmp_path / "routing.json"
    path.write_text(json.dumps(doc))
    return str(path)


def by_model(fake):
    counts: dict[str, int] = {}
    for r in fake.requests():
        counts[r["body"]["model"]] = counts.get(r["body"]["model"], 0) + 1
    return counts


async def test_retry_before_the_first_token_then_success(fake, start_generation):
    stub = await start_generation(generation_backoff_base_seconds=0.01)
    fake.script({"status": 503}, {"stall": 0.1, "status": 502}, {"chunks": 3})
    deltas, [final] = await collect(stub.Generate(request()))
    assert len(deltas) == 3
    assert final.attempts == 3
    assert len(fake.requests()) == 3


async def test_never_retried_after_the_first_token(fake, start_generation):
    stub = await start_generation()
    fake.script({"chunks": 5, "drop_after": 2}, {"chunks": 5})
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for response in stub.Generate(request()):
            received.append(response)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    # Exactly the two tokens the upstream sent, nothing spliced from a second attempt.
    assert [d.content for r in received for d in deltas_of(r)] == ["tok0 ", "tok1 "]
    assert len(fake.requests()) == 1


@pytest.mark.parametrize("status", [400, 401, 422])
async def test_no_retry_on_caller_or_credential_errors(fake, start_generation, status):
    stub = await start_generation()
    fake.set_default({"status": status})
    await failure(stub.Generate(request()))
    assert len(fake.requests()) == 1


async def test_429_retry_after_is_passed_on_and_never_retried_early(fake, start_generation):
    stub = await start_generation(generation_backoff_base_seconds=0.01)
    fake.set_default({"status": 429, "retry_after": "2"})
    started = time.monotonic()
    error = await failure(stub.Generate(request(), timeout=10))
    assert time.monotonic() - started < 1.0
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert read_error_detail(error).param == "retry_after=2"
    assert len(fake.requests()) == 1


async def test_429_retry_after_is_waited_out_when_allowed_and_the_deadline_permits(fake, start_generation):
    clock = ManualClock()
    stub = await start_generation(clock=clock, generation_max_retry_after_seconds=5)
    fake.script({"status": 429, "retry_after": "1"}, {"chunks": 2})
    started = clock()
    deltas, [final] = await collect(stub.Generate(request(), timeout=10))
    assert len(deltas) == 2 and final.attempts == 2
    assert len(fake.requests()) == 2
    # The retry waited out the Retry-After (and a backoff) on the app's clock.
    assert clock() - started >= 1.0


async def test_429_retry_goes_to_another_deployment_at_once(fake, start_generation, tmp_path):
    path = routing_file(tmp_path, fake, {"m": {"deployments": ["d1", "d2"]}})
    stub = await start_generation(generation_routing_file=path)
    fake.set_model_default("d1", {"status": 429, "retry_after": "30"})
    fake.set_model_default("d2", {"status": 429, "retry_after": "30"})
    fake.script({"status": 429, "retry_after": "30"}, {"chunks": 2})
    started = time.monotonic()
    _, [final] = await collect(stub.Generate(request(model="m")))
    assert time.monotonic() - started < 1.0
    assert final.attempts == 2
    first, second = fake.requests()
    assert first["body"]["model"] != second["body"]["model"]


async def test_fallback_to_a_second_deployment_before_the_first_token(fake, start_generation, tmp_path):
    # Weighted so the broken one is (all but certainly) picked first: each request must fail over.
    broken = {"name": "broken", "base_url": fake.base_url, "upstream_model": "broken", "weight": 10_000}
    path = routing_file(tmp_path, fake, {"m": {"deployments": [broken, "healthy"]}})
    stub = await start_generation(generation_routing_file=path, generation_breaker_failures=5)
    fake.set_model_default("broken", {"status": 500})
    for _ in range(6):
        deltas, [final] = await collect(stub.Generate(request(model="m")))
        assert final.deployment == "healthy" and deltas
    counts = by_model(fake)
    assert counts["healthy"] == 6
    # Each request tried the broken one first until its breaker opened (5 failures).
    assert counts["broken"] == 5


async def test_fallback_to_another_model(fake, start_generation, tmp_path):
    path = routing_file(
        tmp_path,
        fake,
        {"big": {"deployments": ["big-a"], "fallback": ["small"]}, "small": {"deployments": ["small-a"]}},
    )
    stub = await start_generation(generation_routing_file=path)
    fake.set_model_default("big-a", {"status": 503})
    _, [final] = await collect(stub.Generate(request(model="big")))
    assert (final.model, final.deployment, final.attempts) == ("small", "small-a", 2)


async def test_one_always_failing_deployment_is_ejected_and_traffic_shifts(fake, start_generation, tmp_path):
    path = routing_file(tmp_path, fake, {"m": {"deployments": ["bad", "good"]}})
    registry = CollectorRegistry()
    stub = await start_generation(
        GenerationMetrics(registry), generation_routing_file=path, generation_breaker_failures=3
    )
    fake.set_model_default("bad", {"status": 500})
    for _ in range(40):
        await collect(stub.Generate(request(model="m")))
    # The breaker opened after 3 failures; no half-open probe within 10 s.
    assert by_model(fake)["bad"] == 3
    sample = registry.get_sample_value
    assert sample("llmsuite_generation_breaker_opened_total", {"deployment": "bad"}) == 1
    assert (
        sample(
            "llmsuite_generation_upstream_attempts_total", {"deployment": "bad", "result": "upstream_error"}
        )
        == 3
    )
    assert sample("llmsuite_generation_upstream_attempts_total", {"deployment": "good", "result": "ok"}) == 40
    assert sample("llmsuite_generation_requests_total", {"model": "m", "outcome": "completed"}) == 40
    good_completion = {"org": "default", "model": "m", "deployment": "good", "kind": "completion"}
    assert sample("llmsuite_generation_tokens_total", good_completion) > 0


async def test_circuit_breaker_opens_fails_fast_and_recovers_through_half_open(fake, start_generation):
    clock = ManualClock()
    stub = await start_generation(
        clock=clock,
        generation_breaker_failures=3,
        generation_breaker_open_seconds=0.5,
        generation_max_attempts=1,
    )
    fake.set_default({"status": 500})
    for _ in range(3):
        error = await failure(stub.Generate(request()))
        assert read_error_detail(error).code == "upstream_error"
    # Open: fails fast without calling the upstream.
    error = await failure(stub.Generate(request()))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert read_error_detail(error).code == "upstream_circuit_open"
    assert len(fake.requests()) == 3
    # Half-open after 0.5 s: a failing probe opens it again.
    clock.advance(0.5)
    await failure(stub.Generate(request()))
    assert len(fake.requests()) == 4
    assert read_error_detail(await failure(stub.Generate(request()))).code == "upstream_circuit_open"
    # The next probe succeeds and closes it.
    fake.set_default(None)
    clock.advance(0.5)
    for _ in range(3):
        _, [final] = await collect(stub.Generate(request()))
        assert final.finish_reason == "stop"
    assert len(fake.requests()) == 7


async def failing_requests(stub, requests: int = 200, concurrency: int = 10) -> list[grpc.aio.AioRpcError]:
    errors: list[grpc.aio.AioRpcError] = []

    async def client(n: int) -> None:
        for _ in range(n):
            errors.append(await failure(stub.Generate(request())))

    await asyncio.gather(*(client(requests // concurrency) for _ in range(concurrency)))
    return errors


async def test_a_failing_upstream_gets_at_most_1_1_attempts_per_request(fake, start_generation):
    # The defaults: the breaker opens after 10 consecutive failures, then fails fast.
    stub = await start_generation(clock=ManualClock())
    fake.set_default({"status": 503})
    errors = await failing_requests(stub)
    attempts = len(fake.requests())
    assert attempts / 200 <= 1.1, attempts
    circuit_open = [e for e in errors if read_error_detail(e).code == "upstream_circuit_open"]
    assert len(circuit_open) >= 150
    # It says when the half-open probe goes (the breaker's 10 s), for the caller's Retry-After.
    assert {read_error_detail(e).param for e in circuit_open} == {"retry_after=10"}


async def test_without_its_breaker_a_failing_upstream_gets_only_the_budgets_share_more(
    fake, start_generation
):
    # Breaker out of reach: the retry budget alone bounds the retries, to 20 % of the 200 requests
    # plus the reserve (1 a second over the 10 s window).
    stub = await start_generation(
        clock=ManualClock(), generation_breaker_failures=1000, generation_backoff_base_seconds=0.001
    )
    fake.set_default({"status": 503})
    await failing_requests(stub)
    attempts = len(fake.requests())
    assert 200 <= attempts <= 200 + 40 + 10, attempts


async def test_a_503_retry_after_is_honoured_and_passed_on(fake, start_generation):
    clock = ManualClock()
    stub = await start_generation(clock=clock)
    fake.script({"status": 503, "retry_after": "7"})
    # One deployment, asked to pause 7 s: no retry before then; the caller gets the 503's pause.
    error = await failure(stub.Generate(request()))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    detail = read_error_detail(error)
    assert (detail.code, detail.param) == ("upstream_unavailable", "retry_after=7")
    assert len(fake.requests()) == 1
    # A new request during the pause is told how long is left, without calling the upstream (after a
    # 429 a new request may still ask: a refusal costs nothing).
    clock.advance(3)
    error = await failure(stub.Generate(request()))
    detail = read_error_detail(error)
    assert (detail.code, detail.param) == ("upstream_unavailable", "retry_after=4")
    assert len(fake.requests()) == 1
    clock.advance(4)
    _, [final] = await collect(stub.Generate(request()))
    assert final.attempts == 1


async def test_deadline_of_2_s_against_an_upstream_taking_5_s(fake, start_generation):
    stub = await start_generation()
    fake.set_default({"chunks": 5, "stall": 5})
    started = time.monotonic()
    error = await failure(stub.Generate(request(), timeout=2))
    elapsed = time.monotonic() - started
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 1.9 <= elapsed < 2.5
    [conn] = await fake.wait_until_closed(timeout=1.0)
    assert conn["closed_by"] == "client"


def ended_early(caplog):
    return [r for r in caplog.records if r.getMessage() == "generation ended early"]


async def test_cancel_after_5_tokens_closes_the_upstream_and_bills_what_was_generated(
    fake, start_generation, caplog
):
    caplog.set_level(logging.INFO, logger="generation_service.accounting")
    stub = await start_generation()
    fake.script({"chunks": 200, "delay": 0.05})
    call = stub.Generate(request())
    received = 0
    async for _response in call:
        received += 1
        if received == 5:
            break
    call.cancel()
    [conn] = await fake.wait_until_closed(timeout=1.0)
    assert conn["closed_by"] == "client"
    assert 5 <= conn["chunks_sent"] < 200
    for _ in range(50):
        if ended_early(caplog):
            break
        await asyncio.sleep(0.02)
    [record] = ended_early(caplog)
    assert record.outcome == "cancelled"
    # Billed: the tokens the upstream sent before the close, not the 200 it would have.
    assert 5 <= record.completion_tokens <= conn["chunks_sent"]
    assert record.prompt_tokens > 0


async def test_cancel_before_the_first_token_bills_nothing(fake, start_generation, caplog):
    caplog.set_level(logging.INFO, logger="generation_service.accounting")
    stub = await start_generation()
    fake.script({"stall_after_headers": 10})
    call = stub.Generate(request())
    for _ in range(100):
        if fake.connections()["open"]:
            break
        await asyncio.sleep(0.02)
    call.cancel()
    [conn] = await fake.wait_until_closed(timeout=1.0)
    assert conn["closed_by"] == "client"
    for _ in range(50):
        if ended_early(caplog):
            break
        await asyncio.sleep(0.02)
    [record] = ended_early(caplog)
    assert (record.outcome, record.completion_tokens) == ("cancelled", 0)


async def test_stop_sequences_are_enforced_even_when_the_upstream_ignores_them(fake, start_generation):
    stub = await start_generation()
    # The fake ignores `stop`; the default model stops at "\n###".
    fake.script(
        {"content": ["Paris", " is the capital.\n#", "## Instruction:", " more"] + ["x"] * 100, "delay": 0.02}
    )
    deltas, [final] = await collect(stub.Generate(request()))
    assert "".join(d.content for d in deltas) == "Paris is the capital."
    assert final.finish_reason == "stop"
    assert final.usage.completion_tokens == 3
    [conn] = await fake.wait_until_closed()
    assert conn["closed_by"] == "client" and conn["chunks_sent"] < 100


async def test_max_tokens_is_enforced_even_when_the_upstream_ignores_it(fake, start_generation):
    stub = await start_generation()
    fake.script({"chunks": 50, "ignore_max_tokens": True, "delay": 0.01})
    deltas, [final] = await collect(stub.Generate(request(max_tokens=4)))
    assert [d.content for d in deltas] == ["tok0 ", "tok1 ", "tok2 ", "tok3 "]
    assert final.finish_reason == "length"
    [conn] = await fake.wait_until_closed()
    assert conn["chunks_sent"] < 50


async def test_org_max_tokens_cap_reaches_the_upstream(fake, start_generation, tmp_path):
    path = routing_file(tmp_path, fake, {"m": {"deployments": ["d"]}}, orgs={"acme": {"max_tokens": 3}})
    stub = await start_generation(generation_routing_file=path)
    req = request(model="m", max_tokens=100)
    req.context.org_id = "acme"
    deltas, [final] = await collect(stub.Generate(req))
    assert fake.requests()[-1]["body"]["max_tokens"] == 3
    assert len(deltas) <= 3 and final.finish_reason == "length"


async def test_usage_and_cost_in_the_final_message(fake, start_generation, tmp_path):
    deployment = {
        "name": "priced",
        "base_url": fake.base_url,
        "upstream_model": "priced",
        "price": {"prompt": 1000.0, "completion": 2000.0},
    }
    path = routing_file(tmp_path, fake, {"m": {"deployments": [deployment]}})
    stub = await start_generation(generation_routing_file=path)
    fake.script({"chunks": 4, "usage": False})
    _, [final] = await collect(stub.Generate(request(model="m", content="one two three")))
    assert final.usage.completion_tokens == 4
    assert final.cost_usd == pytest.approx((final.usage.prompt_tokens * 1000 + 4 * 2000) / 1e6)


async def test_tool_call_deltas_and_structured_output_stream_through(fake, start_generation):
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
    ]
    fake.script({"content": [], "tool_calls": pieces, "finish_reason": "tool_calls"})
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    req = request(
        tools_json=orjson.dumps(tools).decode(),
        tool_choice_json='"auto"',
        response_format_json='{"type": "json_object"}',
    )
    deltas, [final] = await collect(stub.Generate(req))
    sent = fake.requests()[-1]["body"]
    assert sent["tools"] == tools and sent["tool_choice"] == "auto"
    assert sent["response_format"] == {"type": "json_object"}
    calls = [c for d in deltas for c in d.tool_calls]
    assert [(c.index, c.id, c.name, c.arguments) for c in calls] == [
        (0, "call_1", "get_weather", ""),
        (0, "", "", '{"city": '),
        (0, "", "", '"Paris"}'),
    ]
    assert deltas[0].role == "assistant"
    assert final.finish_reason == "tool_calls"
    [whole] = final.tool_calls
    assert (whole.index, whole.id, whole.type, whole.name, whole.arguments) == (
        0,
        "call_1",
        "function",
        "get_weather",
        '{"city": "Paris"}',
    )


async def test_auto_routes_short_requests_to_the_small_model(fake, start_generation, tmp_path):
    path = routing_file(
        tmp_path,
        fake,
        {"tiny": {"deployments": ["tiny-up"]}, "large": {"deployments": ["large-up"]}},
        auto={"small": "tiny", "large": "large", "max_prompt_tokens": 50, "max_completion_tokens": 8},
    )
    stub = await start_generation(generation_routing_file=path)
    _, [final] = await collect(
        stub.Generate(request(model="auto", content="positive or negative: great!", max_tokens=2))
    )
    assert final.model == "tiny"
    _, [final] = await collect(stub.Generate(request(model="auto", content="Write an essay about rivers.")))
    assert final.model == "large"
    listed = await stub.ListModels(generation_pb2.ListModelsRequest())
    assert [m.id for m in listed.models] == ["tiny", "large", "auto"]


async def test_routing_file_is_reloaded_without_restart(fake, start_generation, tmp_path):
    path = routing_file(tmp_path, fake, {"m": {"deployments": ["d"]}})
    stub = await start_generation(generation_routing_file=path, generation_routing_reload_seconds=0.05)
    routing_file(tmp_path, fake, {"m": {"deployments": ["d"], "aliases": ["m2"]}})
    for _ in range(100):
        listed = await stub.ListModels(generation_pb2.ListModelsRequest())
        if "m2" in [m.id for m in listed.models]:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("routing file change not picked up within 5 s")
    _, [final] = await collect(stub.Generate(request(model="m2")))
    assert final.model == "m"


async def test_chat_messages_with_tool_results_reach_the_upstream(fake, start_generation):
    stub = await start_generation()
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    req = generation_pb2.GenerateRequest(
        model="gemma-3-270m",
        messages=[
            common_pb2.ChatMessage(role="user", content="hi"),
            common_pb2.ChatMessage(role="assistant", tool_calls_json=orjson.dumps(calls).decode()),
            common_pb2.ChatMessage(role="tool", content="42", tool_call_id="c1"),
        ],
    )
    await collect(stub.Generate(req))
    sent = fake.requests()[-1]["body"]["messages"]
    assert sent[1] == {"role": "assistant", "content": None, "tool_calls": calls}
    assert sent[2] == {"role": "tool", "content": "42", "tool_call_id": "c1"}
