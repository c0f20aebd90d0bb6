"""How many statements a Search costs: a query text not seen lately reads its hits and the
collection's version in one statement; a repeated one reads the version alone and is answered
from the cache. Counted by wrapping the store's methods, against the real database and model."""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import psycopg
import pytest
from retrieval_service.cache import RetrievalCache
from retrieval_service.db import ChunkStore
from retrieval_service.embedder import Embedder
from retrieval_service.retriever import Retriever, SearchQuery
from retrieval_service.validation import DocumentInput


@pytest.fixture(scope="module")
async def store(database_url: str, embedder: Embedder) -> AsyncIterator[ChunkStore]:
    chunk_store = ChunkStore(min_size=1, max_size=2, pool_timeout=5, hnsw_m=16, hnsw_ef_construction=64)
    await chunk_store.open(database_url, dimension=embedder.dimension)
    yield chunk_store
    await chunk_store.close()


def counting(store: ChunkStore, calls: Counter[str]) -> None:
    for name in ("collection_version", "search"):
        method = getattr(store, name)

        async def counted(*args, _method=method, _name=name, **kwargs):
            calls[_name + ("+version" if kwargs.get("with_version") else "")] += 1
            return await _method(*args, **kwargs)

        setattr(store, name, counted)


def query(text: str) -> SearchQuery:
    return SearchQuery(text, None, 3, {}, 0.0)


async def test_a_new_query_is_one_statement_and_a_repeated_one_is_answered_from_the_cache(
    store: ChunkStore, embedder: Embedder
):
    cache = RetrievalCache(ttl_seconds=600, max_embeddings=100, max_results=100, metrics=None)
    retriever = Retriever(
        store,
        embedder,
        chunk_tokens=120,
        overlap_tokens=20,
        max_chunks_per_request=100,
        ef_search=40,
        cache=cache,
    )
    deadline = asyncio.get_running_loop().time() + 30
    docs = [
        DocumentInput(f"d{i}", f"Document {i} is about topic {i} and nothing else.", {}) for i in range(8)
    ]
    await retriever.ingest("stmt", "c", docs, deadline=deadline)
    calls: Counter[str] = Counter()
    counting(store, calls)

    first = await retriever.find("stmt", "c", query("what is topic 3 about"), deadline=deadline)
    assert calls == {"search+version": 1} and not first.cached and first.hits
    assert first.version == await store.collection_version("stmt", "c", timeout=10)
    calls.clear()

    again = await retriever.find("stmt", "c", query("what is topic 3 about"), deadline=deadline)
    assert calls == {"collection_version": 1} and again.cached and again.hits == first.hits
    calls.clear()

    # A write moves the version: the repeated query is searched again, with no model call.
    await retriever.ingest(
        "stmt", "c", [DocumentInput("new", "Topic 3 has a new document.", {})], deadline=deadline
    )
    after = await retriever.find("stmt", "c", query("what is topic 3 about"), deadline=deadline)
    assert calls == {"collection_version": 1, "search": 1} and not after.cached
    assert after.version != first.version and "new" in {h.source_id for h in after.hits}


async def test_vectors_stay_in_the_row(store: ChunkStore, database_url: str):
    """An exact scan reads each row's vector from the row itself, not from the TOAST table."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT attstorage FROM pg_attribute WHERE attrelid = 'retrieval_chunks'::regclass"
            " AND attname = 'embedding'"
        )
        assert await cursor.fetchone() == ("m",)
