"""`python -m gateway_service` as a real process: startup checks, JSON logs, SIGTERM drain."""

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service_auth import AUTHORITY

STARTUP_SECONDS = 30


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@functools.cache
def signing_key_file() -> str:
    return str(AUTHORITY.write(Path(tempfile.mkdtemp(prefix="gateway-keys-")))[0])


def gateway_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "OTEL_"))}
    closed = f"dns:///127.0.0.1:{unused_port()}"
    return {
        **env,
        "HOST": "127.0.0.1",
        "GATEWAY_TOKEN_SIGNING_KEY_FILE": signing_key_file(),
        "GATEWAY_GUARDRAILS_TARGET": closed,
        "GATEWAY_RETRIEVAL_TARGET": closed,
        "GATEWAY_GENERATION_TARGET": closed,
        **extra,
    }


def test_refuses_to_start_without_an_api_key():
    result = subprocess.run(
        [sys.executable, "-m", "gateway_service"],
        env=gateway_env(GATEWAY_API_KEY="", PORT=str(unused_port())),
        capture_output=True,
        text=True,
        timeout=STARTUP_SECONDS,
    )
    assert result.returncode != 0
    assert "GATEWAY_API_KEY is empty" in result.stderr


def test_refuses_to_start_without_a_token_signing_key():
    result = subprocess.run(
        [sys.executable, "-m", "gateway_service"],
        env=gateway_env(
            GATEWAY_API_KEY="sk-process-test", GATEWAY_TOKEN_SIGNING_KEY_FILE="", PORT=str(unused_port())
        ),
        capture_output=True,
        text=True,
        timeout=STARTUP_SECONDS,
    )
    assert result.returncode != 0
    assert "GATEWAY_TOKEN_SIGNING_KEY_FILE is not set" in result.stderr


def spawn_gateway(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    """`python -m gateway_service` with `env` (PORT in it), once /healthz answers; its output goes to `log`."""
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gateway_service"], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{env['PORT']}"
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    proc.wait(timeout=10)
    raise RuntimeError("gateway did not start: " + log.read_text())


def wait_for_log(log: Path, msg: str, seconds: float = STARTUP_SECONDS) -> None:
    """Until the process has logged a JSON record with this message."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            try:
                if line.startswith("{") and json.loads(line).get("msg") == msg:
                    return
            except ValueError:
                continue  # a line still being written
        time.sleep(0.02)
    raise AssertionError(f"no {msg!r} record within {seconds} s: " + log.read_text(errors="replace")[-3000:])


@pytest.fixture
def process(tmp_path) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    port = unused_port()
    log = tmp_path / "gateway.log"
    env = gateway_env(GATEWAY_API_KEY="sk-process-test", PORT=str(port), DRAIN_SECONDS="1")
    proc, url = spawn_gateway(env, log)
    try:
        yield proc, url, log
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_json_access_log_and_drain_on_sigterm(process):
    proc, url, log = process
    response = httpx.get(f"{url}/v1/models", headers={"authorization": "Bearer sk-process-test"}, timeout=5)
    assert response.status_code == 503  # no backends here

    proc.send_signal(signal.SIGTERM)
    wait_for_log(log, "draining")  # the signal was handled; it serves on for DRAIN_SECONDS
    draining = httpx.get(f"{url}/readyz", timeout=5)
    assert draining.status_code == 503
    assert draining.json()["error"]["message"] == "not ready: draining"
    proc.wait(timeout=STARTUP_SECONDS)

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "gateway.access"]
    assert {(a["method"], a["path"], a["status"]) for a in access} >= {("GET", "/v1/models", 503)}
    assert all(a["service"] == "gateway" and a["request_id"] and "duration_ms" in a for a in access)
    assert "sk-process-test" not in log.read_text()
