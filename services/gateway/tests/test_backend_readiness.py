"""The gateway's backend health check asks the way its calls are balanced: while one replica of a
backend drains (NOT_SERVING for "", still taking calls until the drain's end) and another serves,
every check says SERVING, so a backend's rollout never makes the gateway unready; with no replica
taking calls the check fails."""

import grpc
from gateway_service.pipeline.clients import BackendClients, BackendTargets
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from llmsuite_common.grpc_client import BALANCER_HEALTH_SERVICE

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def replica(overall: int, balancer: int) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    await servicer.set("", overall)
    await servicer.set(BALANCER_HEALTH_SERVICE, balancer)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port, servicer


async def test_one_replica_draining_leaves_every_backend_serving():
    serving, a, _ = await replica(SERVING, SERVING)
    draining, b, servicer = await replica(NOT_SERVING, SERVING)
    target = f"ipv4:127.0.0.1:{a},127.0.0.1:{b}"
    clients = BackendClients(BackendTargets(target, target, target), max_message_bytes=1 << 20)
    await clients.open()
    try:
        checks = [await clients.health(2.0) for _ in range(10)]
        assert {s for c in checks for s in c.values()} == {"SERVING"}

        # The drain's end: neither replica takes calls any more.
        await servicer.enter_graceful_shutdown()
        await serving.stop(None)
        statuses = (await clients.health(2.0)).values()
        assert "SERVING" not in statuses
    finally:
        await clients.close()
        await draining.stop(None)


class EndOfDrain(health.aio.HealthServicer):
    """A replica whose drain has just ended: the channel's health watch has not yet heard, so
    calls still reach it, but a Check already answers NOT_SERVING."""

    def __init__(self) -> None:
        super().__init__()
        self.checks = 0

    async def Check(self, request, context):  # noqa: N802 - the gRPC method's name
        self.checks += 1
        return health_pb2.HealthCheckResponse(status=NOT_SERVING)


async def test_a_replica_at_the_end_of_its_drain_leaves_the_backend_serving():
    serving, a, _ = await replica(SERVING, SERVING)
    ending = grpc.aio.server()
    servicer = EndOfDrain()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, ending)
    await servicer.set(BALANCER_HEALTH_SERVICE, SERVING)
    b = ending.add_insecure_port("127.0.0.1:0")
    await ending.start()
    target = f"ipv4:127.0.0.1:{a},127.0.0.1:{b}"
    clients = BackendClients(BackendTargets(target, target, target), max_message_bytes=1 << 20)
    await clients.open()
    try:
        for _ in range(100):  # until round robin has both connections
            if servicer.checks:
                break
            await clients.health(2.0)
        asked = servicer.checks
        checks = [await clients.health(2.0) for _ in range(10)]
        # Round robin sent a share of the asks to the ending replica; each was asked again.
        assert servicer.checks - asked >= 10
        assert {s for c in checks for s in c.values()} == {"SERVING"}
    finally:
        await clients.close()
        await serving.stop(None)
        await ending.stop(None)
