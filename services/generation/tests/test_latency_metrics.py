"""Upstream attempt duration, time to first token and inter-token gaps: exactly one observation per
attempt, one per call that produced a token and one per gap between consecutive content deltas."""

import grpc
import orjson
import pytest
from generation_service.accounting import Accounting
from generation_service.metrics import GenerationMetrics
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from .test_resilience import routing_file
from .test_servicer import collect, request

UPSTREAM = "llmsuite_generation_upstream_duration_seconds"
TTFT = "llmsuite_generation_time_to_first_token_seconds"
INTER_TOKEN = "llmsuite_generation_inter_token_seconds"


def counts(registry: CollectorRegistry, histogram: str) -> dict[tuple[str, ...], float]:
    """Observation counts of a histogram by its label values (in label order)."""
    return {
        tuple(s.labels.values()): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
        if s.name == f"{histogram}_count"
    }


def attempts(registry: CollectorRegistry) -> dict[tuple[str, ...], float]:
    return {
        tuple(s.labels.values()): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
        if s.name == "llmsuite_generation_upstream_attempts_total"
    }


async def start(fake, start_generation, tmp_path, **overrides):
    registry = CollectorRegistry()
    path = routing_file(tmp_path, fake, {"m": {"deployments": ["d"]}})
    stub = await start_generation(GenerationMetrics(registry), generation_routing_file=path, **overrides)
    return registry, stub


async def test_one_stream_is_one_attempt_one_first_token_and_a_gap_per_later_delta(
    fake, start_generation, tmp_path
):
    registry, stub = await start(fake, start_generation, tmp_path)
    fake.script({"chunks": 4}, {"chunks": 2})
    deltas, _ = await collect(stub.Generate(request(model="m")))
    assert len(deltas) == 4
    assert counts(registry, UPSTREAM) == {("d", "ok"): 1}
    assert counts(registry, TTFT) == {("d",): 1}
    assert counts(registry, INTER_TOKEN) == {("d",): 3}

    await collect(stub.Generate(request(model="m")))
    assert counts(registry, UPSTREAM) == {("d", "ok"): 2}
    assert counts(registry, TTFT) == {("d",): 2}
    # The second call's first delta opens a new sequence: no gap across calls.
    assert counts(registry, INTER_TOKEN) == {("d",): 4}


async def test_every_retried_attempt_is_timed_under_its_result(fake, start_generation, tmp_path):
    registry, stub = await start(fake, start_generation, tmp_path, generation_backoff_base_seconds=0.01)
    fake.script({"status": 503}, {"status": 502}, {"chunks": 3})
    _, [final] = await collect(stub.Generate(request(model="m")))
    assert final.attempts == 3
    timed = counts(registry, UPSTREAM)
    # Same series as the attempts counter, one observation per attempt.
    assert timed == attempts(registry)
    assert sum(timed.values()) == 3 and timed[("d", "ok")] == 1
    assert {result for _, result in timed} - {"ok"} and not {r for _, r in timed} & {"cancelled"}
    # The call had one first token, however many attempts it took.
    assert counts(registry, TTFT) == {("d",): 1}
    assert counts(registry, INTER_TOKEN) == {("d",): 2}


async def test_a_stream_failing_mid_way_is_timed_to_its_failure(fake, start_generation, tmp_path):
    registry, stub = await start(fake, start_generation, tmp_path)
    fake.script({"chunks": 5, "drop_after": 2})
    with pytest.raises(grpc.aio.AioRpcError):
        await collect(stub.Generate(request(model="m")))
    [(deployment, result)] = counts(registry, UPSTREAM)
    assert deployment == "d" and result not in ("ok", "cancelled")
    assert counts(registry, UPSTREAM) == attempts(registry) == {("d", result): 1}
    assert counts(registry, TTFT) == {("d",): 1}
    assert counts(registry, INTER_TOKEN) == {("d",): 1}


async def test_a_failure_before_any_token_has_no_first_token(fake, start_generation, tmp_path):
    registry, stub = await start(fake, start_generation, tmp_path)
    fake.set_default({"status": 400})
    with pytest.raises(grpc.aio.AioRpcError):
        await collect(stub.Generate(request(model="m")))
    assert sum(counts(registry, UPSTREAM).values()) == 1
    assert counts(registry, TTFT) == {}
    assert counts(registry, INTER_TOKEN) == {}


async def test_tool_call_deltas_give_a_first_token_but_no_content_gaps(fake, start_generation, tmp_path):
    registry, stub = await start(fake, start_generation, tmp_path)
    pieces = [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}},
        {"index": 0, "function": {"arguments": "{}"}},
    ]
    fake.script({"content": [], "tool_calls": pieces, "finish_reason": "tool_calls"})
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    await collect(stub.Generate(request(model="m", tools_json=orjson.dumps(tools).decode())))
    assert counts(registry, UPSTREAM) == {("d", "ok"): 1}
    assert counts(registry, TTFT) == {("d",): 1}
    assert counts(registry, INTER_TOKEN) == {}


def test_time_to_first_token_exemplar_is_the_calls_trace_id():
    registry = CollectorRegistry()
    span = TracerProvider().get_tracer("test").start_span("Generate")
    account = Accounting("m", ["hello"], span, GenerationMetrics(registry), started=100.0)

    class Committed:
        deployment = type("Deployment", (), {"name": "d"})()

    account.committed = Committed()  # type: ignore[assignment]
    account.first_token(now=100.25)
    account.first_token(now=101.0)  # only the first one counts
    span.end()

    [sample] = [
        s
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
        if s.name == f"{TTFT}_bucket" and s.exemplar is not None
    ]
    assert sample.labels == {"deployment": "d", "le": "0.25"}
    assert sample.exemplar.value == 0.25
    assert sample.exemplar.labels == {"trace_id": format(span.get_span_context().trace_id, "032x")}
    assert counts(registry, TTFT) == {("d",): 1}
