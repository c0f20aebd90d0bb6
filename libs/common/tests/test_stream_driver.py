import asyncio
import gc
import sys

import grpc
from llmsuite.generation.v1 import generation_pb2, generation_pb2_grpc

from opentelemetry.instrumentation.grpc import aio_server_interceptor
from prometheus_client import CollectorRegistry

from llmsuite_common.errors import ErrorInterceptor
from llmsuite_common.grpc_client import channel
from llmsuite_common.grpc_metrics import GrpcServerMetrics, MetricsInterceptor
from llmsuite_common.request_context import request_id_var
from llmsuite_common.stream_driver import StreamDriverInterceptor

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
    return [
        StreamDriverInterceptor(),
        aio_server_interceptor(),
        MetricsInterceptor(GrpcServerMetrics(CollectorRegistry())),
        ErrorInterceptor(),
    ]


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
