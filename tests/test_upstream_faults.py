"""An upstream that fails before the first byte, through the whole chain: HTTP client -> gateway ->
guardrails and generation (real processes on loopback) -> the fake OpenAI-compatible upstream,
whose own counters give the upstream attempts.

- Partial failure: one call in five answers 503 (exactly 20 %, at a seeded position in each block
  of five). Generation retries before the first token, within its retry budget: at least 95 % of
  the client requests succeed, with at most 1.25 upstream attempts each.
- Hard down: every call answers 503. The breaker opens after 10 consecutive failures and then
  answers at once: at most 1.1 upstream attempts per request, and the client gets a fast 503 with
  Retry-After and an OpenAI-style error body.
"""

import asyncio
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from llmsuite_testkit.openai_upstream import FakeUpstream, running_fake_upstream
from llmsuite_testkit.processes import (
    Process,
    ProcessGroup,
    fake_upstream,
    grpc_serving,
    http_ok,
    python_service,
)

from tools.localsuite.suite import Ports, SuiteConfig, service_envs

PARTIAL = "partial-model"
DOWN = "down-model"
REQUESTS = 200
CONCURRENCY = 10


@dataclass
class Chain:
    gateway_url: str
    api_key: str
    fake: FakeUpstream
    log_dir: Path


@pytest.fixture(scope="module")
def chain() -> Iterator[Chain]:
    data_dir = Path(tempfile.mkdtemp(prefix="llmsuite-faults-"))
    log_dir = data_dir / "logs"
    ports = Ports.free()
    cfg = SuiteConfig(
        api_key="sk-test-" + secrets.token_urlsafe(12),
        data_dir=data_dir,
        ports=ports,
        # One deployment each, so each has its own breaker; the retry budget is the process's.
        models={PARTIAL: {"upstream_model": PARTIAL}, DOWN: {"upstream_model": DOWN}},
        # No database: the gateway serves its configured key alone. Nothing listens on the
        # retrieval port; these chats do not use it.
        extra_env={"gateway": {"GATEWAY_PGSERVER_DATA_DIR": ""}},
        log_level="WARNING",
    )
    envs = service_envs(cfg)
    group = ProcessGroup()
    gateway = python_service("gateway", ports.gateway, envs["gateway"], log_dir)
    # Live, and its two backends serving: /readyz also wants retrieval.
    gateway_url = f"http://127.0.0.1:{ports.gateway}"
    gateway = Process(
        gateway.name,
        gateway.argv,
        gateway.env,
        lambda: http_ok(f"{gateway_url}/healthz"),
        gateway.log_path,
    )
    try:
        group.start(fake_upstream(ports.model, log_dir, "--models", f"{PARTIAL},{DOWN}"), timeout=30)
        group.start_many(
            [python_service(n, getattr(ports, n), envs[n], log_dir) for n in ("guardrails", "generation")],
            timeout=120,
        )
        assert grpc_serving(ports.guardrails) and grpc_serving(ports.generation)
        group.start(gateway, timeout=60)
        fake = FakeUpstream(f"http://127.0.0.1:{ports.model}")
        yield Chain(gateway_url, cfg.api_key, fake, log_dir)
        fake.close()
    finally:
        group.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@dataclass
class Outcome:
    status: int
    ok: bool
    seconds: float
    headers: httpx.Headers
    body: bytes


async def chat(client: httpx.AsyncClient, model: str, n: int, *, stream: bool) -> Outcome:
    body = {"model": model, "messages": [{"role": "user", "content": f"request {n}"}], "stream": stream}
    started = time.monotonic()
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        raw = await response.aread()
    seconds = time.monotonic() - started
    if response.status_code != 200:
        return Outcome(response.status_code, False, seconds, response.headers, raw)
    if stream:
        # Complete: ends with [DONE] and carries no error event.
        ok = raw.rstrip().endswith(b"data: [DONE]") and b'"error"' not in raw
    else:
        ok = bool(orjson.loads(raw)["choices"][0]["message"]["content"])
    return Outcome(200, ok, seconds, response.headers, raw)


async def load(chain: Chain, model: str, *, streams: bool) -> list[Outcome]:
    """REQUESTS chat requests from CONCURRENCY clients; every other one streamed when `streams`."""
    outcomes: list[Outcome] = []
    numbers = iter(range(REQUESTS))
    headers = {"authorization": f"Bearer {chain.api_key}"}
    async with httpx.AsyncClient(
        base_url=chain.gateway_url, headers=headers, timeout=30, trust_env=False
    ) as client:

        async def worker() -> None:
            for n in numbers:
                outcomes.append(await chat(client, model, n, stream=streams and n % 2 == 1))

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return outcomes


def test_the_fault_pattern_fails_one_call_in_each_block():
    with running_fake_upstream() as fake:
        fake.set_faults(5)
        statuses = [_call(fake).status_code for _ in range(10)]
        assert [i for i, s in enumerate(statuses, 1) if s == 503] == [5, 10]
        fake.set_faults(5, seed=3, scenario={"status": 502})
        statuses = [_call(fake).status_code for _ in range(100)]
        assert all(statuses[i : i + 5].count(502) == 1 for i in range(0, 100, 5))
        assert {i % 5 for i, s in enumerate(statuses) if s == 502} == set(range(5)), "positions vary"
        assert fake.faults() == {
            "pattern": fake.faults()["pattern"],
            "calls": 100,
            "injected": 20,
        }
        fake.set_faults(1)
        assert {_call(fake).status_code for _ in range(5)} == {503}
        fake.reset()
        assert fake.faults() is None and _call(fake).status_code == 200


def _call(fake: FakeUpstream) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{fake.base_url}/chat/completions", json=body, timeout=5, trust_env=False)


async def test_partial_upstream_failure_is_retried_before_the_first_byte(chain):
    chain.fake.set_faults(5, seed=1)
    outcomes = await load(chain, PARTIAL, streams=True)
    faults = chain.fake.faults()
    chain.fake.set_faults(None)
    assert faults is not None
    succeeded = sum(o.ok for o in outcomes) / len(outcomes)
    attempts = faults["calls"] / len(outcomes)
    print(
        f"\npartial failure: {succeeded:.1%} succeeded, {attempts:.3f} upstream attempts per request "
        f"({faults['calls']} calls, {faults['injected']} failed)"
    )
    assert len(outcomes) == REQUESTS
    assert succeeded >= 0.95, [o.body[:200] for o in outcomes if not o.ok][:3]
    assert attempts <= 1.25
    # Every failure the client saw is one generation gave up on, never a broken stream.
    assert all(o.status == 503 for o in outcomes if not o.ok)


async def test_hard_down_upstream_gets_fast_503s_with_retry_after(chain):
    chain.fake.set_faults(1)
    outcomes = await load(chain, DOWN, streams=False)
    faults = chain.fake.faults()
    chain.fake.set_faults(None)
    assert faults is not None
    attempts = faults["calls"] / len(outcomes)
    # The breaker opens within the first burst (10 clients); after it, every answer is immediate.
    later = sorted(o.seconds for o in outcomes[2 * CONCURRENCY :])
    p50, p99 = statistics.median(later), later[int(0.99 * (len(later) - 1))]
    print(
        f"\nhard down: {attempts:.3f} upstream attempts per request ({faults['calls']} calls); "
        f"503 latency after the breaker opened: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"Retry-After {sorted({o.headers.get('retry-after') for o in outcomes}, key=str)}"
    )
    assert attempts <= 1.1
    assert {o.status for o in outcomes} == {503}
    for o in outcomes:
        error = orjson.loads(o.body)["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "server_error" and error["code"].startswith("upstream_")
    circuit_open = [orjson.loads(o.body)["error"] for o in outcomes]
    circuit_open = [e for e in circuit_open if e["code"] == "upstream_circuit_open"]
    assert len(circuit_open) >= 0.9 * len(outcomes)
    # Generation says when the breaker's probe goes (its open period is 10 s): the Retry-After.
    assert all(e["message"].endswith(tuple(f"retry after {s} s" for s in range(1, 11))) for e in circuit_open)
    assert p50 < 0.1 and p99 < 0.5


async def test_hard_down_503s_carry_retry_after(chain):
    chain.fake.set_faults(1)
    headers = {"authorization": f"Bearer {chain.api_key}"}
    async with httpx.AsyncClient(
        base_url=chain.gateway_url, headers=headers, timeout=30, trust_env=False
    ) as client:
        outcomes = [await chat(client, DOWN, n, stream=False) for n in range(20)]
    chain.fake.set_faults(None)
    assert {o.status for o in outcomes} == {503}
    assert all(1 <= int(o.headers.get("retry-after", "0")) <= 10 for o in outcomes), "503 without Retry-After"
    # The wait is the header's, not a request parameter.
    assert all(orjson.loads(o.body)["error"]["param"] is None for o in outcomes)
