"""The gateway's output rail over a generation stream: releases, blocks, timed hold-back, tool calls."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from gateway_service.api.errors import ApiError
from gateway_service.pipeline.generation_reader import GenerationReader
from gateway_service.pipeline.output_rail import GuardedReader
from llmsuite.generation.v1 import generation_pb2
from llmsuite_common.rules.output_scan import OutputScanner
from llmsuite_common.rules.policy import OutputChecks

SECRET = "AKIAIOSFODNN7EXAMPLE"


class Call:
    """A Generate call's response side: the events it yields, and whether it was cancelled."""

    def __init__(self, events: AsyncIterator[generation_pb2.GenerateResponse]) -> None:
        self._events = events
        self.cancelled = False

    def __aiter__(self) -> AsyncIterator[generation_pb2.GenerateResponse]:
        return self._events

    def cancel(self) -> None:
        self.cancelled = True


def delta(text: str) -> generation_pb2.GenerateResponse:
    return generation_pb2.GenerateResponse(delta=generation_pb2.Delta(content=text))


def final() -> generation_pb2.GenerateResponse:
    return generation_pb2.GenerateResponse(final=generation_pb2.Final(finish_reason="stop"))


async def events_of(
    *items: generation_pb2.GenerateResponse,
) -> AsyncIterator[generation_pb2.GenerateResponse]:
    for item in items:
        yield item


def guarded(call: Call, **output: object) -> GuardedReader:
    return GuardedReader(GenerationReader(call), OutputScanner(OutputChecks.model_validate(output), "v1"))


async def read_all(reader: GenerationReader) -> list[generation_pb2.GenerateResponse]:
    out = []
    while (event := await reader.next()) is not None:
        out.append(event)
    return out


async def test_every_delta_is_released_as_its_own_chunk_then_final():
    reader = guarded(Call(events_of(delta("Hello"), delta(", "), delta("world"), final())))
    out = await read_all(reader)
    assert [e.delta.content for e in out[:-1]] == ["Hello", ", ", "world"]
    assert out[-1].final.finish_reason == "stop"


async def test_a_secret_split_across_deltas_is_blocked_before_release_with_a_hold_back():
    call = Call(events_of(delta("key: " + SECRET[:8]), delta(SECRET[8:]), delta(" done"), final()))
    reader = guarded(call, hold_back_tokens=16, secrets={"action": "block"})
    released: list[str] = []
    with pytest.raises(ApiError) as err:
        while (event := await reader.next()) is not None:
            released.append(event.delta.content)
    assert err.value.status == 400 and err.value.code == "content_policy_violation"
    assert SECRET[:8] not in "".join(released)
    assert call.cancelled


async def test_pii_is_redacted_in_the_released_text():
    reader = guarded(Call(events_of(delta("mail me at ada@example.com"), delta(" please"), final())))
    text = "".join(e.delta.content for e in await read_all(reader) if e.HasField("delta"))
    assert "ada@example.com" not in text and "[REDACTED:EMAIL]" in text


async def test_held_text_is_released_by_age_while_generation_is_silent():
    more = asyncio.Event()

    async def slow() -> AsyncIterator[generation_pb2.GenerateResponse]:
        yield delta("first")
        await more.wait()  # nothing more until the test has seen "first" released by age
        yield delta(" second")
        yield final()

    reader = guarded(Call(slow()), hold_back_tokens=100, hold_back_ms=5)
    first = await asyncio.wait_for(reader.next(), 5)
    assert first is not None and first.delta.content == "first"
    more.set()
    rest = await read_all(reader)
    assert [e.delta.content for e in rest[:-1]] == [" second"] and rest[-1].HasField("final")


async def test_tool_call_pieces_come_just_before_final():
    tool = generation_pb2.GenerateResponse(
        delta=generation_pb2.Delta(tool_calls=[generation_pb2.ToolCallDelta(index=0, id="c1", name="f")])
    )
    out = await read_all(guarded(Call(events_of(delta("ok"), tool, final()))))
    assert [e.WhichOneof("event") for e in out] == ["delta", "delta", "final"]
    assert out[1].delta.tool_calls[0].id == "c1"


async def test_a_stream_without_final_is_an_upstream_error():
    with pytest.raises(ApiError) as err:
        await read_all(guarded(Call(events_of(delta("cut")))))
    assert err.value.status == 502


async def test_a_batch_of_deltas_becomes_one_chunk_each_written_together():
    from gateway_service.api.completions import ChunkEncoder, CompletionMeta
    from gateway_service.api.sse_response import sse_events
    from gateway_service.pipeline.chat import StreamTally, chunk_batches

    batch = generation_pb2.GenerateResponse(
        deltas=generation_pb2.DeltaBatch(deltas=[generation_pb2.Delta(content=t) for t in ("a", "b", "c")])
    )
    reader = guarded(Call(events_of(delta("x"), batch, final())))
    tally = StreamTally()
    writes = [
        sse_events(batch)
        async for batch in chunk_batches(
            reader,
            ChunkEncoder(CompletionMeta(model="m"), include_usage=False),
            keepalive_seconds=5,
            on_first_token=lambda: None,
            tally=tally,
        )
    ]
    assert tally.parts == ["x", "a", "b", "c"] and tally.final is not None
    # One write per generation message: "x", then the batch (one event per delta), then Final.
    assert len(writes) == 3 and writes[1].count(b"data: ") == 3


async def test_the_rail_counts_its_scans_and_blocks_under_the_guardrails_metric_names():
    from llmsuite_common.rules.metrics import RuleMetrics
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    metrics = RuleMetrics(registry)
    scanner = OutputScanner(OutputChecks(), "v1")
    clean = GuardedReader(GenerationReader(Call(events_of(delta("fine"), final()))), scanner, metrics)
    await read_all(clean)
    scans = {"surface": "output", "check": "output_scan"}
    assert registry.get_sample_value("llmsuite_guardrails_check_seconds_count", scans) == 1
    leaking = GuardedReader(
        GenerationReader(Call(events_of(delta("key " + SECRET), final()))), scanner, metrics
    )
    with pytest.raises(ApiError):
        await read_all(leaking)
    blocked = {"surface": "output", "check": "secrets", "action": "block"}
    assert registry.get_sample_value("llmsuite_guardrails_findings_total", blocked) == 1


async def test_in_a_batch_the_text_before_a_violation_is_released_and_nothing_after_it():
    batch = generation_pb2.GenerateResponse(
        deltas=generation_pb2.DeltaBatch(
            deltas=[generation_pb2.Delta(content=t) for t in ("safe ", "words ", "key " + SECRET, " more")]
        )
    )
    call = Call(events_of(batch, final()))
    reader = guarded(call)
    released: list[str] = []
    with pytest.raises(ApiError) as err:
        while (event := await reader.next()) is not None:
            released.append(event.delta.content)
    assert err.value.code == "content_policy_violation"
    assert released == ["safe ", "words "] and call.cancelled
