"""One trace from the gRPC caller, through this service, to the upstream HTTP request."""

import pytest
from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2
from opentelemetry import propagate
from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorServer
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@pytest.fixture
def spans():
    """The same instrumentations setup_telemetry installs, on a private provider."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    grpc_server = GrpcAioInstrumentorServer()
    httpx_client = HTTPXClientInstrumentor()
    grpc_server.instrument(tracer_provider=provider)
    httpx_client.instrument(tracer_provider=provider)
    try:
        yield provider, exporter
    finally:
        httpx_client.uninstrument()
        grpc_server.uninstrument()
        provider.shutdown()


async def test_upstream_request_carries_the_callers_trace(spans, fake, start_generation):
    provider, exporter = spans
    stub = await start_generation()
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
