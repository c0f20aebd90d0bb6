"""The servicer over real gRPC, against the fake upstream over real HTTP."""

import asyncio
import socket
import time

import grpc
import pytest
from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2
from llmsuite_common.errors import read_error_detail


def request(content="hello there, how are you today?", model="gemma-3-270m", **kw):
    return generation_pb2.GenerateRequest(
        model=model, messages=[common_pb2.ChatMessage(role="user", content=content)], **kw
    )


def deltas_of(response: generation_pb2.GenerateResponse) -> list[generation_pb2.Delta]:
    """A message's deltas: one, or several that were ready together (a batch)."""
    kind = response.WhichOneof("event")
    return [response.delta] if kind == "delta" else list(response.deltas.deltas) if kind == "deltas" else []


async def collect(call):
    deltas, finals = [], []
    async for response in call:
        if response.HasField("final"):
            finals.append(response.final)
        else:
            assert not finals, "a delta arrived after the Final"
            deltas.extend(deltas_of(response))
    return deltas, finals


async def failure(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await collect(call)
    return info.value


async def test_deltas_stream_in_order_then_one_final_with_upstream_usage(fake, start_generation):
    stub = await start_generation()
    fake.script({"content": ["Hel", "lo, ", "wör", "ld 🌍"], "id": "chatcmpl-xyz"})
    deltas, finals = await collect(stub.Generate(request()))
    assert [d.content for d in deltas] == ["Hel", "lo, ", "wör", "ld 🌍"]
    assert deltas[0].role == "assistant"
    [final] = finals
    assert final.finish_reason == "stop"
    assert final.upstream_id == "chatcmpl-xyz"
    sent = fake.requests()[-1]["body"]
    assert (final.usage.completion_tokens, final.usage.prompt_tokens) == (4, 6)
    assert final.usage.total_tokens == 10
    assert sent["model"] == "gemma-3-270m"
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


async def test_deltas_are_forwarded_as_they_arrive(fake, start_generation):
    stub = await start_generation()
    fake.script({"chunks": 3, "delay": 0.3})
    arrivals = []
    async for _response in stub.Generate(request()):
        arrivals.append(time.monotonic())
    # 3 deltas + Final: the first delta must not wait for the whole 0.6 s stream.
    assert arrivals[-1] - arrivals[0] >= 0.5


async def test_usage_is_counted_locally_when_the_upstream_omits_it(fake, start_generation):
    stub = await start_generation()
    fake.script({"chunks": 7, "usage": False})
    deltas, [final] = await collect(stub.Generate(request(content="one two three")))
    assert len(deltas) == 7
    assert final.usage.completion_tokens == 7
    # 3 words -> max(3, ceil(13/4)=4) + 4 per message + 3 for the reply.
    assert final.usage.prompt_tokens == 4 + 4 + 3
    assert final.usage.total_tokens == final.usage.prompt_tokens + 7


async def test_request_fields_reach_the_upstream(fake, start_generation):
    stub = await start_generation(generation_upstream_api_key="sk-canary-123")
    call = stub.Generate(
        request(stop=["END"], max_tokens=2, temperature=0.2), metadata=(("x-request-id", "req-1"),)
    )
    await collect(call)
    [seen] = fake.requests()
    assert seen["headers"]["authorization"] == "Bearer sk-canary-123"
    assert seen["headers"]["x-request-id"] == "req-1"
    assert seen["body"]["stop"] == ["\n###", "END"]
    assert seen["body"]["max_tokens"] == 2
    assert seen["body"]["messages"] == [{"role": "user", "content": "hello there, how are you today?"}]


async def test_finish_reason_length_is_passed_on(fake, start_generation):
    stub = await start_generation()
    deltas, [final] = await collect(stub.Generate(request(max_tokens=2)))
    assert len(deltas) == 2 and final.finish_reason == "length"


async def test_utf8_and_lines_split_at_every_byte_arrive_intact(fake, start_generation):
    # No stop sequences: nothing is held back, so chunk boundaries must survive too.
    stub = await start_generation(generation_models={"gemma-3-270m": {"upstream_model": "gemma-3-270m"}})
    text = ["日本", "語 ", "🌍é", "\n\ndata: [DONE]\n\n"]
    fake.script({"content": text, "split": 1, "piece_delay": 0, "line_ending": "\r\n"})
    deltas, [final] = await collect(stub.Generate(request()))
    assert [d.content for d in deltas] == text
    fake.script({"content": text, "split": 7, "split_seed": 11, "line_ending": "\r"})
    deltas, _ = await collect(stub.Generate(request()))
    assert "".join(d.content for d in deltas) == "".join(text)


async def test_unknown_model_is_not_found(fake, start_generation):
    stub = await start_generation()
    error = await failure(stub.Generate(request(model="gpt-nope")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert read_error_detail(error).param == "model"
    assert fake.requests() == []


async def test_empty_messages_are_invalid(fake, start_generation):
    stub = await start_generation()
    error = await failure(stub.Generate(generation_pb2.GenerateRequest(model="gemma-3-270m")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fake.requests() == []


async def test_list_models_returns_public_names(start_generation):
    stub = await start_generation(
        generation_models={"a": {"upstream_model": "x"}, "b": {"upstream_model": "y", "stop": ["###"]}}
    )
    response = await stub.ListModels(generation_pb2.ListModelsRequest())
    assert [m.id for m in response.models] == ["a", "b"]


@pytest.mark.parametrize(
    ("scenario", "code", "attempts"),
    [
        (
            {"status": 400, "body": {"error": {"message": "bad stop", "param": "stop"}}},
            grpc.StatusCode.INVALID_ARGUMENT,
            1,
        ),
        ({"status": 422}, grpc.StatusCode.INVALID_ARGUMENT, 1),
        ({"status": 404}, grpc.StatusCode.NOT_FOUND, 1),
        ({"status": 401}, grpc.StatusCode.UNAVAILABLE, 1),
        ({"status": 403}, grpc.StatusCode.UNAVAILABLE, 1),
        # Before the first token: retried, up to GENERATION_MAX_ATTEMPTS (3).
        (
            {"status": 500, "body": "Traceback (most recent call last): secret"},
            grpc.StatusCode.UNAVAILABLE,
            3,
        ),
        ({"status": 503}, grpc.StatusCode.UNAVAILABLE, 3),
        # After the first token: committed, never retried.
        ({"drop_after": 2}, grpc.StatusCode.UNAVAILABLE, 1),
        ({"malformed_after": 2}, grpc.StatusCode.UNAVAILABLE, 1),
        ({"no_done": True}, grpc.StatusCode.UNAVAILABLE, 1),
        ({"error_after": 2}, grpc.StatusCode.UNAVAILABLE, 1),
    ],
)
async def test_upstream_faults_map_to_status_codes(fake, start_generation, scenario, code, attempts):
    stub = await start_generation(generation_backoff_base_seconds=0.01)
    fake.set_default(scenario)
    error = await failure(stub.Generate(request()))
    assert error.code() == code
    assert "Traceback" not in (error.details() or "")
    assert read_error_detail(error) is not None
    assert len(fake.requests()) == attempts


async def test_mid_stream_failures_say_what_happened(fake, start_generation):
    stub = await start_generation()
    expected = {
        "drop_after": "closed the connection",
        "malformed_after": "malformed JSON",
        "no_done": "without [DONE]",
        "error_after": "scripted failure mid-stream",
    }
    for field, words in expected.items():
        fake.script({field: True} if field == "no_done" else {field: 2})
        call = stub.Generate(request())
        deltas = []
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for response in call:
                deltas.append(response)
        assert words in info.value.details(), field
        assert not any(r.HasField("final") for r in deltas), "no Final after a failure"


async def test_rate_limit_carries_retry_after_when_the_deadline_is_shorter(fake, start_generation):
    stub = await start_generation()
    fake.set_default({"status": 429, "retry_after": "2"})
    started = time.monotonic()
    error = await failure(stub.Generate(request(), timeout=1.5))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert read_error_detail(error).param == "retry_after=2"
    # Failed fast: no waiting out a Retry-After the deadline cannot cover, and no second attempt.
    assert time.monotonic() - started < 1.0
    assert len(fake.requests()) == 1


async def test_unreachable_upstream_is_unavailable(start_generation):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    stub = await start_generation(generation_upstream_base_url=f"http://127.0.0.1:{port}/v1")
    error = await failure(stub.Generate(request()))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert read_error_detail(error).code == "upstream_unreachable"


async def test_upstream_silence_beyond_the_read_timeout_is_deadline_exceeded(fake, start_generation):
    stub = await start_generation(generation_read_timeout_seconds=0.3, generation_max_attempts=1)
    fake.script({"stall_after_headers": 5})
    error = await failure(stub.Generate(request()))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert read_error_detail(error).code == "upstream_timeout"
    await fake.wait_until_closed()


async def test_deadline_shorter_than_a_stalled_upstream(fake, start_generation):
    stub = await start_generation()
    fake.script({"stall": 5})
    started = time.monotonic()
    error = await failure(stub.Generate(request(), timeout=0.5))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 2
    [conn] = await fake.wait_until_closed()
    assert conn["closed_by"] == "client"


async def test_client_cancel_mid_stream_closes_the_upstream_connection(fake, start_generation):
    stub = await start_generation()
    fake.script({"chunks": 200, "delay": 0.05})
    call = stub.Generate(request())
    received = 0
    async for _response in call:
        received += 1
        if received == 3:
            break
    call.cancel()
    [conn] = await fake.wait_until_closed(timeout=1.0)
    assert conn["closed_by"] == "client"
    assert conn["chunks_sent"] < 200


async def test_client_cancel_before_the_first_token_closes_the_upstream_connection(fake, start_generation):
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
    assert conn["chunks_sent"] == 0


async def test_the_upstream_connection_is_reused_after_a_complete_stream(fake, start_generation):
    stub = await start_generation()
    for _ in range(3):
        await collect(stub.Generate(request()))
    assert len({r["client"] for r in fake.requests()}) == 1


async def test_an_upstream_silent_before_its_headers_meets_the_read_timeout(fake, start_generation):
    stub = await start_generation(generation_read_timeout_seconds=0.3, generation_max_attempts=1)
    fake.script({"stall": 5})
    started = time.monotonic()
    error = await failure(stub.Generate(request()))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert read_error_detail(error).code == "upstream_timeout"
    assert time.monotonic() - started < 2
    await fake.wait_until_closed()


async def test_the_upstream_connection_is_reused_after_an_error_status(fake, start_generation):
    stub = await start_generation(generation_backoff_base_seconds=0.001)
    fake.script({"status": 503}, {"status": 400})
    await failure(stub.Generate(request()))
    await collect(stub.Generate(request()))
    assert len({r["client"] for r in fake.requests()}) == 1
