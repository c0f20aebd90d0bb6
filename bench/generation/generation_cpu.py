"""CPU the generation process spends per streamed chunk and per non-streamed answer.

Generation runs as the service runs (its own process, `python -m generation_service`: uvloop, the
production interceptor chain, telemetry set up without an exporter, INFO logs to a file) against
bench/generation/fast_upstream.py, which streams `--chunks` chunks `--interval` s apart. A gRPC client in
this process reads `--requests` Generate calls at `--concurrency`:
- stream: deltas one by one, as the gateway reads a streaming request;
- whole: the same answer with `whole_answer` set (one Delta, then Final), as the gateway reads a
  non-streaming request.
CPU is generation's own (user + system from /proc) over the measured calls. `--root` runs another
checkout's generation (e.g. an exported older commit) with this same driver: that checkout's
.venv/bin/python, where its own `make install` installed its code.

    .venv/bin/python -m bench.generation.generation_cpu [--chunks 200] [--requests 200]
"""

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import uvloop
from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2, generation_pb2_grpc
from llmsuite_common.local_auth import LocalAuthority
from llmsuite_testkit.processes import Process, ProcessGroup, free_port, grpc_serving

from .fast_upstream import MODEL, wait_listening

# This checkout: fast_upstream runs from it (`python -m bench...`).
ROOT = Path(__file__).resolve().parents[2]
# The service verifies this authority's tokens, as a deployed one verifies the gateway's.
AUTHORITY = LocalAuthority()


def public_keys_file(directory: Path) -> str:
    return str(AUTHORITY.write(directory / "service-keys")[1])


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def drive(port: int, whole: bool, requests: int, concurrency: int) -> tuple[int, int]:
    """(deltas, responses) received over `requests` calls."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = generation_pb2_grpc.GenerationServiceStub(channel)
    request = generation_pb2.GenerateRequest(
        model=MODEL, messages=[common_pb2.ChatMessage(role="user", content="benchmark")], whole_answer=whole
    )
    counter = iter(range(requests))
    deltas = responses = 0

    async def worker() -> None:
        nonlocal deltas, responses
        for _ in counter:
            final = None
            async for response in stub.Generate(
                request, timeout=60, metadata=AUTHORITY.metadata("generation", "bench")
            ):
                responses += 1
                if response.HasField("delta"):
                    deltas += 1
                else:
                    final = response.final
            assert final is not None and final.finish_reason, final

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await channel.close()
    return deltas, responses


def measure(pid: int, port: int, whole: bool, args: argparse.Namespace) -> dict:
    uvloop.run(drive(port, whole, min(20, args.requests), args.concurrency))  # warm-up
    profiler = None
    if args.profile:
        # py-spy's own sampling costs generation nothing but a pause per sample; it is excluded
        # from nothing, so profiled runs are for the shape of the profile, not for the numbers.
        out = args.profile.with_suffix(f".{'whole' if whole else 'stream'}.txt")
        profiler = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "-p",
                str(pid),
                "-r",
                "200",
                "-f",
                "raw",
                "-o",
                str(out),
                *(["--native"] if args.native else ["--nonblocking"]),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1)
    tracer = None
    if args.strace:
        # System calls per upstream chunk, every thread of generation: where its kernel time goes.
        out = args.strace.with_suffix(f".{'whole' if whole else 'stream'}.txt")
        tracer = subprocess.Popen(
            ["strace", "-c", "-f", "-p", str(pid), "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1)
    before, started = cpu_seconds(pid), time.perf_counter()
    deltas, responses = uvloop.run(drive(port, whole, args.requests, args.concurrency))
    cpu, wall = cpu_seconds(pid) - before, time.perf_counter() - started
    for watcher in (profiler, tracer):
        if watcher is not None:
            watcher.send_signal(signal.SIGINT)
            watcher.wait(30)
    return {
        "mode": "whole_answer" if whole else "stream",
        "requests": args.requests,
        "deltas_per_request": deltas / args.requests,
        "cpu_ms_per_request": 1000 * cpu / args.requests,
        "cpu_us_per_upstream_chunk": 1e6 * cpu / (args.requests * args.chunks),
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=200)
    # uvloop's timers tick in milliseconds: 2 ms apart, every chunk reaches generation on its own.
    parser.add_argument("--interval", type=float, default=0.002, help="seconds between upstream chunks")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--modes", default="stream,whole")
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose generation service runs")
    parser.add_argument(
        "--profile", type=Path, help="py-spy raw stacks to <path>.<mode>.txt (numbers then skewed)"
    )
    parser.add_argument("--native", action="store_true", help="with --profile: C frames and system calls too")
    parser.add_argument(
        "--strace", type=Path, help="strace -c summary to <path>.<mode>.txt (numbers then skewed)"
    )
    args = parser.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="generation-cpu-"))
    upstream_port, port = free_port(), free_port()
    root = args.root.resolve()
    # A checkout runs in its own venv; this one in this interpreter's.
    python = sys.executable if root == ROOT else str(root / ".venv" / "bin" / "python")
    group = ProcessGroup()
    try:
        upstream = Process(
            "fast-upstream",
            [
                sys.executable,
                "-m",
                "bench.generation.fast_upstream",
                "--port",
                str(upstream_port),
                "--chunks",
                str(args.chunks),
                "--interval",
                str(args.interval),
            ],
            {},
            lambda: True,
            log_dir / "fast-upstream.log",
            cwd=ROOT,
        )
        group.start(upstream, timeout=10)
        wait_listening(upstream_port)
        env = {
            "OTEL_SERVICE_NAME": "generation",
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "GENERATION_UPSTREAM_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
            "GRPC_AUTH_PUBLIC_KEYS_FILE": public_keys_file(log_dir),
            # The stop sequence a base model route has: the servicer watches for it in every chunk.
            "GENERATION_MODELS": json.dumps({MODEL: {"upstream_model": MODEL, "stop": ["\n###"]}}),
        }
        generation = Process(
            "generation",
            [python, "-m", "generation_service"],
            env,
            lambda: grpc_serving(port),
            log_dir / "generation.log",
        )
        group.start(generation, timeout=60)
        assert generation.popen is not None
        rows = [measure(generation.popen.pid, port, mode == "whole", args) for mode in args.modes.split(",")]
    finally:
        group.stop()
    print(
        json.dumps(
            {
                "root": str(root),
                "chunks": args.chunks,
                "interval_s": args.interval,
                "concurrency": args.concurrency,
                "results": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
