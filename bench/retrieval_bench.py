"""Vector search latency and recall@10 at 10k and 100k chunks, through the retrieval service's ChunkStore.

The store, its schema and its HNSW index are the service's own (retrieval_service.db); only the data is
synthetic: clustered unit vectors, since embedding 100k texts on 2 cores would take most of the run.
Rows are bulk-loaded with COPY and the index built afterwards, the way a large import would be done.
Runs in its own process on an embedded PostgreSQL under .run/bench; `run()` starts it.
"""

import asyncio
import subprocess
import sys
import time

import numpy as np
import orjson

from .config import BenchSettings
from .processes import PYTHON, ROOT
from .stats import pct

DIMENSION = 384
K = 10
TENANT, COLLECTION = "bench", "bench"
# Tight topics: most of a query's true neighbours share its cluster.
SPREAD = 0.35


async def _measure(sizes: list[int], queries: int, data_dir: str) -> dict:
    import psycopg
    from llmsuite_common.embedded_postgres import EmbeddedPostgres
    from retrieval_service.bulk import bulk_load, clustered_unit_vectors, random_centers
    from retrieval_service.db import ChunkStore
    from retrieval_service.settings import RetrievalSettings

    settings = RetrievalSettings()
    postgres = EmbeddedPostgres(data_dir)
    uri = await asyncio.to_thread(postgres.start)
    rows = []
    try:
        async with await psycopg.AsyncConnection.connect(uri, autocommit=True) as conn:
            await conn.execute("DROP TABLE IF EXISTS retrieval_chunks")
        store = ChunkStore(
            min_size=1,
            max_size=2,
            pool_timeout=settings.retrieval_pool_timeout_seconds,
            hnsw_m=settings.retrieval_hnsw_m,
            hnsw_ef_construction=settings.retrieval_hnsw_ef_construction,
        )
        await store.open(uri, dimension=DIMENSION)
        rng = np.random.default_rng(11)
        centers = random_centers(max(sizes) // 100, DIMENSION, rng)
        data = np.empty((0, DIMENSION), dtype=np.float32)
        for size in sorted(sizes):
            extra = clustered_unit_vectors(size - len(data), DIMENSION, rng, centers, spread=SPREAD)
            started = time.perf_counter()
            # COPY, then the service's own DDL rebuilds its HNSW index, then ANALYZE.
            await bulk_load(uri, store, TENANT, COLLECTION, extra, first_id=len(data))
            data = np.vstack([data, extra])
            build_s = time.perf_counter() - started
            probes = clustered_unit_vectors(queries, DIMENSION, rng, centers, spread=SPREAD)
            latencies, recalls = [], []
            for probe in probes:
                t0 = time.perf_counter()
                hits = await store.search(
                    TENANT, COLLECTION, probe, k=K, ef_search=settings.retrieval_hnsw_ef_search, timeout=10.0
                )
                latencies.append((time.perf_counter() - t0) * 1000)
                exact = set(np.argpartition(-(data @ probe), K)[:K].tolist())
                recalls.append(len(exact & {int(h.source_id) for h in hits}) / K)
            rows.append(
                {
                    "chunks": size,
                    "load_and_index_s": build_s,
                    "p50_ms": pct(latencies, 50),
                    "p99_ms": pct(latencies, 99),
                    "recall_at_10": float(np.mean(recalls)),
                    "ef_search": settings.retrieval_hnsw_ef_search,
                }
            )
        await store.close()
    finally:
        await asyncio.to_thread(postgres.release)
    return {"rows": rows, "queries": queries}


def run(cfg: BenchSettings) -> dict:
    data_dir = str(cfg.work_dir / "pgserver")
    argv = [str(PYTHON), "-m", "bench.retrieval_bench", orjson.dumps(cfg.retrieval_sizes).decode()]
    argv += [str(cfg.retrieval_queries), data_dir]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=900, check=False)
    if done.returncode != 0:
        reason = (done.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        return {"error": reason, "lines": [f"Not measured: {reason}"]}
    r = orjson.loads(done.stdout)
    r["lines"] = [
        f"ChunkStore.search (one pooled connection, k={K}, the service's HNSW settings) on clustered synthetic "
        f"384-d unit vectors; {r['queries']} queries per size; recall against exact search in numpy. "
        "Query embedding time is not included (see the embedding section for one text per call).",
        "",
        "| chunks | load + index build | p50 ms | p99 ms | recall@10 | ef_search |",
        "|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {x['chunks']:,} | {x['load_and_index_s']:.1f} s | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} | "
            f"{x['recall_at_10']:.3f} | {x['ef_search']} |"
            for x in r["rows"]
        ),
    ]
    return r


def main() -> None:
    sizes, queries, data_dir = orjson.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    sys.stdout.buffer.write(orjson.dumps(asyncio.run(_measure(sizes, queries, data_dir))))


if __name__ == "__main__":
    main()
