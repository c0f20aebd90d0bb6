"""Client spans of calls made through TracedStub, unary or streamed: each a child of the current
span, carrying the trace to the server, ended with the call's status."""

import asyncio

import grpc
import pytest
from llmsuite.generation.v1 import generation_pb2, generation_pb2_grpc
from llmsuite_common.grpc_client import TracedStub, channel
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode


class Scripted(generation_pb2_grpc.GenerationServiceServicer):
    """Answers by the request's model name: "ok" succeeds, "fail" aborts; records each call's
    incoming trace context."""

    def __init__(self) -> None:
        self.parents: list[str] = []

    def _seen(self, context: grpc.aio.ServicerContext) -> None:
        carrier = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        self.parents.append(carrier.get("traceparent", ""))

    async def Complete(self, request, context):
        self._seen(context)
        if request.model == "fail":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "scripted")
        return generation_pb2.CompleteResponse(final=generation_pb2.Final(finish_reason="stop"))

    async def Generate(self, request, context):
        self._seen(context)
        yield generation_pb2.GenerateResponse(delta=generation_pb2.Delta(content="hi"))
        if request.model == "fail":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "scripted")
        yield generation_pb2.GenerateResponse(final=generation_pb2.Final(finish_reason="stop"))


@pytest.fixture
async def served():
    servicer = Scripted()
    server = grpc.aio.server()
    generation_pb2_grpc.add_GenerationServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    ch = channel(f"127.0.0.1:{port}")
    yield TracedStub(generation_pb2_grpc.GenerationServiceStub(ch), provider), servicer, provider, exporter
    await ch.close()
    await server.stop(None)


def traceparent_of(span) -> str:
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


async def test_unary_calls_get_a_client_span_child_of_the_current_one(served):
    stub, servicer, provider, exporter = served
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("request") as parent:
        await stub.Complete(generation_pb2.GenerateRequest(model="ok"), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Complete(generation_pb2.GenerateRequest(model="fail"), timeout=5)
    calls = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert [s.name for s in calls] == ["/llmsuite.generation.v1.GenerationService/Complete"] * 2
    assert all(s.parent.span_id == parent.get_span_context().span_id for s in calls)
    assert [s.attributes["rpc.grpc.status_code"] for s in calls] == [0, grpc.StatusCode.UNAVAILABLE.value[0]]
    assert calls[0].status.status_code == StatusCode.UNSET and calls[1].status.status_code == StatusCode.ERROR
    # The server saw each client span as its parent.
    assert servicer.parents == [traceparent_of(s) for s in calls]


async def test_a_streamed_call_span_ends_with_the_stream_and_its_status(served):
    stub, servicer, provider, exporter = served
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("request"):
        ok = stub.Generate(generation_pb2.GenerateRequest(model="ok"), timeout=5)
        assert [r.WhichOneof("event") async for r in ok] == ["delta", "final"]
        failing = stub.Generate(generation_pb2.GenerateRequest(model="fail"), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError):
            async for _ in failing:
                pass
        cancelled = stub.Generate(generation_pb2.GenerateRequest(model="ok"), timeout=5)
        await anext(aiter(cancelled))
        cancelled.cancel()
    for _ in range(100):  # done callbacks run on the loop after the call ends
        spans = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]
        if len(spans) == 3:
            break
        await asyncio.sleep(0.01)
    codes = [s.attributes["rpc.grpc.status_code"] for s in spans]
    assert codes == [0, grpc.StatusCode.UNAVAILABLE.value[0], grpc.StatusCode.CANCELLED.value[0]]
    assert all(s.name == "/llmsuite.generation.v1.GenerationService/Generate" for s in spans)
    assert servicer.parents == [traceparent_of(s) for s in spans]
