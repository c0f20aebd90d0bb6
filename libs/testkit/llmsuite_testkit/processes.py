"""Start, wait for and stop the suite's processes on loopback.

Shared by the tests, `make run` (tools.localsuite), the benchmarks and the dashboard tool. The
services are installed packages: a process is `python -m <name>_service` on this interpreter.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def busy_ports(ports: dict[str, int], host: str = "127.0.0.1") -> list[str]:
    """The named ports something already listens on (or holds), as "name (port)"."""
    busy = []
    for name, port in ports.items():
        with socket.socket() as s:
            # As servers bind: connections lingering in TIME_WAIT from a previous run are no conflict.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                busy.append(f"{name} ({port})")
    return busy


def grpc_serving(port: int, timeout: float = 1.0) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    ready: Callable[[], bool]
    log_path: Path
    # Where it runs; None: this process's working directory.
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        env = {**os.environ, **self.env}
        self.popen = subprocess.Popen(
            self.argv, cwd=self.cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen is not None and self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}; see {self.log_path}")
            if self.ready():
                return
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f}s; see {self.log_path}")

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.popen is None or self.popen.poll() is not None:
            return None if self.popen is None else self.popen.returncode
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            return self.popen.wait(5)


def python_service(name: str, port: int, env: dict[str, str], log_dir: Path) -> Process:
    full_env = {"OTEL_SERVICE_NAME": name, "PORT": str(port), **env}
    if name == "gateway":
        ready: Callable[[], bool] = lambda: http_ok(f"http://127.0.0.1:{port}/readyz")  # noqa: E731
    else:
        ready = lambda: grpc_serving(port)  # noqa: E731
    return Process(name, [sys.executable, "-m", f"{name}_service"], full_env, ready, log_dir / f"{name}.log")


def fake_upstream(port: int, log_dir: Path, *args: str, name: str = "fake-upstream") -> Process:
    """The scriptable OpenAI-compatible upstream (llmsuite_testkit.openai_upstream) on loopback;
    `args` are its further options (e.g. "--models", "a,b")."""
    argv = [sys.executable, "-m", "llmsuite_testkit.openai_upstream", "--host", "127.0.0.1"]
    return Process(
        name,
        [*argv, "--port", str(port), *args],
        {},
        lambda: http_ok(f"http://127.0.0.1:{port}/v1/models"),
        log_dir / f"{name}.log",
    )


class ProcessGroup:
    """Processes started in order and stopped in reverse order."""

    def __init__(self) -> None:
        self.processes: list[Process] = []

    def start(self, process: Process, timeout: float) -> Process:
        self.processes.append(process)
        process.start()
        process.wait_ready(timeout)
        return process

    def start_many(self, processes: list[Process], timeout: float) -> None:
        """Start together, then wait for each: slow loaders overlap."""
        for p in processes:
            self.processes.append(p)
            p.start()
        for p in processes:
            p.wait_ready(timeout)

    def stop(self) -> None:
        for p in reversed(self.processes):
            p.stop()
        self.processes.clear()
