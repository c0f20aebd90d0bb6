"""The retrieval service's own speed against its model's floor: Search at c=1 and c=16, ingest documents/s.

    .venv/bin/python -m bench.retrieval_service_bench [--rounds 3] [--runtime onnx] [--profile DIR] [--out FILE.json]

The service runs as deployed, `python -m retrieval_service` in a child process (the embedded
PostgreSQL, the packaged all-MiniLM-L6-v2 on CPU on the runtime --runtime names, uvloop, token
checks, its default settings otherwise), so the client's own work does not share its interpreter. Each round
ingests 200 documents of 120 words through unary Ingest (50 per call) into a fresh collection,
then searches it with distinct short queries (never cached), k=5, one caller at a time and 16
callers at once. The model floor is measured afterwards in this process with the service's own
Embedder: one short query per call, and batches of 16. Medians over the rounds are reported with
the load average, since the machine is shared. `--profile DIR` records py-spy flame graphs of the
service during the c=1 and c=16 phases of the first round.
"""

import argparse
import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
WORDS = (
    "invoice shipment customer contract renewal policy region quarter revenue forecast support ticket "
    "latency database backup incident review onboarding manager budget approval vendor audit compliance "
    "report summary release feature roadmap training schedule warehouse inventory payment refund account"
).split()
DOCUMENTS, DOC_WORDS, PER_CALL, K = 200, 120, 50, 5
C1_QUERIES, C16_QUERIES, CONCURRENCY = 100, 480, 16


def _texts(count: int, words: int | tuple[int, int], seed: int) -> list[str]:
    rng = random.Random(seed)
    lo, hi = (words, words) if isinstance(words, int) else words
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))) + "." for _ in range(count)]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far: on a shared machine, far steadier than wall time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _profile(pid: int, directory: Path | None, name: str) -> subprocess.Popen[bytes] | None:
    if directory is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    argv = [str(ROOT / ".venv/bin/py-spy"), "record", "-p", str(pid), "-r", "200", "--threads"]
    argv += ["-f", "raw", "-o", str(directory / f"{name}.txt")]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop_profile(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)


async def _searches(client: Any, collection: str, queries: list[str], concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    todo = list(queries)

    async def caller() -> None:
        while todo:
            query = todo.pop()
            t0 = time.perf_counter()
            reply = await client.search(collection, query, k=K, timeout=30)
            latencies.append((time.perf_counter() - t0) * 1000)
            if reply.cached or len(reply.chunks) != K:
                raise RuntimeError(f"search returned {len(reply.chunks)} chunks, cached={reply.cached}")

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return {
        "req_per_s": len(queries) / seconds,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
    }


async def _round(client: Any, pid: int, number: int, profile: Path | None) -> dict[str, Any]:
    collection = f"bench-{number}"
    await client.create_collection(collection, "bench")
    docs = _texts(DOCUMENTS, DOC_WORDS, seed=100 + number)
    spy = _profile(pid, profile if number == 0 else None, "ingest")
    started, cpu = time.perf_counter(), _cpu_seconds(pid)
    for start in range(0, DOCUMENTS, PER_CALL):
        batch = {f"doc-{i}": docs[i] for i in range(start, min(start + PER_CALL, DOCUMENTS))}
        await client.ingest_texts(collection, batch, timeout=600)
    ingest = DOCUMENTS / (time.perf_counter() - started)
    ingest_cpu_ms = (_cpu_seconds(pid) - cpu) * 1000 / DOCUMENTS
    _stop_profile(spy)
    queries = [f"{q} {number}-{i}" for i, q in enumerate(_texts(C1_QUERIES + C16_QUERIES, (4, 9), number))]
    await _searches(client, collection, [f"warm-up {i}" for i in range(8)], 1)
    phases: dict[str, Any] = {}
    for name, part, concurrency in (
        ("c1", queries[:C1_QUERIES], 1),
        ("c16", queries[C1_QUERIES:], CONCURRENCY),
    ):
        spy = _profile(pid, profile if number == 0 else None, name)
        cpu = _cpu_seconds(pid)
        phases[name] = await _searches(client, collection, part, concurrency)
        phases[name]["cpu_ms_per_req"] = (_cpu_seconds(pid) - cpu) * 1000 / len(part)
        _stop_profile(spy)
    return {"ingest_docs_per_s": ingest, "ingest_cpu_ms_per_doc": ingest_cpu_ms, **phases}


async def _model_floor(rounds: int) -> dict[str, float]:
    from retrieval_service.embedder import Embedder, packaged_model_dir
    from retrieval_service.settings import RetrievalSettings

    # The Embedder the service ran (RETRIEVAL_EMBEDDING_RUNTIME, --runtime, its threads, batches and
    # bfloat16 setting), on the model folder it used (it runs from the project root).
    settings = RetrievalSettings(retrieval_model_cache_dir=str(ROOT / ".data" / "models"))
    embedder = Embedder.from_settings(settings)
    await embedder.load(packaged_model_dir(settings.retrieval_model_cache_dir))
    queries = _texts(16 * 20, (4, 9), seed=99)
    await embedder.embed(queries[:16])
    single, batched = [], []
    for _ in range(rounds):
        for q in queries[:40]:
            t0 = time.perf_counter()
            await embedder.embed([q])
            single.append((time.perf_counter() - t0) * 1000)
        for start in range(0, len(queries), 16):
            t0 = time.perf_counter()
            await embedder.embed(queries[start : start + 16])
            batched.append((time.perf_counter() - t0) * 1000 / 16)
    # Ingest's floor: the bench's documents embedded in the service's batches, nothing else.
    documents = _texts(64, DOC_WORDS, seed=98)
    t0 = time.perf_counter()
    for _ in range(rounds):
        await embedder.embed(documents)
    docs_per_s = 64 * rounds / (time.perf_counter() - t0)
    await embedder.close()
    return {
        "runtime": embedder.runtime,
        "single_p50_ms": float(np.median(single)),
        "batch16_per_query_ms": float(np.median(batched)),
        "documents_per_s": docs_per_s,
    }


async def _measure(rounds: int, profile: Path | None) -> dict[str, Any]:
    from retrieval_service.client import RetrievalClient

    from .processes import free_port, grpc_ready, spawn, wait_until
    from .targets import AUTHORITY, service_argv, service_env

    work = Path(tempfile.mkdtemp(prefix="rtv-svc-bench-", dir="/tmp"))
    port = free_port()
    # The service as deployed: its own entry point (settings, uvloop, serve()), token checks on.
    env = service_env("retrieval", port, {"RETRIEVAL_PGSERVER_DATA_DIR": str(work / "pg")})
    child = spawn("retrieval", service_argv("retrieval"), dict(env), work / "logs")
    results: dict[str, Any] = {"load_average_before": os.getloadavg(), "rounds": []}
    try:
        wait_until(child, grpc_ready(f"127.0.0.1:{port}"), 300)
        credentials = AUTHORITY.credentials("bench")
        async with RetrievalClient(f"127.0.0.1:{port}", credentials=credentials, timeout=120) as client:
            for number in range(rounds):
                results["rounds"].append(await _round(client, child.pid, number, profile))
        results["peak_rss_mib"] = _peak_rss_mib(child.pid)
    finally:
        child.stop()
        shutil.rmtree(work, ignore_errors=True)
    results["model"] = await _model_floor(rounds)
    results["load_average_after"] = os.getloadavg()
    rs = results["rounds"]
    results["median"] = {
        "ingest_docs_per_s": float(np.median([r["ingest_docs_per_s"] for r in rs])),
        "ingest_cpu_ms_per_doc": float(np.median([r["ingest_cpu_ms_per_doc"] for r in rs])),
        **{
            f"{c}_{m}": float(np.median([r[c][m] for r in rs]))
            for c in ("c1", "c16")
            for m in ("req_per_s", "p50_ms", "p99_ms", "cpu_ms_per_req")
        },
    }
    return results


def run(cfg: Any) -> dict[str, Any]:
    """The `retrieval-service` cells of `make bench`: this module in a child process, its medians
    beside the model's floor measured in the same run."""
    out = cfg.work_dir / "retrieval-service.json"
    argv = [
        str(PYTHON),
        "-m",
        "bench.retrieval_service_bench",
        "--rounds",
        str(cfg.rounds),
        "--out",
        str(out),
    ]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=1800, check=False)
    if done.returncode != 0:
        reason = (done.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        return {"error": reason, "lines": [f"Not measured: {reason}"]}
    r = orjson.loads(out.read_bytes())
    m, floor = r["median"], r["model"]
    r["c1_p50_over_model_ms"] = m["c1_p50_ms"] - floor["single_p50_ms"]
    r["lines"] = [
        f"The retrieval service in its own process on the embedded PostgreSQL, embedding on "
        f"`{floor['runtime']}`; {DOCUMENTS} documents of {DOC_WORDS} words ingested {PER_CALL} per "
        f"Ingest call, then distinct short queries (never cached), k={K}. Medians of {len(r['rounds'])} "
        "round(s); the model floor is the same runtime alone, in this run.",
        "",
        "| figure | service | model floor | ratio |",
        "|---|---:|---:|---:|",
        f"| Search c=1 p50 | {m['c1_p50_ms']:.1f} ms | {floor['single_p50_ms']:.1f} ms (one query) | "
        f"+{r['c1_p50_over_model_ms']:.1f} ms |",
        f"| Search c=16 | {m['c16_req_per_s']:.0f} req/s, p99 {m['c16_p99_ms']:.0f} ms | "
        f"{1000 / floor['batch16_per_query_ms']:.0f} queries/s (batches of 16) | "
        f"{m['c16_req_per_s'] * floor['batch16_per_query_ms'] / 10:.0f} % of the floor |",
        f"| Ingest | {m['ingest_docs_per_s']:.1f} documents/s ({m['ingest_cpu_ms_per_doc']:.0f} ms CPU each) | "
        f"{floor['documents_per_s']:.1f} documents/s (embedding alone) | "
        f"{100 * m['ingest_docs_per_s'] / floor['documents_per_s']:.0f} % of the floor |",
        f"| service CPU per search | c=1 {m['c1_cpu_ms_per_req']:.1f} ms, c=16 {m['c16_cpu_ms_per_req']:.1f} ms | | |",
        f"| service peak memory (RSS) | {r.get('peak_rss_mib', float('nan')):.0f} MiB | | |",
    ]
    return r


def main() -> None:
    p = argparse.ArgumentParser(
        prog="python -m bench.retrieval_service_bench", description=__doc__.split("\n")[0]
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--profile", type=Path, default=None, help="py-spy raw stacks of the first round here")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument(
        "--runtime",
        choices=("auto", "onnx", "onnx-int8", "torch"),
        default=None,
        help="the embedding runtime of the service and the floor (default: RETRIEVAL_EMBEDDING_RUNTIME, auto)",
    )
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.runtime:
        os.environ["RETRIEVAL_EMBEDDING_RUNTIME"] = args.runtime
    result = asyncio.run(_measure(args.rounds, args.profile))
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(text)
    sys.stdout.buffer.write(text + b"\n")


if __name__ == "__main__":
    main()
