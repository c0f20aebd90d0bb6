"""The shared channel spreads calls round robin over every address of its target whose health
service reports BALANCER_HEALTH_SERVICE as SERVING: a replica loading, or past its drain, gets no
calls until it serves again; "" alone (what probes read) does not move calls; a server without
the health service counts as serving; an address that comes back is dialled again within a
second or so."""

import asyncio
from collections import Counter

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from llmsuite_common.grpc_client import BALANCER_HEALTH_SERVICE, channel
from llmsuite_testkit.waiting import until

METHOD = "/llmsuite.test.Echo/Who"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Replica:
    """A server answering METHOD with its own name, with or without a health service."""

    def __init__(self, name: str, *, with_health: bool = True, port: int = 0) -> None:
        self.name = name
        self.server = grpc.aio.server()
        self.health = health.aio.HealthServicer() if with_health else None
        if self.health is not None:
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)

        async def who(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return name.encode()

        handler = grpc.unary_unary_rpc_method_handler(who)
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("llmsuite.test.Echo", {"Who": handler}),)
        )
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")

    async def set(self, status: int, *names: str) -> None:
        assert self.health is not None
        for name in names or ("", BALANCER_HEALTH_SERVICE):
            await self.health.set(name, status)


@pytest.fixture
async def replicas():
    made: list[Replica] = []

    async def make(name: str, *, status: int | None = SERVING, with_health: bool = True) -> Replica:
        replica = Replica(name, with_health=with_health)
        if status is not None and replica.health is not None:
            await replica.set(status)
        await replica.server.start()
        made.append(replica)
        return replica

    yield make
    await asyncio.gather(*(r.server.stop(None) for r in made))


def target(*replicas: Replica) -> str:
    return "ipv4:" + ",".join(f"127.0.0.1:{r.port}" for r in replicas)


async def spread(ch: grpc.aio.Channel, calls: int) -> Counter[str]:
    who = ch.unary_unary(METHOD)
    # wait_for_ready: the first calls wait for the health checks' first answers, not fail on them.
    answers = [await who(b"", timeout=5, wait_for_ready=True) for _ in range(calls)]
    return Counter(a.decode() for a in answers)


async def both_connected(ch: grpc.aio.Channel, names: set[str]) -> None:
    """Until a call has reached each of `names` (the first calls may find one still connecting)."""

    async def reached() -> bool:
        return set(await spread(ch, 4)) == names

    await until(reached)


async def test_calls_go_round_robin_over_every_address(replicas):
    a, b = await replicas("a"), await replicas("b")
    async with channel(target(a, b)) as ch:
        await both_connected(ch, {"a", "b"})
        assert await spread(ch, 40) == {"a": 20, "b": 20}


async def test_a_replica_not_serving_gets_no_calls_until_it_serves(replicas):
    a = await replicas("a")
    loading = await replicas("loading", status=NOT_SERVING)
    async with channel(target(a, loading)) as ch:
        assert await spread(ch, 20) == {"a": 20}

        await loading.set(SERVING)
        await both_connected(ch, {"a", "loading"})

        # Draining as grpc_server.serve does: "" turns NOT_SERVING first, for probes and other
        # balancers; this channel's calls keep coming until the drain ends.
        await a.set(NOT_SERVING, "")
        assert await spread(ch, 20) == {"a": 10, "loading": 10}
        await a.health.enter_graceful_shutdown()  # type: ignore[union-attr]

        async def only_loading() -> bool:
            return await spread(ch, 10) == {"loading": 10}

        await until(only_loading)
        assert await spread(ch, 30) == {"loading": 30}


async def test_no_replica_serving_fails_fast_with_unavailable(replicas):
    a = await replicas("a", status=NOT_SERVING)
    async with channel(target(a)) as ch:
        await asyncio.sleep(0.2)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await ch.unary_unary(METHOD)(b"", timeout=5)
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_a_server_without_the_health_service_counts_as_serving(replicas):
    a, plain = await replicas("a"), await replicas("plain", with_health=False)
    async with channel(target(a, plain)) as ch:
        await both_connected(ch, {"a", "plain"})
        assert await spread(ch, 20) == {"a": 10, "plain": 10}


async def test_a_replica_restarted_on_its_address_gets_calls_within_a_second_of_serving(replicas):
    """gRPC's default reconnect backoff (1 s, growing 1.6 times to 120 s) would leave an address
    down for 7 s unvisited for up to 5 s more; the channel retries every second at most."""
    a, b = await replicas("a"), await replicas("b")
    async with channel(target(a, b)) as ch:
        await both_connected(ch, {"a", "b"})
        await b.server.stop(None)
        await asyncio.sleep(7)
        assert await spread(ch, 10) == {"a": 10}
        back = Replica("b", port=b.port)
        await back.set(SERVING)
        await back.server.start()
        started = asyncio.get_running_loop().time()
        try:
            await both_connected(ch, {"a", "b"})
            assert asyncio.get_running_loop().time() - started < 1.6
        finally:
            await back.server.stop(None)
