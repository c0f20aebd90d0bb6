"""serve()'s interceptor: a request stream's message that does not parse ends the call with
INVALID_ARGUMENT, not INTERNAL, and the server answers the next call."""

import grpc
import pytest
from llmsuite.guardrails.v1 import guardrails_pb2, guardrails_pb2_grpc
from llmsuite_common.errors import read_error_detail
from llmsuite_common.stream_driver import server_interceptors

METHOD = "/llmsuite.guardrails.v1.GuardrailsService/CheckOutputStream"


class Echo(guardrails_pb2_grpc.GuardrailsServiceServicer):
    async def CheckOutputStream(self, request_iterator, context):
        async for request in request_iterator:
            if request.delta:
                yield guardrails_pb2.OutputStreamResponse(released=request.delta)


@pytest.fixture
async def channel():
    server = grpc.aio.server(interceptors=server_interceptors())
    guardrails_pb2_grpc.add_GuardrailsServiceServicer_to_server(Echo(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch
    await server.stop(0)


async def test_invalid_utf8_in_a_request_stream_is_invalid_argument(channel):
    raw = channel.stream_stream(
        METHOD,
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

    stub = guardrails_pb2_grpc.GuardrailsServiceStub(channel)
    assert [r.released async for r in stub.CheckOutputStream(whole(), timeout=5)] == ["next"]
