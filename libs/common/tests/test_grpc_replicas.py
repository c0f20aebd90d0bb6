"""Two replicas of a real server process (grpc_server.serve) behind one shared channel: while one
is restarted in place (SIGTERM, drain, exit, start again on its address, load, serve), calls made
all along never fail. The replica that drains still answers calls for the first part of its
drain, the channel's callers having no other replica to move to until then in a rollout; the one
that loads answers none before it serves."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from llmsuite_common.grpc_client import channel
from llmsuite_common.local_auth import LocalAuthority

SERVICE = Path(__file__).with_name("slow_start_service.py")
WHO = "/llmsuite.test.Slow/Who"
DRAIN_SECONDS = 1.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(port: int, keys: Path, start_seconds: float) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "GRPC_AUTH_PUBLIC_KEYS_FILE": str(keys),
        "PORT": str(port),
        "START_SECONDS": str(start_seconds),
        "DRAIN_SECONDS": str(DRAIN_SECONDS),
        "SHUTDOWN_GRACE_SECONDS": "5",
        "OTEL_SERVICE_NAME": "slow",
    }
    return subprocess.Popen([sys.executable, str(SERVICE)], env=env, stderr=subprocess.DEVNULL)


def serving(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        try:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=0.5)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


async def wait_serving(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(serving, port):
        assert time.monotonic() < deadline, f"port {port} never served"
        await asyncio.sleep(0.05)


async def test_calls_through_an_in_place_restart_of_one_of_two_replicas_never_fail(tmp_path):
    authority = LocalAuthority()
    keys = authority.write(tmp_path)[1]
    metadata = authority.metadata("slow", "org-1")
    a, b = free_port(), free_port()
    procs = {a: start(a, keys, 0), b: start(b, keys, 0)}
    answers: list[tuple[float, str]] = []
    stop = asyncio.Event()
    try:
        await asyncio.gather(wait_serving(a), wait_serving(b))
        async with channel(f"ipv4:127.0.0.1:{a},127.0.0.1:{b}") as ch:
            who = ch.unary_unary(WHO)

            async def call_all_along() -> None:
                while not stop.is_set():
                    try:
                        answer = (await who(b"", metadata=metadata, timeout=5)).decode()
                    except grpc.aio.AioRpcError as err:
                        answer = f"failed: {err.code().name} {err.details()}"
                    answers.append((time.monotonic(), answer))
                    await asyncio.sleep(0.01)

            caller = asyncio.create_task(call_all_along())
            deadline = time.monotonic() + 10
            while {x for _, x in answers} != {str(a), str(b)}:
                assert time.monotonic() < deadline, "calls never reached both replicas"
                await asyncio.sleep(0.05)

            procs[b].send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            assert await asyncio.to_thread(procs[b].wait, 15) == 0
            exited = time.monotonic()
            procs[b] = start(b, keys, 1.0)
            await wait_serving(b)
            served = time.monotonic()
            # Until the restarted replica takes calls again.
            while not [t for t, x in answers if t > served and x == str(b)]:
                assert time.monotonic() - served < 5, "the restarted replica got no calls"
                await asyncio.sleep(0.05)
            stop.set()
            await caller
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(5)
    assert [x for _, x in answers if x.startswith("failed")] == []
    # The restarted replica listens a second before it serves, and takes no call in that second.
    assert "loading" not in {x for _, x in answers}
    during_drain = [t for t, x in answers if x == str(b) and signalled < t < exited]
    assert during_drain and max(during_drain) - signalled > DRAIN_SECONDS / 2, "left at the drain's start"
