"""A stream longer than the gRPC connection age completes through the whole chain. Every backend
here ages its connections out after CONNECTION_AGE_SECONDS (3 s; the chart's is 300 s), so a
stream of ~8 s (LONG_CHUNKS chunks LONG_DELAY apart from the fake upstream) sees its connections
reach their age two or three times over: each gets a GOAWAY, the calls on it keep running for the
age grace, and new calls go to new connections. One SSE and one WebSocket stream, under the mixed
load."""

import asyncio
import time

import httpx
import orjson
from websockets.asyncio.client import connect

from tests.faults.harness import CONNECTION_AGE_SECONDS, LONG_CHUNKS, LONG_DELAY, LONG_MODEL, Harness
from tests.faults.load import Balancer, Load, report, under_load


async def sse_stream(harness: Harness) -> tuple[int, bool, float]:
    """Content chunks received, whether it ended with [DONE] and no error, and how long it took."""
    gateway = harness.gateways[0]
    body = {"model": LONG_MODEL, "messages": [{"role": "user", "content": "a long answer"}], "stream": True}
    headers = {"authorization": f"Bearer {harness.load_key}", "x-request-id": "long-sse"}
    started = time.monotonic()
    chunks, complete = 0, False
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60, trust_env=False) as client:
        async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
            assert response.status_code == 200, await response.aread()
            async for line in response.aiter_lines():
                if line == "data: [DONE]":
                    complete = True
                elif line.startswith("data: "):
                    event = orjson.loads(line[6:])
                    assert "error" not in event, event
                    chunks += any(c["delta"].get("content") for c in event["choices"])
    return chunks, complete, time.monotonic() - started


async def ws_stream(harness: Harness) -> tuple[int, bool, float]:
    gateway = harness.gateways[1]
    url = gateway.url.replace("http://", "ws://") + "/v1/chat/completions/ws"
    headers = {"authorization": f"Bearer {harness.load_key}", "x-request-id": "long-ws"}
    started = time.monotonic()
    chunks, complete = 0, False
    async with connect(url, additional_headers=headers, proxy=None) as socket:
        await socket.send(
            orjson.dumps({"model": LONG_MODEL, "messages": [{"role": "user", "content": "long"}]}).decode()
        )
        async for frame in socket:
            event = orjson.loads(frame)
            assert "error" not in event, event
            if event.get("choices") == [] and "usage" in event:
                complete = True
                break
            chunks += any(c["delta"].get("content") for c in event["choices"])
    return chunks, complete, time.monotonic() - started


async def test_a_stream_longer_than_the_connection_age_completes(harness: Harness, record):
    results: dict[str, tuple[int, bool, float]] = {}

    async def long_streams(balancer: Balancer, load: Load) -> None:
        sse, ws = await asyncio.gather(sse_stream(harness), ws_stream(harness))
        results["sse"], results["ws"] = sse, ws

    load, _ = await under_load(harness, harness.load_key, long_streams, tail=0.5)
    notes = [
        f"{kind}: {chunks} of {LONG_CHUNKS} chunks in {seconds:.1f} s "
        f"({seconds / CONNECTION_AGE_SECONDS:.1f} times the {CONNECTION_AGE_SECONDS:.0f} s connection age), "
        f"{'complete' if complete else 'cut'}"
        for kind, (chunks, complete, seconds) in results.items()
    ]
    result, missing = await report(
        harness, "A stream longer than the connection age", load.outcomes, recovery_seconds=None, notes=notes
    )
    record.append(result)
    print("\n" + result.table())
    for chunks, complete, seconds in results.values():
        assert complete and chunks == LONG_CHUNKS
        assert seconds >= LONG_CHUNKS * LONG_DELAY * 0.9 > 2 * CONNECTION_AGE_SECONDS
    assert result.failed == 0, result.failures
    assert result.truncated == 0
    assert result.rows_lost == 0, sorted(missing)[:5]
