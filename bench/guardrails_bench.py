"""Guardrails per-request latency: the CheckInput RPC over loopback, and the checks alone in-process."""

import asyncio
import time
import timeit

import grpc
from llmsuite.common.v1 import common_pb2
from llmsuite.guardrails.v1 import guardrails_pb2, guardrails_pb2_grpc

from .config import BenchSettings
from .processes import free_port, grpc_ready, spawn, wait_until
from .stats import pct
from .targets import AUTHORITY, service_argv, service_env


async def _drive(address: str, prompt: str, concurrency: int, seconds: float) -> dict:
    request = guardrails_pb2.CheckInputRequest(
        context=common_pb2.RequestContext(request_id="bench", org_id="bench"),
        messages=[common_pb2.ChatMessage(role="user", content=prompt)],
    )
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = guardrails_pb2_grpc.GuardrailsServiceStub(channel)
        metadata = AUTHORITY.metadata("guardrails", "bench")
        await stub.CheckInput(request, timeout=5, metadata=metadata)
        started = time.perf_counter()
        deadline = started + seconds

        async def worker() -> None:
            for _ in range(1_000_000):
                if time.perf_counter() >= deadline:
                    return
                t0 = time.perf_counter()
                await stub.CheckInput(request, timeout=5, metadata=metadata)
                latencies.append((time.perf_counter() - t0) * 1000)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "rps": len(latencies) / wall,
        "p50_ms": pct(latencies, 50),
        "p99_ms": pct(latencies, 99),
    }


# DESIGN.md's guardrails target is stated for a 2 KB prompt: ordinary prose, no findings.
_SENTENCE = "The quarterly report covers revenue, hiring plans and the migration of the billing system. "
PROMPT_2KB = (_SENTENCE * (2048 // len(_SENTENCE) + 1))[:2048]


def _in_process_us(prompt: str) -> float:
    """The default policy's checks (size, deny list, secrets, PII, injection) without the RPC."""
    from guardrails_service.app import builtin_policy
    from guardrails_service.engine import Guard
    from guardrails_service.settings import GuardrailsSettings

    guard = Guard(builtin_policy(GuardrailsSettings()))
    runs = 2000
    return timeit.timeit(lambda: guard.check_input([prompt], ["user"]), number=runs) / runs * 1e6


def run(cfg: BenchSettings) -> dict:
    port = free_port()
    env = service_env("guardrails", port, {})
    proc = spawn("guardrails-bench", service_argv("guardrails"), env, cfg.work_dir / "logs")
    try:
        wait_until(proc, grpc_ready(f"127.0.0.1:{port}"), cfg.startup_timeout_seconds)
        rows = [
            asyncio.run(_drive(f"127.0.0.1:{port}", PROMPT_2KB, c, cfg.guardrails_seconds)) for c in (1, 16)
        ]
    finally:
        proc.stop()
    in_process = _in_process_us(PROMPT_2KB)
    lines = [
        "One guardrails process with the default policy, one grpc.aio client on the same box, a 2 KB prompt.",
        "",
        "| concurrency | req/s | p50 ms | p99 ms |",
        "|---:|---:|---:|---:|",
        *(f"| {r['concurrency']} | {r['rps']:,.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} |" for r in rows),
        "",
        f"The default policy's checks alone (in-process): {in_process:.1f} µs per 2 KB prompt.",
    ]
    return {"rpc": rows, "in_process_us": in_process, "lines": lines}
