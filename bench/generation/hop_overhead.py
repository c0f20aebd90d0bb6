"""What the generation hop adds: streaming straight from the upstream vs through generation.

Both paths stream the same scripted reply from the same fake upstream process:
- direct: an httpx client reads the upstream's SSE until `[DONE]`;
- generation: a gRPC client reads Generate until its Final (generation in its own
  process, routing, retry bookkeeping, stop/cap enforcement and accounting included).
The hop's cost is the difference, reported as p50/p99 of time to first token and of
the whole stream at each concurrency.

    .venv/bin/python -m bench.generation.hop_overhead [--chunks 20] [--requests 400]
"""

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import grpc
import httpx
from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2, generation_pb2_grpc
from llmsuite_common.local_auth import LocalAuthority
from llmsuite_testkit.processes import ProcessGroup, fake_upstream, free_port, python_service

# The service verifies this authority's tokens, as a deployed one verifies the gateway's.
AUTHORITY = LocalAuthority()


def public_keys_file(directory: Path) -> str:
    return str(AUTHORITY.write(directory / "service-keys")[1])


MODEL = "bench-model"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_load(one, concurrency: int, requests: int) -> tuple[list[float], list[float]]:
    ttft: list[float] = []
    total: list[float] = []
    counter = iter(range(requests))

    async def worker() -> None:
        for _ in counter:
            first, whole = await one()
            ttft.append(first)
            total.append(whole)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ttft, total


def direct_client(base_url: str, body: bytes):
    client = httpx.AsyncClient(
        base_url=base_url, timeout=60, limits=httpx.Limits(max_connections=256, max_keepalive_connections=256)
    )

    async def one() -> tuple[float, float]:
        started = time.perf_counter()
        first = 0.0
        async with client.stream(
            "POST", "/chat/completions", content=body, headers={"content-type": "application/json"}
        ) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    break
                if not first and '"content": "tok' in line:
                    first = time.perf_counter() - started
        return first, time.perf_counter() - started

    return client, one


def generation_client(port: int):
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = generation_pb2_grpc.GenerationServiceStub(channel)
    request = generation_pb2.GenerateRequest(
        model=MODEL, messages=[common_pb2.ChatMessage(role="user", content="benchmark")]
    )

    async def one() -> tuple[float, float]:
        started = time.perf_counter()
        first = 0.0
        async for response in stub.Generate(
            request, timeout=60, metadata=AUTHORITY.metadata("generation", "bench")
        ):
            if not first and response.HasField("delta") and response.delta.content:
                first = time.perf_counter() - started
        return first, time.perf_counter() - started

    return channel, one


async def measure(fake_url: str, gen_port: int, chunks: int, requests: int, concurrencies: list[int]) -> dict:
    body = json.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "benchmark"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()
    http, direct = direct_client(fake_url + "/v1", body)
    channel, through = generation_client(gen_port)
    results: dict = {"chunks": chunks, "requests": requests, "runs": []}
    try:
        for one in (direct, through):
            await run_load(one, 8, 50)  # warm-up: connections, code paths
        for concurrency in concurrencies:
            row: dict = {"concurrency": concurrency}
            for name, one in (("direct", direct), ("generation", through)):
                started = time.perf_counter()
                ttft, total = await run_load(one, concurrency, requests)
                row[name] = {
                    "ttft_p50_ms": percentile(ttft, 0.5) * 1000,
                    "ttft_p99_ms": percentile(ttft, 0.99) * 1000,
                    "total_p50_ms": percentile(total, 0.5) * 1000,
                    "total_p99_ms": percentile(total, 0.99) * 1000,
                    "mean_ms": statistics.fmean(total) * 1000,
                    "rps": requests / (time.perf_counter() - started),
                }
            row["added"] = {
                k: row["generation"][k] - row["direct"][k]
                for k in ("ttft_p50_ms", "ttft_p99_ms", "total_p50_ms", "total_p99_ms")
            }
            results["runs"].append(row)
    finally:
        await http.aclose()
        await channel.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per streamed reply")
    parser.add_argument("--requests", type=int, default=400, help="requests per path and concurrency")
    parser.add_argument("--concurrency", default="1,64")
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    log_dir = Path(tempfile.mkdtemp(prefix="hop-bench-"))
    fake_port, gen_port = free_port(), free_port()
    fake_url = f"http://127.0.0.1:{fake_port}"
    group = ProcessGroup()
    try:
        group.start(
            fake_upstream(fake_port, log_dir, "--models", MODEL, "--max-records", "1000"),
            timeout=30,
        )
        httpx.put(f"{fake_url}/_script/default", json={"chunks": args.chunks}, timeout=5).raise_for_status()
        env = {
            "HOST": "127.0.0.1",
            "LOG_LEVEL": "WARNING",
            "GENERATION_UPSTREAM_BASE_URL": f"{fake_url}/v1",
            "GRPC_AUTH_PUBLIC_KEYS_FILE": public_keys_file(log_dir),
            "GENERATION_MODELS": json.dumps({MODEL: {"upstream_model": MODEL}}),
        }
        group.start(python_service("generation", gen_port, env, log_dir), timeout=60)
        results = asyncio.run(measure(fake_url, gen_port, args.chunks, args.requests, concurrencies))
    finally:
        group.stop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
