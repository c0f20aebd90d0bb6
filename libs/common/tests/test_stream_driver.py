import asyncio
import gc
import sys

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from llmsuite.generation.v1 import generation_pb2, generation_pb2_grpc
from llmsuite.guardrails.v1 import guardrails_pb2, guardrails_pb2_grpc
from llmsuite_common.errors import InvalidArgument, Unavailable, read_error_detail
from llmsuite_common.grpc_client import BALANCER_HEALTH_SERVICE, channel
from llmsuite_common.grpc_metrics import GrpcServerMetrics
from llmsuite_common.request_context import request_id_var
from llmsuite_common.stream_driver import server_interceptors
from llmsuite_testkit.waiting import until
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry

BIG = "x" * (512 * 1024)


class Flooding(generation_pb2_grpc.GenerationServiceServicer):
    """Writes faster than the client reads, so the server ends up suspended in a write."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()
        self.closed_with_request_id = ""
        self.sent = 0

    async def Generate(self, request, context):
        # A reference cycle through this frame, as a caught exception's traceback makes:
        # reference counting alone can then never close this generator.
        cycle = [sys._getframe()]  # noqa: F841
        try:
            for _ in range(1000):
                self.sent += 1
                yield generation_pb2.GenerateResponse(delta=generation_pb2.Delta(content=BIG))
        finally:
            self.closed_with_request_id = request_id_var.get()
            self.closed.set()


async def start(interceptors):
    servicer = Flooding()
    server = grpc.aio.server(interceptors=interceptors)
    generation_pb2_grpc.add_GenerationServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, servicer, port


async def cancel_while_server_blocked(port: int, servicer: Flooding) -> None:
    ch = channel(f"127.0.0.1:{port}", max_message_bytes=8 * 1024 * 1024)
    call = generation_pb2_grpc.GenerationServiceStub(ch).Generate(
        generation_pb2.GenerateRequest(), metadata=(("x-request-id", "req-1"),), timeout=30
    )
    await call.read()
    for _ in range(50):  # until the flow-control window is full and the server stops producing
        before = servicer.sent
        await asyncio.sleep(0.05)
        if servicer.sent == before:
            break
    assert servicer.sent < 1000, "server was never blocked by flow control"
    call.cancel()
    await ch.close()


def production_chain():
    """The interceptors serve() installs, tracing included."""
    return server_interceptors(GrpcServerMetrics(CollectorRegistry()))


async def test_cancel_during_a_blocked_write_closes_the_servicer_generator_in_its_own_call():
    gc.disable()  # the failure mode is a generator that only the garbage collector would close
    try:
        server, servicer, port = await start(production_chain())
        await cancel_while_server_blocked(port, servicer)
        await asyncio.wait_for(servicer.closed.wait(), timeout=1.0)
        # Closed by the call's own task: a finalizer task would not see the request id.
        assert servicer.closed_with_request_id == "req-1"
    finally:
        gc.enable()
        await server.stop(0)


async def test_streams_complete_normally_through_the_driver():
    class Short(generation_pb2_grpc.GenerationServiceServicer):
        async def Generate(self, request, context):
            for word in ("a", "b", "c"):
                yield generation_pb2.GenerateResponse(delta=generation_pb2.Delta(content=word))

    server = grpc.aio.server(interceptors=production_chain())
    generation_pb2_grpc.add_GenerationServiceServicer_to_server(Short(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        ch = channel(f"127.0.0.1:{port}")
        stub = generation_pb2_grpc.GenerationServiceStub(ch)
        words = [r.delta.content async for r in stub.Generate(generation_pb2.GenerateRequest(), timeout=5)]
        assert words == ["a", "b", "c"]
        await ch.close()
    finally:
        await server.stop(0)


# The one interceptor serve() installs: span, metrics, error mapping and request id, once per call.

GENERATE = dict(grpc_service="llmsuite.generation.v1.GenerationService", grpc_method="Generate")


class Scripted(generation_pb2_grpc.GenerationServiceServicer):
    """Streams words; the model name says how the stream ends."""

    def __init__(self) -> None:
        self.request_ids: list[str] = []
        self.span_ids: list[int] = []

    async def Generate(self, request, context):
        self.request_ids.append(request_id_var.get())
        self.span_ids.append(trace.get_current_span().get_span_context().span_id)
        for word in ("a", "b"):
            yield generation_pb2.GenerateResponse(delta=generation_pb2.Delta(content=word))
        if request.model == "unavailable":
            raise Unavailable("upstream down", code="upstream_error")
        if request.model == "bug":
            raise RuntimeError("secret internals")
        if request.model == "abort":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no")
        yield generation_pb2.GenerateResponse(final=generation_pb2.Final(finish_reason="stop"))

    async def ListModels(self, request, context):
        if ("x-fail", "1") in tuple((m.key, m.value) for m in context.invocation_metadata()):
            raise InvalidArgument("bad", param="x")
        return generation_pb2.ListModelsResponse(models=[generation_pb2.Model(id="m")])


class Echo(guardrails_pb2_grpc.GuardrailsServiceServicer):
    async def CheckOutputStream(self, request_iterator, context):
        async for request in request_iterator:
            if request.delta:
                yield guardrails_pb2.OutputStreamResponse(released=request.delta)


@pytest.fixture
async def traced_server():
    registry = CollectorRegistry()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    servicer = Scripted()
    server = grpc.aio.server(
        interceptors=server_interceptors(GrpcServerMetrics(registry), tracer_provider=provider)
    )
    generation_pb2_grpc.add_GenerationServiceServicer_to_server(servicer, server)
    guardrails_pb2_grpc.add_GuardrailsServiceServicer_to_server(Echo(), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await health_servicer.set(BALANCER_HEALTH_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    ch = channel(f"127.0.0.1:{port}")
    try:
        yield ch, servicer, registry, exporter, provider
    finally:
        await ch.close()
        await server.stop(0)
        provider.shutdown()


async def read_all(call):
    out = []
    async for response in call:
        out.append(response)
    return out


async def test_stream_errors_after_messages_map_to_status_and_detail(traced_server):
    ch, servicer, registry, exporter, _ = traced_server
    stub = generation_pb2_grpc.GenerationServiceStub(ch)
    assert len(await read_all(stub.Generate(generation_pb2.GenerateRequest(model="ok"), timeout=5))) == 3

    received = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for response in stub.Generate(generation_pb2.GenerateRequest(model="unavailable"), timeout=5):
            received.append(response)
    assert [r.delta.content for r in received] == ["a", "b"]
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert read_error_detail(info.value).code == "upstream_error"

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await read_all(stub.Generate(generation_pb2.GenerateRequest(model="bug"), timeout=5))
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details() == "internal error" and read_error_detail(info.value) is None

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await read_all(stub.Generate(generation_pb2.GenerateRequest(model="abort"), timeout=5))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED

    def handled(code: str) -> float | None:
        return registry.get_sample_value(
            "llmsuite_grpc_server_handled_total", {**GENERATE, "grpc_code": code}
        )

    # An aborted call's status reaches the caller before the server's handler task resumes to
    # count it.
    await until(
        lambda: registry.get_sample_value("llmsuite_grpc_server_handling_seconds_count", GENERATE) == 4
    )
    assert [handled(c) for c in ("OK", "UNAVAILABLE", "INTERNAL", "PERMISSION_DENIED")] == [1, 1, 1, 1]

    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"/llmsuite.generation.v1.GenerationService/Generate"}
    codes = [
        (s.attributes["rpc.grpc.status_code"], s.status.status_code) for s in exporter.get_finished_spans()
    ]
    assert codes == [
        (0, StatusCode.UNSET),
        (14, StatusCode.ERROR),
        (13, StatusCode.ERROR),
        (7, StatusCode.UNSET),
    ]


async def test_unary_calls_map_errors_and_undecodable_requests(traced_server):
    ch, _, registry, _, _ = traced_server
    stub = generation_pb2_grpc.GenerationServiceStub(ch)
    assert [m.id for m in (await stub.ListModels(generation_pb2.ListModelsRequest(), timeout=5)).models] == [
        "m"
    ]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListModels(generation_pb2.ListModelsRequest(), metadata=(("x-fail", "1"),), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert read_error_detail(info.value).param == "x"
    raw = ch.unary_unary(
        "/llmsuite.generation.v1.GenerationService/ListModels",
        request_serializer=lambda b: b,
        response_deserializer=generation_pb2.ListModelsResponse.FromString,
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await raw(b"\x12\xff\xff\xff\xff\x0f\x80", timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    labels = dict(grpc_service="llmsuite.generation.v1.GenerationService", grpc_method="ListModels")
    await until(lambda: registry.get_sample_value("llmsuite_grpc_server_handling_seconds_count", labels) == 3)
    counts = {
        code: registry.get_sample_value("llmsuite_grpc_server_handled_total", {**labels, "grpc_code": code})
        for code in ("OK", "INVALID_ARGUMENT")
    }
    assert counts == {"OK": 1, "INVALID_ARGUMENT": 2}


async def test_server_span_continues_the_callers_trace_with_request_id_bound(traced_server):
    ch, servicer, _, exporter, provider = traced_server
    stub = generation_pb2_grpc.GenerationServiceStub(ch)
    with provider.get_tracer("test").start_as_current_span("caller") as caller:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
    metadata = (*carrier.items(), ("x-request-id", "req-7"))
    await read_all(stub.Generate(generation_pb2.GenerateRequest(model="ok"), metadata=metadata, timeout=5))
    [server_span] = [s for s in exporter.get_finished_spans() if s.kind.name == "SERVER"]
    assert server_span.context.trace_id == caller.get_span_context().trace_id
    assert server_span.parent.span_id == caller.get_span_context().span_id
    assert servicer.span_ids == [server_span.context.span_id]
    assert servicer.request_ids == ["req-7"]
    attributes = server_span.attributes
    assert (attributes["rpc.system"], attributes["rpc.service"], attributes["rpc.method"]) == (
        "grpc",
        "llmsuite.generation.v1.GenerationService",
        "Generate",
    )
    assert attributes["net.peer.ip"] == "127.0.0.1" and attributes["net.peer.name"] == "localhost"


async def test_bidirectional_streams_and_health_checks_pass_through(traced_server):
    ch, _, registry, exporter, _ = traced_server
    stub = guardrails_pb2_grpc.GuardrailsServiceStub(ch)

    async def requests():
        for word in ("x", "y"):
            yield guardrails_pb2.OutputStreamRequest(delta=word)

    replies = await read_all(stub.CheckOutputStream(requests(), timeout=5))
    assert [r.released for r in replies] == ["x", "y"]
    status = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    # Health checks are neither traced nor counted.
    assert [s.name for s in exporter.get_finished_spans()] == [
        "/llmsuite.guardrails.v1.GuardrailsService/CheckOutputStream"
    ]
    assert (
        registry.get_sample_value(
            "llmsuite_grpc_server_handled_total",
            {"grpc_service": "grpc.health.v1.Health", "grpc_method": "Check", "grpc_code": "OK"},
        )
        is None
    )


# A request stream's message that does not parse ends the call with INVALID_ARGUMENT, not
# INTERNAL, and the server answers the next call.
@pytest.fixture
async def echo_channel():
    server = grpc.aio.server(interceptors=server_interceptors())
    guardrails_pb2_grpc.add_GuardrailsServiceServicer_to_server(Echo(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch
    await server.stop(0)


async def test_invalid_utf8_in_a_request_stream_is_invalid_argument(echo_channel):
    raw = echo_channel.stream_stream(
        "/llmsuite.guardrails.v1.GuardrailsService/CheckOutputStream",
        request_serializer=lambda b: b,
        response_deserializer=guardrails_pb2.OutputStreamResponse.FromString,
    )
    good = guardrails_pb2.OutputStreamRequest(delta="fine").SerializeToString()
    bad = (
        guardrails_pb2.OutputStreamRequest(delta="\x01XYZ\x01")
        .SerializeToString()
        .replace(b"\x01XYZ\x01", b"\x01\xed\xa0\x80\x01")
    )
    call = raw(timeout=5)
    await call.write(good)
    await call.write(bad)
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for reply in call:
            received.append(reply.released)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    detail = read_error_detail(info.value)
    assert detail is not None and detail.code == "invalid_message"
    assert received == ["fine"]

    async def whole():
        yield guardrails_pb2.OutputStreamRequest(delta="next")

    stub = guardrails_pb2_grpc.GuardrailsServiceStub(echo_channel)
    assert [r.released async for r in stub.CheckOutputStream(whole(), timeout=5)] == ["next"]
