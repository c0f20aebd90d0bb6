"""SIGTERM drains the request log: a gateway process whose rows are all still queued (the flush
interval outlasts the test) is stopped right after its last response, exits 0, and every request
has its row in PostgreSQL."""

import asyncio
import secrets
import shutil
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from llmsuite_common.embedded_postgres import EmbeddedPostgres
from llmsuite_testkit.processes import Process, ProcessGroup, fake_upstream, http_ok, python_service
from prometheus_client.parser import text_string_to_metric_families

from tools.localsuite.suite import Ports, SuiteConfig, service_envs

MODEL = "fake-model"
REQUESTS = 1000
CONCURRENCY = 32
EXIT_SECONDS = 30


@dataclass
class Pair:
    url: str
    api_key: str
    gateway: Process
    dsn: str


@pytest.fixture(scope="module")
def stack() -> Iterator[Pair]:
    # Not under pytest's basetemp: embedded Postgres runs as its own user and must traverse the path.
    data_dir = Path(tempfile.mkdtemp(prefix="llmsuite-sigterm-"))
    data_dir.chmod(0o755)
    log_dir = data_dir / "logs"
    ports = Ports.free()
    cfg = SuiteConfig(
        api_key="sk-sigterm-" + secrets.token_urlsafe(12),
        data_dir=data_dir,
        ports=ports,
        upstream_base_url=f"http://127.0.0.1:{ports.model}/v1",
        models={MODEL: {"upstream_model": MODEL, "stop": []}},
    )
    envs = service_envs(cfg)
    # The test holds the embedded server too, so it outlives the gateway and its rows can be read.
    database = EmbeddedPostgres(str(data_dir / "pgserver"))
    dsn = database.start()
    group = ProcessGroup()
    try:
        group.start(fake_upstream(ports.model, log_dir), timeout=30)
        group.start_many(
            [python_service(n, getattr(ports, n), envs[n], log_dir) for n in ("guardrails", "generation")],
            timeout=120,
        )
        gateway = python_service(
            "gateway",
            ports.gateway,
            {
                **envs["gateway"],
                # Longer than the whole test: nothing is written before SIGTERM.
                "GATEWAY_USAGE_FLUSH_SECONDS": "600",
                "LOG_LEVEL": "WARNING",
            },
            log_dir,
        )
        # No retrieval service here, so /readyz would never pass; liveness is enough.
        gateway.ready = lambda: http_ok(f"http://127.0.0.1:{ports.gateway}/healthz")
        group.start(gateway, timeout=60)
        yield Pair(f"http://127.0.0.1:{ports.gateway}", cfg.api_key, gateway, dsn)
    finally:
        group.stop()
        database.release()
        shutil.rmtree(data_dir, ignore_errors=True)


async def send_all(url: str, api_key: str) -> list[str]:
    gate = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(
        base_url=url,
        headers={"authorization": f"Bearer {api_key}"},
        timeout=30,
        limits=limits,
        trust_env=False,
    ) as http:

        async def one(i: int) -> str:
            async with gate:
                response = await http.post(
                    "/v1/chat/completions",
                    json={
                        "model": MODEL,
                        "messages": [{"role": "user", "content": f"request {i}"}],
                        "cache": False,
                    },
                )
            assert response.status_code == 200, response.text
            return response.headers["x-request-id"]

        return await asyncio.gather(*(one(i) for i in range(REQUESTS)))


def queue_depth(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "llmsuite_gateway_usage_queue_depth"
    )


def test_sigterm_writes_every_queued_row_before_exit(stack):
    request_ids = asyncio.run(send_all(stack.url, stack.api_key))
    assert len(set(request_ids)) == REQUESTS
    # Every row is still queued: what follows can only pass if the shutdown writes them.
    assert queue_depth(stack.url) == REQUESTS

    popen = stack.gateway.popen
    popen.send_signal(signal.SIGTERM)
    assert popen.wait(EXIT_SECONDS) == 0

    with psycopg.connect(stack.dsn) as conn:
        rows = dict(
            conn.execute(
                "SELECT request_id, prompt_tokens + completion_tokens FROM gateway.usage_events "
                "WHERE request_id = ANY(%s)",
                (request_ids,),
            ).fetchall()
        )
    assert set(rows) == set(request_ids)
    assert all(tokens > 0 for tokens in rows.values())
    log = stack.gateway.log_path.read_text(errors="replace")
    assert "request log rows not written" not in log
