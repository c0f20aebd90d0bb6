"""The client's trace continues through the gateway: backend call spans are children of the request
span, for the streaming Generate call too."""

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"


@pytest.fixture
def tracing() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.mark.parametrize("stream", [False, True])
async def test_backend_spans_are_children_of_the_request_span(start_gateway, fake, tracing, stream):
    # The backends here are in-process without server instrumentation; the hops beyond the gateway
    # are covered by the cross-service trace test.
    provider, exporter = tracing
    gateway = await start_gateway(tracer_provider=provider)
    traceparent = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"
    body = {"model": gateway.model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    async with gateway.client() as c:
        response = await c.post("/v1/chat/completions", json=body, headers={"traceparent": traceparent})
        await c.get("/healthz")
    assert response.status_code == 200
    provider.force_flush()

    spans = exporter.get_finished_spans()
    assert {format(s.context.trace_id, "032x") for s in spans} == {TRACE_ID}
    server = [s for s in spans if s.kind == SpanKind.SERVER]
    assert len(server) == 1, "one request span; /healthz is not traced"
    assert format(server[0].parent.span_id, "016x") == PARENT_SPAN_ID
    clients = {s.name: s for s in spans if s.kind == SpanKind.CLIENT}
    check = clients["/llmsuite.guardrails.v1.GuardrailsService/CheckInput"]
    # A streamed answer comes from Generate, a whole one from Complete.
    generate = clients[f"/llmsuite.generation.v1.GenerationService/{'Generate' if stream else 'Complete'}"]
    for span in (check, generate):
        assert span.parent.span_id == server[0].context.span_id
    # The Generate call completes with the response rather than whenever it is garbage-collected.
    assert generate.end_time <= server[0].end_time
