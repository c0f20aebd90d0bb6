"""Closed-loop load generator: N workers on persistent connections, each sending the next request
as soon as its previous one finished, for a fixed time.

Runs as its own process (`python -m bench.loadgen result.json < spec.json`) so that its CPU is
its own and measurable: the result carries the CPU seconds it used, which is how the report
shows it was not the bottleneck.
"""

import asyncio
import itertools
import resource
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

import aiohttp
import orjson
import uvloop


@dataclass(frozen=True)
class CellSpec:
    url: str
    payload: dict
    concurrency: int
    duration_s: float
    expected_chunks: int
    expected_text: str
    headers: dict = field(default_factory=dict)
    # The upstream's content chunks in order; when set, a faithful stream must carry exactly these.
    expected_parts: list | None = None
    warmup_s: float = 1.0
    timeout_s: float = 30.0
    # Bounds the run even if the target answers impossibly fast.
    max_requests: int = 2_000_000
    # Off for long soaks: counting only keeps the generator's own memory flat.
    collect: bool = True


@dataclass
class CellResult:
    ok: int = 0
    errors: int = 0
    # Every request that finished, in warm-up and measured time alike, whatever its outcome: the
    # phases end only when all of them have, so the target's CPU over the cell divides by this.
    handled: int = 0
    error_kinds: dict = field(default_factory=dict)
    # Streams whose content chunks and text matched the upstream's exactly.
    faithful: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    maxrss_kb: int = 0
    latency_ms: list = field(default_factory=list)
    ttft_ms: list = field(default_factory=list)
    gap_ms: list = field(default_factory=list)
    chunks_seen: list = field(default_factory=list)


class _Recorder:
    def __init__(self, spec: CellSpec, result: CellResult, recording: bool) -> None:
        self.spec = spec
        self.result = result
        self.recording = recording
        self.kinds: Counter[str] = Counter()

    def error(self, kind: str) -> None:
        if self.recording:
            self.result.errors += 1
            self.kinds[kind] += 1


async def _one(session: aiohttp.ClientSession, body: bytes, rec: _Recorder) -> None:
    spec = rec.spec
    stream = bool(spec.payload.get("stream"))
    started = time.perf_counter()
    try:
        async with session.post(spec.url, data=body, headers=spec.headers) as resp:
            if resp.status != 200:
                await resp.read()
                rec.error(f"http {resp.status}")
                return
            if not stream:
                answer = orjson.loads(await resp.read())
                done = time.perf_counter()
                text = answer["choices"][0]["message"]["content"]
                if text != spec.expected_text:
                    rec.error("wrong text")
                    return
                if rec.recording:
                    rec.result.ok += 1
                    rec.result.faithful += 1
                    if spec.collect:
                        rec.result.latency_ms.append((done - started) * 1000)
                return
            times: list[float] = []
            parts: list[str] = []
            finished = False
            async for line in resp.content:
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    finished = True
                    break
                event = orjson.loads(data)
                if "error" in event:
                    rec.error("error event")
                    return
                choices = event.get("choices") or ()
                content = (choices[0].get("delta") or {}).get("content") if choices else None
                if content:
                    times.append(time.perf_counter())
                    parts.append(content)
            done = time.perf_counter()
    except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError, KeyError, IndexError) as exc:
        rec.error(type(exc).__name__)
        return
    if not finished:
        rec.error("stream ended without [DONE]")
        return
    if not rec.recording:
        return
    result = rec.result
    result.ok += 1
    if spec.expected_parts is not None:
        if parts == spec.expected_parts:
            result.faithful += 1
    elif len(times) == spec.expected_chunks and "".join(parts) == spec.expected_text:
        result.faithful += 1
    if spec.collect:
        result.latency_ms.append((done - started) * 1000)
        result.chunks_seen.append(len(times))
        if times:
            result.ttft_ms.append((times[0] - started) * 1000)
            result.gap_ms.extend((b - a) * 1000 for a, b in itertools.pairwise(times))


async def _phase(session: aiohttp.ClientSession, rec: _Recorder, seconds: float) -> float:
    body = orjson.dumps(rec.spec.payload)
    started = time.perf_counter()
    deadline = started + seconds
    budget = [rec.spec.max_requests]

    async def worker() -> None:
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            await _one(session, body, rec)
            rec.result.handled += 1

    await asyncio.gather(*(worker() for _ in range(rec.spec.concurrency)))
    return time.perf_counter() - started


async def run_cell(spec: CellSpec) -> CellResult:
    result = CellResult()
    connector = aiohttp.TCPConnector(limit=spec.concurrency, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
    headers = {"content-type": "application/json", **spec.headers}
    spec = CellSpec(**{**asdict(spec), "headers": headers})
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if spec.warmup_s > 0:
            await _phase(session, _Recorder(spec, result, recording=False), spec.warmup_s)
        rec = _Recorder(spec, result, recording=True)
        before = resource.getrusage(resource.RUSAGE_SELF)
        result.wall_s = await _phase(session, rec, spec.duration_s)
        after = resource.getrusage(resource.RUSAGE_SELF)
    result.cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result.maxrss_kb = after.ru_maxrss
    result.error_kinds = dict(rec.kinds)
    return result


def main() -> None:
    spec = CellSpec(**orjson.loads(sys.stdin.buffer.read()))
    result = uvloop.run(run_cell(spec))
    # A file, not stdout: the event loop may leave stdout non-blocking, which truncates large writes.
    with open(sys.argv[1], "wb") as out:
        out.write(orjson.dumps(asdict(result)))


if __name__ == "__main__":
    main()
