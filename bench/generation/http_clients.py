"""CPU per request and per streamed chunk of the HTTP clients generation could talk to its upstreams with.

Against bench/generation/fast_upstream.py (its own process, so only the client's CPU is counted), on
uvloop as the service runs:
- stream: `--stream-concurrency` streamed answers of `--chunks` SSE chunks at a time (each chunk
  arrives on its own), read piece by piece as generation reads it;
- short: `--concurrency` clients asking for short non-streamed answers over a shared pool.
Clients: httpx (httpcore), httpx over httpx-aiohttp's aiohttp transport (when installed) and plain
aiohttp. CPU is this process's (user + system) over the measured requests.

    .venv/bin/python -m bench.generation.http_clients [--chunks 200] [--requests 40]
"""

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import uvloop
from llmsuite_testkit.processes import free_port

from .fast_upstream import wait_listening

# The checkout: fast_upstream runs from it (`python -m bench...`).
ROOT = Path(__file__).resolve().parents[2]
BODY_STREAM = json.dumps(
    {"model": "bench-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}
).encode()
BODY_WHOLE = json.dumps({"model": "bench-model", "messages": [{"role": "user", "content": "hi"}]}).encode()
HEADERS = {"content-type": "application/json", "accept-encoding": "identity"}

# One request: returns the number of body pieces read.
One = Callable[[str, bytes], Awaitable[int]]


def httpx_client(
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[One, Callable[[], Awaitable[None]]]:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    client = httpx.AsyncClient(
        limits=limits, timeout=httpx.Timeout(60.0, connect=5.0), trust_env=False, transport=transport
    )

    async def one(url: str, body: bytes) -> int:
        pieces = 0
        async with client.stream("POST", url, content=body, headers=HEADERS) as response:
            async for _ in response.aiter_bytes():
                pieces += 1
        return pieces

    return one, client.aclose


def httpx_aiohttp_client() -> tuple[One, Callable[[], Awaitable[None]]] | None:
    try:
        from httpx_aiohttp import AiohttpTransport
    except ImportError:
        return None
    connector = aiohttp.TCPConnector(limit=100)
    return httpx_client(AiohttpTransport(client=lambda: aiohttp.ClientSession(connector=connector)))


def aiohttp_client() -> tuple[One, Callable[[], Awaitable[None]]]:
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=100),
        timeout=aiohttp.ClientTimeout(total=60, connect=5),
        auto_decompress=False,
    )

    async def one(url: str, body: bytes) -> int:
        pieces = 0
        async with session.post(url, data=body, headers=HEADERS) as response:
            content = response.content
            while await content.readany():
                pieces += 1
        return pieces

    return one, session.close


async def run(one: One, url: str, body: bytes, requests: int, concurrency: int) -> tuple[float, float]:
    """(CPU seconds, pieces read) over `requests` requests at `concurrency`."""
    counter = iter(range(min(requests, 2 * concurrency)))
    pieces = 0

    async def worker() -> None:
        nonlocal pieces
        for _ in counter:
            read = await one(url, body)
            pieces += read

    await asyncio.gather(*(worker() for _ in range(concurrency)))  # warm-up: connections, code
    counter = iter(range(requests))
    pieces = 0
    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.process_time() - started, pieces


async def measure(stream_url: str, short_url: str, args: argparse.Namespace) -> list[dict]:
    factories = {"httpx": httpx_client, "httpx-aiohttp": httpx_aiohttp_client, "aiohttp": aiohttp_client}
    rows = []
    for name, factory in factories.items():
        made = factory()
        if made is None:
            rows.append({"client": name, "skipped": "not installed"})
            continue
        one, close = made
        try:
            cpu, pieces = await run(one, stream_url, BODY_STREAM, args.requests, args.stream_concurrency)
            short_cpu, _ = await run(one, short_url, BODY_WHOLE, args.short_requests, args.concurrency)
        finally:
            await close()
        rows.append(
            {
                "client": name,
                "stream_cpu_ms_per_request": 1000 * cpu / args.requests,
                "stream_cpu_us_per_chunk": 1e6 * cpu / (args.requests * args.chunks),
                "stream_reads_per_request": pieces / args.requests,
                f"short_c{args.concurrency}_cpu_ms_per_request": 1000 * short_cpu / args.short_requests,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=200)
    # uvloop's timers tick in milliseconds: 2 ms apart, every chunk reaches the client on its own.
    parser.add_argument("--interval", type=float, default=0.002)
    parser.add_argument("--requests", type=int, default=80, help="streamed answers per client")
    parser.add_argument("--stream-concurrency", type=int, default=8)
    parser.add_argument("--short-requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    ports = free_port(), free_port()
    servers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.generation.fast_upstream",
                "--port",
                str(port),
                "--chunks",
                str(chunks),
                "--interval",
                str(interval),
            ],
            cwd=ROOT,
        )
        for port, chunks, interval in ((ports[0], args.chunks, args.interval), (ports[1], 5, 0.0))
    ]
    try:
        for port in ports:
            wait_listening(port)
        urls = [f"http://127.0.0.1:{port}/v1/chat/completions" for port in ports]
        rows = uvloop.run(measure(urls[0], urls[1], args))
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)
    print(json.dumps({"chunks": args.chunks, "interval_s": args.interval, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
