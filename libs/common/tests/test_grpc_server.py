import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from llmsuite_common.local_auth import LocalAuthority
from llmsuite_testkit.processes import free_port

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def health(port: int) -> int | None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            return (
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=0.5).status
            )
        except grpc.RpcError:
            return None


def poll(port: int, until: set[int | None], timeout: float) -> list[int | None]:
    seen: list[int | None] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = health(port)
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in until:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"health never reached {until}; saw {seen}")


def test_a_service_without_public_keys_refuses_to_start(tmp_path):
    env = {
        **os.environ,
        "PORT": str(free_port()),
        "START_SECONDS": "0",
        "GRPC_AUTH_PUBLIC_KEYS_FILE": "",
    }
    script = Path(__file__).with_name("slow_start_service.py")
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, timeout=60)
    assert done.returncode != 0
    assert b"GRPC_AUTH_PUBLIC_KEYS_FILE is not set" in done.stderr


def test_health_is_not_serving_while_loading_and_draining(tmp_path):
    port = free_port()
    env = {
        "GRPC_AUTH_PUBLIC_KEYS_FILE": str(LocalAuthority().write(tmp_path)[1]),
        **os.environ,
        "PORT": str(port),
        "START_SECONDS": "2",
        "DRAIN_SECONDS": "1.5",
        "OTEL_SERVICE_NAME": "slow",
    }
    script = Path(__file__).with_name("slow_start_service.py")
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE)
    try:
        seen = poll(port, {SERVING}, timeout=30)
        assert NOT_SERVING in seen, f"never reported NOT_SERVING while loading: {seen}"
        proc.send_signal(signal.SIGTERM)
        assert poll(port, {NOT_SERVING}, timeout=1.0)[-1] == NOT_SERVING
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        logs = proc.stderr.read().decode() if proc.stderr else ""
    messages = [json.loads(line).get("msg") for line in logs.splitlines() if line.startswith("{")]
    assert messages.index("draining") < messages.index("stopped")
