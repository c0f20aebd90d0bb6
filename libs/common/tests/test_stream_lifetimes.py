"""Streams outlive a connection's age and a server's shutdown, on a real server process.

serve() sends a GOAWAY to a connection once it reaches GRPC_MAX_CONNECTION_AGE_SECONDS; the calls
open on it keep running for GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS, a setting of its own (the
longest generation), not the shutdown grace. On SIGTERM the server reports NOT_SERVING for
DRAIN_SECONDS, then refuses new calls and gives those in flight SHUTDOWN_GRACE_SECONDS.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from llmsuite_common.local_auth import LocalAuthority

SERVICE = Path(__file__).with_name("slow_start_service.py")
COUNT = "/llmsuite.test.Slow/Count"
SERVING = health_pb2.HealthCheckResponse.SERVING


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_serving(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the service exited while starting"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                check = health_pb2_grpc.HealthStub(channel).Check
                if check(health_pb2.HealthCheckRequest(), timeout=0.5).status == SERVING:
                    return
            except grpc.RpcError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"the service on port {port} never reported SERVING")


def start_service(
    tmp_path: Path, authority: LocalAuthority, **env: str
) -> tuple[subprocess.Popen[bytes], int]:
    """The test service as a process of its own, SERVING on a free port, with `env` on top."""
    port = free_port()
    full_env = {
        **os.environ,
        "GRPC_AUTH_PUBLIC_KEYS_FILE": str(authority.write(tmp_path)[1]),
        "PORT": str(port),
        "START_SECONDS": "0",
        "OTEL_SERVICE_NAME": "slow",
        **env,
    }
    proc = subprocess.Popen([sys.executable, str(SERVICE)], env=full_env, stderr=subprocess.PIPE)
    try:
        wait_serving(port, proc)
    except BaseException:
        proc.kill()
        raise
    return proc, port


def stop_service(proc: subprocess.Popen[bytes]) -> list[str]:
    """Kills the service if it still runs; the messages it logged."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    logs = proc.stderr.read().decode() if proc.stderr else ""
    return [json.loads(line).get("msg") for line in logs.splitlines() if line.startswith("{")]


def count(
    channel: grpc.Channel, authority: LocalAuthority, n: int, interval: float, timeout: float = 60
) -> grpc.Call:
    """A call of the test stream: n messages, `interval` seconds apart."""
    stream = channel.unary_stream(COUNT)
    return stream(f"{n},{interval}".encode(), metadata=authority.metadata("slow", "org-1"), timeout=timeout)


def read_all(call: grpc.Call) -> tuple[list[bytes], grpc.RpcError | None]:
    """The messages received, and the error that ended the stream (None when it completed)."""
    received: list[bytes] = []
    try:
        for message in call:
            received.append(message)
    except grpc.RpcError as err:
        return received, err
    return received, None


def expected(n: int) -> list[bytes]:
    return [str(i).encode() for i in range(n)]


def test_a_stream_outlives_its_connections_age_within_the_age_grace(tmp_path):
    """The connection reaches its age (1 s) a second into a 5 s stream: the server sends a GOAWAY
    then, and the stream still runs to its end because the age grace (10 s) covers it. The shutdown
    grace (1 s) plays no part."""
    authority = LocalAuthority()
    proc, port = start_service(
        tmp_path,
        authority,
        GRPC_MAX_CONNECTION_AGE_SECONDS="1",
        GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS="10",
        SHUTDOWN_GRACE_SECONDS="1",
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            started = time.monotonic()
            received, error = read_all(count(channel, authority, n=26, interval=0.2))
            elapsed = time.monotonic() - started
            assert error is None, f"the stream was cut after {elapsed:.1f}s: {error}"
            assert received == expected(26)
            assert elapsed >= 4.5, elapsed
            # The aged connection was replaced: the next call on the channel gets a new one.
            assert read_all(count(channel, authority, n=1, interval=0)) == (expected(1), None)
    finally:
        stop_service(proc)


def test_with_a_short_age_grace_the_same_stream_is_cut(tmp_path):
    """The control: with an age grace of 1 s the connection's age ends the stream about 2 s in, so
    the age really is what the test above outlives."""
    authority = LocalAuthority()
    proc, port = start_service(
        tmp_path,
        authority,
        GRPC_MAX_CONNECTION_AGE_SECONDS="1",
        GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS="1",
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            received, error = read_all(count(channel, authority, n=26, interval=0.2))
            assert error is not None and error.code() == grpc.StatusCode.UNAVAILABLE, error
            assert 3 < len(received) < 26, received
    finally:
        stop_service(proc)


def test_a_stream_in_flight_at_sigterm_completes_while_new_calls_are_refused(tmp_path):
    """SIGTERM 0.2 s into a 4 s stream: NOT_SERVING, 1 s of drain, then the server takes no new
    call and gives the stream up to its 10 s shutdown grace. The stream ends in full, calls made
    after the drain are refused, and the process exits as soon as the stream is done."""
    authority = LocalAuthority()
    drain, grace = 1.0, 10.0
    proc, port = start_service(
        tmp_path, authority, DRAIN_SECONDS=str(drain), SHUTDOWN_GRACE_SECONDS=str(grace)
    )
    refused: list[grpc.RpcError | None] = []
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = count(channel, authority, n=20, interval=0.2)
            received = [next(call)]
            proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            for message in call:
                received.append(message)
                if len(received) == 11:
                    # About 2 s after SIGTERM: the drain is over, the stream still running. New
                    # calls, on the stream's own channel and on a fresh one, find no server.
                    assert time.monotonic() - signalled > drain + 0.5
                    refused.append(read_all(count(channel, authority, n=1, interval=0, timeout=2))[1])
                    with grpc.insecure_channel(f"127.0.0.1:{port}") as fresh:
                        refused.append(read_all(count(fresh, authority, n=1, interval=0, timeout=2))[1])
            ended = time.monotonic()
            assert received == expected(20)
            assert ended - signalled < drain + grace
        assert proc.wait(timeout=drain + grace) == 0
        exited = time.monotonic()
        assert exited - ended < 3, f"exited {exited - ended:.1f}s after the stream ended"
    finally:
        messages = stop_service(proc)
    codes = [error.code() if error is not None else None for error in refused]
    assert codes == [grpc.StatusCode.UNAVAILABLE] * 2, refused
    assert messages.index("draining") < messages.index("stopping") < messages.index("stopped")
