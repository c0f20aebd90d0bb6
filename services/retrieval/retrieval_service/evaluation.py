"""Retrieval quality: recall@k and MRR on the labelled set in evaldata/, and HNSW recall against exact search.

    python -m retrieval_service.evaluation [--target HOST:PORT] [--out FILE.json]

With --target the credential is LLMSUITE_TOKEN, or LLMSUITE_API_KEY exchanged at LLMSUITE_GATEWAY_URL.

Without --target it starts the service in this process (embedded PostgreSQL in a scratch
directory, the packaged model) on a loopback port and talks to it over real gRPC.
"""

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .client import RetrievalClient, Source

DATASET = Path(__file__).with_name("evaldata") / "handbook.json"
KS = (1, 3, 5, 10)


@dataclass(frozen=True, slots=True)
class Scores:
    recall: dict[int, float]
    mrr: float
    queries: int


def score(rankings: Sequence[Sequence[str]], relevant: Sequence[set[str]], ks: Sequence[int] = KS) -> Scores:
    """recall@k: share of a query's relevant documents in its top k, averaged over queries.
    MRR: mean of 1 / rank of the first relevant document (0 when none was returned)."""
    recall = {
        k: float(
            np.mean([len(set(r[:k]) & rel) / len(rel) for r, rel in zip(rankings, relevant, strict=True)])
        )
        for k in ks
    }
    reciprocal = [
        next((1.0 / i for i, doc in enumerate(r, 1) if doc in rel), 0.0)
        for r, rel in zip(rankings, relevant, strict=True)
    ]
    return Scores(recall, float(np.mean(reciprocal)), len(rankings))


def documents_in_order(source_ids: Sequence[str]) -> list[str]:
    """A chunk ranking as a document ranking: each document at its best chunk's place."""
    return list(dict.fromkeys(source_ids))


async def labelled(
    client: RetrievalClient, collection: str, *, hybrid_weight: float = 0.0, concurrency: int = 1
) -> Scores:
    """Ingests the labelled corpus (a no-op when it is already there) and scores every question,
    asking `concurrency` of them at a time (so the service batches their embeddings)."""
    data = json.loads(DATASET.read_text())
    sources = [
        Source(id=doc_id, text=text, content_type="text/markdown")
        for doc_id, text in data["documents"].items()
    ]
    failed = [p.source_id async for p in client.ingest(collection, sources) if p.status == p.FAILED]
    if failed:
        raise RuntimeError(f"the evaluation corpus did not ingest: {failed}")
    limit = asyncio.Semaphore(concurrency)

    async def ranking(query: str) -> list[str]:
        async with limit:
            reply = await client.search(collection, query, k=20, hybrid_weight=hybrid_weight)
        return documents_in_order([c.source_id for c in reply.chunks])

    rankings = await asyncio.gather(*(ranking(item["query"]) for item in data["queries"]))
    return score(rankings, [set(item["relevant"]) for item in data["queries"]])


async def hnsw_against_exact(
    conninfo: str,
    *,
    chunks: int,
    queries: int,
    ef_searches: Sequence[int],
    m: int,
    ef_construction: int,
    spread: float = 1.0,
) -> dict[str, Any]:
    """recall@10 of the HNSW index against exact search on clustered synthetic vectors, per ef_search."""
    import psycopg

    from .bulk import bulk_load, clustered_unit_vectors, random_centers, with_options
    from .db import ChunkStore

    schema, dim, k = "evaluation_hnsw", 384, 10
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.execute(f"CREATE SCHEMA {schema}")
    scoped = with_options(conninfo, f"-c search_path={schema},public")
    store = ChunkStore(
        min_size=1, max_size=2, pool_timeout=10, hnsw_m=m, hnsw_ef_construction=ef_construction
    )
    try:
        await store.open(scoped, dimension=dim)
        rng = np.random.default_rng(42)
        centers = random_centers(max(1, chunks // 100), dim, rng)
        corpus = clustered_unit_vectors(chunks, dim, rng, centers, spread)
        started = time.perf_counter()
        await bulk_load(scoped, store, "eval", "hnsw", corpus)
        load_seconds = time.perf_counter() - started
        probes = clustered_unit_vectors(queries, dim, rng, centers, spread)
        exact = [set(np.argpartition(-(corpus @ p), k)[:k].tolist()) for p in probes]
        rows = []
        for ef in ef_searches:
            found = [
                {
                    int(h.source_id)
                    for h in await store.search("eval", "hnsw", p, k=k, ef_search=ef, timeout=30)
                }
                for p in probes
            ]
            recall = float(np.mean([len(f & e) / k for f, e in zip(found, exact, strict=True)]))
            rows.append({"ef_search": ef, "recall_at_10": recall})
    finally:
        await store.close()
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    return {
        "chunks": chunks,
        "queries": queries,
        "m": m,
        "ef_construction": ef_construction,
        "load_and_index_seconds": load_seconds,
        "rows": rows,
    }


@contextlib.asynccontextmanager
async def local_service(work_dir: Path, org_id: str = "evaluation") -> AsyncIterator[tuple[str, str, Any]]:
    """The service in this process on a loopback port; yields its target, database URI and the
    credentials of an admin of `org_id`."""
    import grpc
    from llmsuite_common.embedded_postgres import EmbeddedPostgres
    from llmsuite_common.local_auth import LocalAuthority

    from .app import RetrievalApp
    from .settings import RetrievalSettings

    settings = RetrievalSettings(retrieval_pgserver_data_dir=str(work_dir / "pg"))
    app = RetrievalApp(settings)
    authority = LocalAuthority()
    server = grpc.aio.server(interceptors=authority.interceptors(app.audience))
    app.add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await app.start()
    postgres = None
    try:
        if settings.retrieval_database_url.get_secret_value():
            uri = settings.retrieval_database_url.get_secret_value()
        else:
            postgres = EmbeddedPostgres(settings.retrieval_pgserver_data_dir)
            uri = await asyncio.to_thread(postgres.start)
        yield f"127.0.0.1:{port}", uri, authority.credentials(org_id)
    finally:
        await server.stop(None)
        await app.stop()
        if postgres is not None:
            await asyncio.to_thread(postgres.release)


async def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from .settings import RetrievalSettings

    defaults = RetrievalSettings()
    ef_searches = sorted({10, 20, defaults.retrieval_hnsw_ef_search, 100})

    async def against(target: str, uri: str | None, credentials: Any) -> dict[str, Any]:
        async with RetrievalClient(target, credentials=credentials, timeout=120) as client:
            vector = await labelled(client, args.collection)
            hybrid = await labelled(client, args.collection, hybrid_weight=0.3)
        result: dict[str, Any] = {
            "dataset": DATASET.name,
            "vector": _as_json(vector),
            "hybrid_0.3": _as_json(hybrid),
        }
        if uri is not None and args.chunks:
            result["hnsw_vs_exact"] = await hnsw_against_exact(
                uri,
                chunks=args.chunks,
                queries=args.queries,
                ef_searches=ef_searches,
                m=defaults.retrieval_hnsw_m,
                ef_construction=defaults.retrieval_hnsw_ef_construction,
            )
            result["hnsw_vs_exact"]["configured_ef_search"] = defaults.retrieval_hnsw_ef_search
        return result

    if args.target:
        return await against(args.target, args.database_url or None, _target_credentials(args))
    work = Path(tempfile.mkdtemp(prefix="rtv-eval-", dir="/tmp"))
    try:
        async with local_service(work, args.org) as (target, uri, credentials):
            return await against(target, uri, credentials)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _as_json(s: Scores) -> dict[str, Any]:
    return {"recall": {str(k): v for k, v in s.recall.items()}, "mrr": s.mrr, "queries": s.queries}


def report(result: dict[str, Any]) -> str:
    lines = [
        f"Labelled set {result['dataset']}: {result['vector']['queries']} questions",
        "",
        "| mode | " + " | ".join(f"recall@{k}" for k in KS) + " | MRR |",
        "|---" * (len(KS) + 2) + "|",
    ]
    for mode in ("vector", "hybrid_0.3"):
        s = result[mode]
        lines.append(
            f"| {mode} | " + " | ".join(f"{s['recall'][str(k)]:.3f}" for k in KS) + f" | {s['mrr']:.3f} |"
        )
    if "hnsw_vs_exact" in result:
        h = result["hnsw_vs_exact"]
        lines += [
            "",
            f"HNSW (m={h['m']}, ef_construction={h['ef_construction']}) vs exact search, "
            f"{h['chunks']:,} synthetic 384-d chunks, {h['queries']} queries "
            f"(COPY + index build {h['load_and_index_seconds']:.1f} s):",
            "",
            "| ef_search | recall@10 |",
            "|---:|---:|",
        ]
        for row in h["rows"]:
            mark = " (configured)" if row["ef_search"] == h["configured_ef_search"] else ""
            lines.append(f"| {row['ef_search']}{mark} | {row['recall_at_10']:.3f} |")
    return "\n".join(lines)


def _target_credentials(args: argparse.Namespace) -> Any:
    from .credentials import GatewayTokens, StaticCredentials

    if os.environ.get("LLMSUITE_TOKEN"):
        return StaticCredentials(os.environ["LLMSUITE_TOKEN"])
    if not os.environ.get("LLMSUITE_API_KEY"):
        raise SystemExit("with --target: set LLMSUITE_TOKEN, or LLMSUITE_API_KEY (and LLMSUITE_GATEWAY_URL)")
    gateway = os.environ.get("LLMSUITE_GATEWAY_URL", "http://127.0.0.1:8080")
    return GatewayTokens(gateway, os.environ["LLMSUITE_API_KEY"])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m retrieval_service.evaluation", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--target", default="", help="a running retrieval service; default: start one in-process"
    )
    parser.add_argument("--database-url", default="", help="with --target: its database, for the HNSW check")
    parser.add_argument("--org", default="evaluation", help="organization of the in-process service's data")
    parser.add_argument("--collection", default="handbook-eval")
    parser.add_argument(
        "--chunks", type=int, default=20_000, help="synthetic chunks for HNSW vs exact; 0 skips"
    )
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    result = asyncio.run(evaluate(args))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    sys.stdout.write(report(result) + "\n")


if __name__ == "__main__":
    main()
