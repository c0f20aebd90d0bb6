import grpc
import pytest
from llmsuite.guardrails.v1 import guardrails_pb2, guardrails_pb2_grpc
from llmsuite_common.errors import InvalidArgument
from llmsuite_common.grpc_client import channel
from llmsuite_common.grpc_metrics import GrpcServerMetrics
from llmsuite_common.stream_driver import server_interceptors
from llmsuite_testkit.waiting import until
from prometheus_client import CollectorRegistry

METHOD = dict(grpc_service="llmsuite.guardrails.v1.GuardrailsService", grpc_method="CheckInput")


class Servicer(guardrails_pb2_grpc.GuardrailsServiceServicer):
    async def CheckInput(self, request, context):
        text = request.messages[0].content
        if text == "invalid":
            raise InvalidArgument("bad")
        if text == "bug":
            raise RuntimeError("boom")
        return guardrails_pb2.CheckInputResponse(verdict=guardrails_pb2.VERDICT_ALLOW)


@pytest.fixture
async def setup():
    registry = CollectorRegistry()
    server = grpc.aio.server(interceptors=server_interceptors(GrpcServerMetrics(registry)))
    guardrails_pb2_grpc.add_GuardrailsServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    ch = channel(f"127.0.0.1:{port}")
    yield guardrails_pb2_grpc.GuardrailsServiceStub(ch), registry
    await ch.close()
    await server.stop(0)


async def test_calls_are_counted_by_final_status_code(setup):
    stub, registry = setup
    for text in ("ok", "ok", "invalid", "bug"):
        try:
            await stub.CheckInput(
                guardrails_pb2.CheckInputRequest(messages=[{"role": "user", "content": text}]), timeout=5
            )
        except grpc.aio.AioRpcError:
            pass

    def handled(code: str) -> float | None:
        return registry.get_sample_value("llmsuite_grpc_server_handled_total", {**METHOD, "grpc_code": code})

    # An aborted call's status reaches the caller before the server's handler task resumes to
    # count it.
    await until(lambda: registry.get_sample_value("llmsuite_grpc_server_handling_seconds_count", METHOD) == 4)
    assert (handled("OK"), handled("INVALID_ARGUMENT"), handled("INTERNAL")) == (2, 1, 1)
