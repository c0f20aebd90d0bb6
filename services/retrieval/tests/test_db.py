"""The vector store against the real embedded PostgreSQL, with vectors made up for the purpose."""

import asyncio
import hashlib
from collections.abc import AsyncIterator

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector_async
from retrieval_service.db import TABLE, ChunkStore, NewChunk, NewDocument, nearest_statement

DIM = 384


@pytest.fixture(scope="module")
async def store(database_url: str) -> AsyncIterator[ChunkStore]:
    chunk_store = ChunkStore(min_size=1, max_size=4, pool_timeout=5, hnsw_m=16, hnsw_ef_construction=64)
    await chunk_store.open(
        database_url, dimension=DIM
    )  # the schema exists already: creating it is idempotent
    yield chunk_store
    await chunk_store.close()


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def documents(prefix: str, vectors: np.ndarray) -> list[NewDocument]:
    return [
        NewDocument(
            f"{prefix}{i}",
            {"n": str(i)},
            [NewChunk(0, f"{prefix} text {i}", hashlib.sha256(v.tobytes()).digest(), v)],
        )
        for i, v in enumerate(vectors)
    ]


async def test_a_small_collection_beside_a_large_one_still_gets_k_results(
    store: ChunkStore, database_url: str
):
    rng = np.random.default_rng(7)
    await store.replace_documents("db-big", "c", documents("big", unit_vectors(rng, 600)), timeout=60)
    small = unit_vectors(rng, 150)  # enough that the planner prefers the HNSW index over a sort
    await store.replace_documents("db-small", "c", documents("small", small), timeout=10)
    query = unit_vectors(rng, 1)[0]

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await register_vector_async(conn)
        await conn.execute(f"ANALYZE {TABLE}")
        plan = await (
            await conn.execute(
                f"EXPLAIN SELECT id FROM {TABLE} WHERE tenant = %s AND collection = %s "
                "ORDER BY embedding <=> %s LIMIT 10",
                ("db-small", "c", query),
            )
        ).fetchall()
    # The approximate pass really is an HNSW scan filtered afterwards: the case being tested.
    assert "embedding_hnsw" in "\n".join(r[0] for r in plan)

    hits = await store.search("db-small", "c", query, k=10, ef_search=10, timeout=10)
    expected = np.argsort(-(small @ query))[:10]
    assert [h.source_id for h in hits] == [f"small{i}" for i in expected]
    assert [round(h.score, 4) for h in hits] == [round(float(small[i] @ query), 4) for i in expected]
    assert hits[0].metadata == {"n": str(expected[0])}

    # Again and again: psycopg prepares a statement after five runs and PostgreSQL may then
    # switch to a generic plan, which must not turn the exact fallback back into an index scan.
    for probe in unit_vectors(rng, 15):
        hits = await store.search("db-small", "c", probe, k=10, ef_search=10, timeout=10)
        assert [h.source_id for h in hits] == [f"small{i}" for i in np.argsort(-(small @ probe))[:10]]


async def test_a_search_with_version_reads_it_in_the_same_statement(store: ChunkStore, database_url: str):
    rng = np.random.default_rng(17)
    vectors = unit_vectors(rng, 150)
    await store.replace_documents("db-ver", "c", documents("v", vectors[:140]), timeout=30)
    query = unit_vectors(rng, 1)[0]
    before = await store.collection_version("db-ver", "c", timeout=10)
    hits = await store.search("db-ver", "c", query, k=5, ef_search=40, timeout=10, with_version=True)
    assert hits.version == before != ""
    plain = await store.search("db-ver", "c", query, k=5, ef_search=40, timeout=10)
    assert hits == plain and plain.version is None

    await store.replace_documents("db-ver", "c", documents("w", vectors[140:]), timeout=30)
    after = await store.collection_version("db-ver", "c", timeout=10)
    assert after != before
    assert (
        await store.search("db-ver", "c", query, k=5, ef_search=40, timeout=10, with_version=True)
    ).version == after
    # No row to carry it (a collection that does not exist): read on its own, the same "".
    missing = await store.search("db-ver", "none", query, k=5, ef_search=40, timeout=10, with_version=True)
    assert missing == [] and missing.version == ""

    # The version columns leave the scan an HNSW index scan.
    params = {"q": query, "tenant": "db-ver", "collection": "c", "k": 5, "filter": None}
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await register_vector_async(conn)
        await conn.execute(f"ANALYZE {TABLE}")
        statement = nearest_statement(params, exact=False, with_version=True)
        plan = await (await conn.execute(f"EXPLAIN {statement}", params)).fetchall()  # type: ignore[arg-type]
    assert "embedding_hnsw" in "\n".join(r[0] for r in plan)


async def test_concurrent_ingests_of_one_document_do_not_collide(store: ChunkStore):
    rng = np.random.default_rng(11)

    async def ingest(version: int) -> None:
        vectors = unit_vectors(rng, 3)
        chunks = [NewChunk(o, f"v{version} part {o}", bytes([version, o]), vectors[o]) for o in range(3)]
        await store.replace_documents("db-race", "c", [NewDocument("doc", {}, chunks)], timeout=30)

    await asyncio.gather(*(ingest(v) for v in range(6)))
    hits = await store.search("db-race", "c", unit_vectors(rng, 1)[0], k=20, ef_search=40, timeout=10)
    assert sorted(h.ordinal for h in hits) == [0, 1, 2]
    assert len({h.text.split()[0] for h in hits}) == 1  # all three chunks from one and the same ingest


async def test_known_embeddings_are_scoped_to_tenant_and_collection(store: ChunkStore):
    rng = np.random.default_rng(3)
    vector = unit_vectors(rng, 1)[0]
    digest = hashlib.sha256(b"shared text").digest()
    await store.replace_documents(
        "db-t1", "c", [NewDocument("d", {}, [NewChunk(0, "shared text", digest, vector)])], timeout=10
    )
    found = await store.known_embeddings("db-t1", "c", ["d"], [digest], timeout=10)
    np.testing.assert_allclose(found[digest], vector, atol=1e-6)
    assert await store.known_embeddings("db-t2", "c", ["d"], [digest], timeout=10) == {}
    assert await store.known_embeddings("db-t1", "other", ["d"], [digest], timeout=10) == {}


async def test_a_spent_budget_is_a_deadline_error(store: ChunkStore):
    from llmsuite_common.errors import DeadlineExceeded

    with pytest.raises(DeadlineExceeded):
        await store.search("db-t1", "c", np.ones(DIM, dtype=np.float32), k=1, ef_search=40, timeout=0)


def test_a_connection_keeps_a_statement_timeout_that_serves_the_deadline():
    from retrieval_service.db import _holds

    # Deadlines differ by milliseconds from call to call: no setting is sent for that.
    assert _holds("statement_timeout", "31s", "30s") and _holds("statement_timeout", "30s", "30s")
    # Shorter than the deadline would cut a query the caller still waits for; far longer is reset.
    assert not _holds("statement_timeout", "29s", "30s") and not _holds("statement_timeout", "61s", "30s")
    assert _holds("hnsw.ef_search", "40", "40") and not _holds("hnsw.ef_search", "1000", "40")
    assert not _holds("hnsw.ef_search", None, "40")
