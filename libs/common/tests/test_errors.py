import grpc
import pytest
from llmsuite.guardrails.v1 import guardrails_pb2, guardrails_pb2_grpc
from llmsuite_common.errors import InvalidArgument, ResourceExhausted, read_error_detail
from llmsuite_common.grpc_client import channel
from llmsuite_common.request_context import request_id_var
from llmsuite_common.stream_driver import server_interceptors


class Raising(guardrails_pb2_grpc.GuardrailsServiceServicer):
    def __init__(self) -> None:
        self.seen_request_ids: list[str] = []

    async def CheckInput(self, request, context):
        self.seen_request_ids.append(request_id_var.get())
        text = request.messages[0].content
        if text == "invalid":
            raise InvalidArgument("messages[0] is empty", param="messages")
        if text == "busy":
            raise ResourceExhausted("slow down", code="key_rpm")
        if text == "bug":
            raise RuntimeError("secret internals /etc/passwd")
        return guardrails_pb2.CheckInputResponse(verdict=guardrails_pb2.VERDICT_ALLOW)


@pytest.fixture
async def stub():
    servicer = Raising()
    server = grpc.aio.server(interceptors=server_interceptors())
    guardrails_pb2_grpc.add_GuardrailsServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    ch = channel(f"127.0.0.1:{port}")
    servicer.channel = ch
    yield guardrails_pb2_grpc.GuardrailsServiceStub(ch), servicer
    await ch.close()
    await server.stop(0)


def request(text: str) -> guardrails_pb2.CheckInputRequest:
    return guardrails_pb2.CheckInputRequest(messages=[{"role": "user", "content": text}])


async def call_error(stub, text: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CheckInput(request(text), timeout=5)
    return info.value


async def test_service_errors_map_to_status_and_detail(stub):
    client, _ = stub
    err = await call_error(client, "invalid")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    detail = read_error_detail(err)
    assert detail is not None and (detail.code, detail.param) == ("invalid_request", "messages")

    err = await call_error(client, "busy")
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert read_error_detail(err).code == "key_rpm"


async def test_unexpected_errors_are_internal_without_details(stub):
    client, _ = stub
    err = await call_error(client, "bug")
    assert err.code() == grpc.StatusCode.INTERNAL
    assert err.details() == "internal error"
    assert read_error_detail(err) is None


async def test_request_id_from_metadata_is_bound(stub):
    client, servicer = stub
    reply = await client.CheckInput(request("ok"), metadata=(("x-request-id", "req-123"),), timeout=5)
    assert reply.verdict == guardrails_pb2.VERDICT_ALLOW
    assert servicer.seen_request_ids == ["req-123"]


async def test_undecodable_request_bytes_are_invalid_argument(stub):
    client, servicer = stub
    raw = servicer.channel.unary_unary(
        "/llmsuite.guardrails.v1.GuardrailsService/CheckInput",
        request_serializer=lambda b: b,
        response_deserializer=guardrails_pb2.CheckInputResponse.FromString,
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await raw(b"\x12\xff\xff\xff\xff\x0f\x80", timeout=5)  # truncated length-delimited field
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "parse" in info.value.details() and "Error" not in info.value.details()
    assert servicer.seen_request_ids == []
