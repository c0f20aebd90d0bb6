"""Recall@10 of the service's HNSW index (its own DDL and search settings) against exact search.

The corpus is 20k synthetic 384-d vectors clustered like sentence embeddings, bulk-loaded
with binary COPY into a schema of its own, so it neither slows nor disturbs the other tests.
"""

from collections.abc import AsyncIterator

import numpy as np
import psycopg
import pytest
from retrieval_service.bulk import bulk_load, clustered_unit_vectors, random_centers, with_options
from retrieval_service.db import ChunkStore
from retrieval_service.settings import RetrievalSettings

SCHEMA, CHUNKS, QUERIES, K, DIM = "recall_check", 20_000, 100, 10, 384


@pytest.fixture(scope="module")
async def recall_store(database_url: str) -> AsyncIterator[tuple[ChunkStore, str]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await conn.execute(f"CREATE SCHEMA {SCHEMA}")
    # pgvector's types live in public; the tables land in the first schema of the path.
    conninfo = with_options(database_url, f"-c search_path={SCHEMA},public")
    defaults = RetrievalSettings()
    store = ChunkStore(
        min_size=1,
        max_size=2,
        pool_timeout=5,
        hnsw_m=defaults.retrieval_hnsw_m,
        hnsw_ef_construction=defaults.retrieval_hnsw_ef_construction,
    )
    await store.open(conninfo, dimension=DIM)
    try:
        yield store, conninfo
    finally:
        await store.close()
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")


async def test_hnsw_recall_at_10_against_exact_search(recall_store: tuple[ChunkStore, str]):
    store, conninfo = recall_store
    rng = np.random.default_rng(20)
    centers = random_centers(CHUNKS // 100, DIM, rng)
    corpus = clustered_unit_vectors(CHUNKS, DIM, rng, centers)
    await bulk_load(conninfo, store, "recall", "corpus", corpus)

    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        counted = await (await conn.execute("SELECT count(*) FROM retrieval_chunks")).fetchone()
        plan = await (
            await conn.execute(
                "EXPLAIN SELECT id FROM retrieval_chunks WHERE tenant = 'recall' AND collection = 'corpus' "
                "ORDER BY embedding <=> %s::vector LIMIT 10",
                (str(corpus[0].tolist()),),
            )
        ).fetchall()
    assert counted[0] == CHUNKS
    assert "retrieval_chunks_embedding_hnsw" in "\n".join(r[0] for r in plan)

    ef_search = RetrievalSettings().retrieval_hnsw_ef_search
    recalls = []
    for probe in clustered_unit_vectors(QUERIES, DIM, rng, centers):
        hits = await store.search("recall", "corpus", probe, k=K, ef_search=ef_search, timeout=10)
        assert len(hits) == K
        exact = set(np.argpartition(-(corpus @ probe), K)[:K].tolist())
        recalls.append(len(exact & {int(h.source_id) for h in hits}) / K)
    recall = float(np.mean(recalls))
    assert recall >= 0.95, f"recall@10 {recall:.3f} with ef_search={ef_search}"
