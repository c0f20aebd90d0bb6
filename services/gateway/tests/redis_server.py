"""A real Redis for tests: a private redis-server on a free loopback port, or the machine's own."""

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from llmsuite_testkit.processes import free_port

START_SECONDS = 10
SHARED_PORT = 6379


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen | None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def private(self) -> bool:
        return self.process is not None

    def stop(self) -> None:
        """Stops a private server (to test outages); start() brings it back on the same port."""
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=START_SECONDS)

    def start(self) -> None:
        self.process = _spawn(self.port)


def _spawn(port: int) -> subprocess.Popen:
    binary = shutil.which("redis-server")
    assert binary is not None
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            tempfile.gettempdir(),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline and not _answers(port):
        time.sleep(0.02)
    if not _answers(port):
        proc.kill()
        raise RuntimeError("redis-server did not start")
    return proc


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server"):
        server = RedisServer(free_port(), None)
        server.start()
        try:
            yield server
        finally:
            if server.process is not None and server.process.poll() is None:
                server.process.kill()
                server.process.wait(timeout=START_SECONDS)
        return
    if _answers(SHARED_PORT):
        yield RedisServer(SHARED_PORT, None)
        return
    pytest.skip("no redis-server binary and no Redis on 127.0.0.1:6379 (apt-get install redis-server)")
