"""Retrieval benchmarks: search latency at 10k and 100k chunks, ingest throughput, embedding batching.

    python -m retrieval_service.benchmark [--out FILE.json] [--sizes 10000,100000] [--quick]

Starts the service in this process on a loopback port (embedded PostgreSQL in a scratch
directory, the packaged all-MiniLM-L6-v2 on CPU) and measures through its real gRPC API
where a caller would: search latency end to end (query embedding included, cache missed
on purpose with distinct queries, and a cache-hit row), and the vector-store part alone.
Search corpora are synthetic clustered 384-d vectors bulk-loaded with binary COPY: embedding
100k texts on two cores would take most of an hour and changes nothing about index latency.

`measure(options) -> dict` is the entry point for other harnesses (bench/); the JSON it
returns has a "lines" list: the Markdown report.
"""

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

WORDS = (
    "invoice shipment customer contract renewal policy region quarter revenue forecast support ticket "
    "latency database backup incident review onboarding manager budget approval vendor audit compliance "
    "report summary "
    "release feature roadmap training schedule warehouse inventory payment refund account security access"
).split()


@dataclass(frozen=True)
class Options:
    sizes: tuple[int, ...] = (10_000, 100_000)
    queries: int = 200
    ingest_documents: int = 120
    embedding_texts: int = 256
    batch_size: int = 32
    concurrency: int = 32


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def sentences(count: int, seed: int, words: tuple[int, int] = (20, 120)) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(*words))) + "." for _ in range(count)]


async def embedding_throughput(opts: Options) -> dict[str, Any]:
    """Texts/s one per model call vs in batches, for query-sized and chunk-sized texts, and concurrent
    one-text callers through the micro-batching queue.

    Single and batched runs alternate for three rounds and the median of each is kept, so a burst
    of other work on the machine does not land on one mode only.
    """
    from .batching import MicroBatcher
    from .embedder import Embedder, packaged_model_dir
    from .settings import RetrievalSettings

    threads = RetrievalSettings().retrieval_torch_threads
    embedder = Embedder(batch_size=opts.batch_size, torch_threads=threads)
    await embedder.load(packaged_model_dir(str(Path(".data/models").resolve())))  # noqa: ASYNC240 - once, at start
    kinds: dict[str, Any] = {}
    for kind, words in (("query", (6, 14)), ("chunk", (20, 120))):
        texts = sentences(opts.embedding_texts, seed=7, words=words)
        singles = texts[: max(16, len(texts) // 4)]
        await embedder.embed(texts[: opts.batch_size])  # warm-up
        batched, single = [], []
        for _ in range(3):
            started = time.perf_counter()
            await embedder.embed(texts)
            batched.append(len(texts) / (time.perf_counter() - started))
            started = time.perf_counter()
            for text in singles:
                await embedder.embed([text])
            single.append(len(singles) / (time.perf_counter() - started))
        kinds[kind] = {
            "words": list(words),
            "batched_per_s": float(np.median(batched)),
            "single_per_s": float(np.median(single)),
            "speedup": float(np.median(batched) / np.median(single)),
        }

    batcher = MicroBatcher(embedder, batch_size=opts.batch_size, max_wait=0.002, max_queued=4096)
    rates = []
    for round_ in range(3):
        queue = sentences(opts.embedding_texts, seed=9 + round_, words=(6, 14))
        count = len(queue)

        async def caller(queue: list[str] = queue) -> None:
            while queue:
                await batcher.embed([queue.pop()])

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(opts.concurrency)))
        rates.append(count / (time.perf_counter() - started))
    queued = float(np.median(rates))
    batches = batcher.batches / 3
    await batcher.close()
    return {
        "texts": opts.embedding_texts,
        "batch_size": opts.batch_size,
        "torch_threads": threads,
        "kinds": kinds,
        "concurrent_callers": opts.concurrency,
        "micro_batched_per_s": queued,
        "micro_batches": batches,
    }


async def ingest_throughput(client: Any, opts: Options) -> dict[str, Any]:
    from .client import Source

    docs = sentences(opts.ingest_documents * 3, seed=11, words=(60, 140))
    sources = [
        Source(id=f"doc-{i}", text="\n\n".join(docs[3 * i : 3 * i + 3]), metadata={"n": str(i)})
        for i in range(opts.ingest_documents)
    ]
    started = time.perf_counter()
    chunks = failed = 0
    async for p in client.ingest("ingest-bench", sources, timeout=1800):
        chunks += p.chunks
        failed += p.status == p.FAILED
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    unchanged = [p.status async for p in client.ingest("ingest-bench", sources, timeout=600)]
    again = time.perf_counter() - started
    return {
        "documents": len(sources),
        "failed": failed,
        "chunks": chunks,
        "seconds": seconds,
        "documents_per_s": len(sources) / seconds,
        "chunks_per_s": chunks / seconds,
        "unchanged_reingest_documents_per_s": len(unchanged) / again,
    }


async def search_latency(client: Any, uri: str, opts: Options) -> list[dict[str, Any]]:
    from .bulk import bulk_load, clustered_unit_vectors, random_centers
    from .db import ChunkStore
    from .settings import RetrievalSettings

    settings = RetrievalSettings()
    store = ChunkStore(
        min_size=1,
        max_size=2,
        pool_timeout=10,
        hnsw_m=settings.retrieval_hnsw_m,
        hnsw_ef_construction=settings.retrieval_hnsw_ef_construction,
    )
    await store.open(uri, dimension=384)
    rng = np.random.default_rng(5)
    centers = random_centers(max(opts.sizes) // 100, 384, rng)
    rows: list[dict[str, Any]] = []
    loaded = 0
    corpus = np.empty((0, 384), dtype=np.float32)
    try:
        for size in sorted(opts.sizes):
            extra = clustered_unit_vectors(size - loaded, 384, rng, centers)
            started = time.perf_counter()
            await bulk_load(uri, store, "bench", "search", extra, first_id=loaded)
            load_seconds = time.perf_counter() - started
            corpus, loaded = np.vstack([corpus, extra]), size
            probes = clustered_unit_vectors(opts.queries, 384, rng, centers)
            store_ms, recalls = [], []
            for probe in probes:
                t0 = time.perf_counter()
                hits = await store.search(
                    "bench", "search", probe, k=10, ef_search=settings.retrieval_hnsw_ef_search, timeout=10
                )
                store_ms.append((time.perf_counter() - t0) * 1000)
                exact = set(np.argpartition(-(corpus @ probe), 10)[:10].tolist())
                recalls.append(len(exact & {int(h.source_id) for h in hits}) / 10)
            # Through gRPC as a caller sees it: distinct query texts, each embedded, each a cache miss.
            end_to_end_ms, cached_ms = [], []
            for i, query in enumerate(sentences(opts.queries, seed=size, words=(6, 14))):
                t0 = time.perf_counter()
                reply = await client.search("search", f"{query} {i}", k=10)
                end_to_end_ms.append((time.perf_counter() - t0) * 1000)
                if len(reply.chunks) != 10 or reply.cached:
                    raise RuntimeError(f"search returned {len(reply.chunks)} chunks, cached={reply.cached}")
            for _ in range(opts.queries):
                t0 = time.perf_counter()
                reply = await client.search("search", "a repeated question", k=10)
                cached_ms.append((time.perf_counter() - t0) * 1000)
            rows.append(
                {
                    "chunks": size,
                    "load_and_index_s": load_seconds,
                    "store_p50_ms": percentile(store_ms, 50),
                    "store_p99_ms": percentile(store_ms, 99),
                    "grpc_p50_ms": percentile(end_to_end_ms, 50),
                    "grpc_p99_ms": percentile(end_to_end_ms, 99),
                    "grpc_cached_p50_ms": percentile(cached_ms, 50),
                    "grpc_cached_p99_ms": percentile(cached_ms, 99),
                    "recall_at_10": float(np.mean(recalls)),
                    "ef_search": settings.retrieval_hnsw_ef_search,
                }
            )
    finally:
        await store.close()
    return rows


async def _measure(opts: Options) -> dict[str, Any]:
    from .client import RetrievalClient
    from .evaluation import local_service

    # Other work on the machine skews every figure; the load average says how much there was.
    result: dict[str, Any] = {
        "options": opts.__dict__ | {"sizes": list(opts.sizes)},
        "cpus": os.cpu_count(),
        "load_average_before": os.getloadavg(),
    }
    result["embedding"] = await embedding_throughput(opts)
    work = Path(tempfile.mkdtemp(prefix="rtv-bench-", dir="/tmp"))
    try:
        async with local_service(work, "bench") as (target, uri, credentials):
            async with RetrievalClient(target, credentials=credentials, timeout=120) as client:
                # Search first, on a table of synthetic vectors only: real-text rows in the same
                # index would sit nearest to every text query and measure the fallback path instead.
                result["search"] = await search_latency(client, uri, opts)
                result["ingest"] = await ingest_throughput(client, opts)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["load_average_after"] = os.getloadavg()
    result["lines"] = report_lines(result)
    return result


def measure(opts: Options | None = None) -> dict[str, Any]:
    """Runs every measurement; blocking, takes both cores for a few minutes at the default sizes."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return asyncio.run(_measure(opts or Options()))


def report_lines(r: dict[str, Any]) -> list[str]:
    e, i = r["embedding"], r["ingest"]
    lines = [
        f"Machine: {r['cpus']} cores; 1-minute load average {r['load_average_before'][0]:.1f} before, "
        f"{r['load_average_after'][0]:.1f} after.",
        "",
        f"Embedding, all-MiniLM-L6-v2 on CPU (torch on {e['torch_threads']} threads), "
        f"{e['texts']} texts per run, median of three alternating runs:",
        "",
        "| texts | one per model call, texts/s | batches of "
        + str(e["batch_size"])
        + ", texts/s | batched / one |",
        "|---|---:|---:|---:|",
        *(
            f"| {kind} ({k['words'][0]}-{k['words'][1]} words) | {k['single_per_s']:.1f} "
            f"| {k['batched_per_s']:.1f} | **{k['speedup']:.1f}x** |"
            for kind, k in e["kinds"].items()
        ),
        "",
        f"{e['concurrent_callers']} concurrent callers, one query-sized text each, through the "
        f"micro-batching queue: {e['micro_batched_per_s']:.1f} texts/s (median of three runs), "
        f"{e['micro_batches']:.0f} model calls per run.",
        "",
        f"Ingest through IngestStream (gRPC, chunking + embedding + COPY, one transaction per document, "
        f"into the table holding the search corpus): "
        f"{i['documents']} documents, {i['chunks']} chunks in {i['seconds']:.1f} s = "
        f"**{i['documents_per_s']:.1f} documents/s, {i['chunks_per_s']:.1f} chunks/s**; "
        f"re-ingesting them unchanged: {i['unchanged_reingest_documents_per_s']:.0f} documents/s.",
        "",
        "Search, k=10, synthetic clustered 384-d chunks loaded with binary COPY "
        "(index built after the load):",
        "",
        "| chunks | COPY + index | store p50 / p99 ms | gRPC Search p50 / p99 ms (embeds the query) "
        "| cached p50 / p99 ms | recall@10 | ef_search |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in r["search"]:
        lines.append(
            f"| {s['chunks']:,} | {s['load_and_index_s']:.1f} s "
            f"| {s['store_p50_ms']:.2f} / {s['store_p99_ms']:.2f} "
            f"| {s['grpc_p50_ms']:.2f} / {s['grpc_p99_ms']:.2f} | {s['grpc_cached_p50_ms']:.2f} / "
            f"{s['grpc_cached_p99_ms']:.2f} | {s['recall_at_10']:.3f} | {s['ef_search']} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m retrieval_service.benchmark", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", type=Path, default=Path(".run/retrieval-benchmark.json"))
    p.add_argument(
        "--sizes", default="", help="comma-separated chunk counts (default 10000,100000; 2000 with --quick)"
    )
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = p.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else None
    if args.quick:
        opts = Options(
            sizes=sizes or (2000,), queries=20, ingest_documents=10, embedding_texts=64, concurrency=8
        )
    else:
        opts = Options(sizes=sizes or Options.sizes, queries=args.queries)
    result = measure(opts)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    sys.stdout.write("\n".join(result["lines"]) + f"\n\nwritten to {args.out}\n")


if __name__ == "__main__":
    main()
