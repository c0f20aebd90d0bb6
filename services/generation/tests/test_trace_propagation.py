"""One trace from the gRPC caller, through this service, to the upstream HTTP request."""

import pytest
from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2
from opentelemetry import propagate
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@pytest.fixture
def spans():
    """A private provider for the server's and the upstream client's spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield provider, exporter
    finally:
        provider.shutdown()


async def test_upstream_request_carries_the_callers_trace(spans, fake, start_generation):
    provider, exporter = spans
    stub = await start_generation(tracer_provider=provider)
    request = generation_pb2.GenerateRequest(
        model="gemma-3-270m", messages=[common_pb2.ChatMessage(role="user", content="trace me")]
    )
    with provider.get_tracer("test").start_as_current_span("caller") as caller:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        async for _ in stub.Generate(request, metadata=tuple(carrier.items())):
            pass
    trace_id = format(caller.get_span_context().trace_id, "032x")

    [seen] = fake.requests()
    traceparent = seen["headers"]["traceparent"]
    _, upstream_trace, parent_span, _ = traceparent.split("-")
    assert upstream_trace == trace_id

    by_id = {format(s.context.span_id, "016x"): s for s in exporter.get_finished_spans()}
    http_span = by_id[parent_span]
    assert http_span.kind.name == "CLIENT"
    server_span = by_id[format(http_span.parent.span_id, "016x")]
    assert server_span.kind.name == "SERVER"
    assert server_span.name.endswith("GenerationService/Generate")
    assert server_span.parent.span_id == caller.get_span_context().span_id


async def test_one_client_span_per_upstream_attempt(spans, fake, start_generation):
    provider, exporter = spans
    stub = await start_generation(
        tracer_provider=provider,
        generation_backoff_base_seconds=0.001,
        generation_upstream_api_key="sk-canary-9",
    )
    fake.script({"status": 503}, {"chunks": 2})
    request = generation_pb2.GenerateRequest(
        model="gemma-3-270m",
        messages=[common_pb2.ChatMessage(role="user", content="retry me")],
        whole_answer=True,
    )
    async for _ in stub.Generate(request):
        pass
    finished = exporter.get_finished_spans()
    [server] = [s for s in finished if s.kind.name == "SERVER"]
    clients = sorted((s for s in finished if s.kind.name == "CLIENT"), key=lambda s: s.start_time)
    assert [s.attributes["http.response.status_code"] for s in clients] == [503, 200]
    assert [s.status.status_code.name for s in clients] == ["ERROR", "UNSET"]
    assert clients[0].attributes["error.type"] == "upstream_error"
    assert all(s.parent.span_id == server.context.span_id for s in clients)
    assert all(s.attributes["url.full"] == fake.base_url + "/chat/completions" for s in clients)
    # Each attempt's request names its own span as the parent.
    sent = [r["headers"]["traceparent"].split("-")[2] for r in fake.requests()]
    assert sent == [format(s.context.span_id, "016x") for s in clients]
    assert "sk-canary-9" not in repr([dict(s.attributes) for s in finished])
