"""Vector search latency and recall@10 at 10k and 100k chunks, through the retrieval service's ChunkStore.

The store, its schema and its HNSW index are the service's own (retrieval_service.db); only the data is
synthetic: clustered unit vectors, since embedding 100k texts on 2 cores would take most of the run.
Rows are bulk-loaded with COPY and the index built afterwards, the way a large import would be done.
Runs in its own process on an embedded PostgreSQL under .run/bench; `run()` starts it.
"""

import asyncio
import os
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


def clustered(count: int, rng: np.random.Generator, centers: np.ndarray) -> np.ndarray:
    picks = centers[rng.integers(0, len(centers), count)]
    points = picks + rng.normal(0.0, 0.35 / np.sqrt(DIMENSION), (count, DIMENSION)).astype(np.float32)
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


async def _load(uri: str, vectors: np.ndarray, start: int) -> None:
    import psycopg
    from pgvector.psycopg import register_vector_async

    async with await psycopg.AsyncConnection.connect(uri, autocommit=True) as conn:
        await register_vector_async(conn)
        await conn.execute("DROP INDEX IF EXISTS retrieval_chunks_embedding_hnsw")
        async with conn.cursor() as cur:
            columns = "tenant, collection, source_id, ordinal, text, content_hash, embedding"
            async with cur.copy(f"COPY retrieval_chunks ({columns}) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["text", "text", "text", "int4", "text", "bytea", "vector"])
                for i, vector in enumerate(vectors, start):
                    await copy.write_row((TENANT, COLLECTION, str(i), 0, f"chunk {i}", i.to_bytes(8, "big"), vector))


async def _measure(sizes: list[int], queries: int, data_dir: str) -> dict:
    from retrieval_service.db import ChunkStore
    from llmsuite_common.embedded_postgres import EmbeddedPostgres
    from retrieval_service.settings import RetrievalSettings

    import psycopg

    settings = RetrievalSettings()
    postgres = EmbeddedPostgres(data_dir)
    uri = await asyncio.to_thread(postgres.start)
    rows = []
    try:
        async with await psycopg.AsyncConnection.connect(uri, autocommit=True) as conn:
            await conn.execute("DROP TABLE IF EXISTS retrieval_chunks")
            await conn.execute("ALTER SYSTEM SET maintenance_work_mem = '1GB'")
            await conn.execute("SELECT pg_reload_conf()")
        store = ChunkStore(
            min_size=1,
            max_size=2,
            pool_timeout=settings.retrieval_pool_timeout_seconds,
            hnsw_m=settings.retrieval_hnsw_m,
            hnsw_ef_construction=settings.retrieval_hnsw_ef_construction,
        )
        await store.open(uri, dimension=DIMENSION)
        rng = np.random.default_rng(11)
        centers = rng.normal(size=(max(sizes) // 100, DIMENSION)).astype(np.float32)
        centers /= np.linalg.norm(centers, axis=1, keepdims=True)
        data = np.empty((0, DIMENSION), dtype=np.float32)
        for size in sorted(sizes):
            extra = clustered(size - len(data), rng, centers)
            started = time.perf_counter()
            await _load(uri, extra, len(data))
            data = np.vstack([data, extra])
            # The service's own DDL recreates the HNSW index it declares.
            await store._create_schema(uri, DIMENSION)
            async with await psycopg.AsyncConnection.connect(uri, autocommit=True) as conn:
                # As after any bulk load: without statistics the planner guesses the table is tiny.
                await conn.execute("ANALYZE retrieval_chunks")
            build_s = time.perf_counter() - started
            probes = clustered(queries, rng, centers)
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
    env = {**os.environ, "PYTHONPATH": "libs/generated:libs/common:services/retrieval:."}
    data_dir = str(cfg.work_dir / "pgserver")
    argv = [str(PYTHON), "-m", "bench.retrieval_bench", orjson.dumps(cfg.retrieval_sizes).decode()]
    argv += [str(cfg.retrieval_queries), data_dir]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=900, check=False)
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
