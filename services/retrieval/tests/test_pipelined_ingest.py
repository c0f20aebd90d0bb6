"""An ingest that takes several embedding calls writes each part's rows while the next part embeds,
in one transaction (Retriever._embed_while_writing): what it stores is what one write after all
the embedding stores, the parts overlap, and a failure part-way stores nothing."""

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import psycopg
import pytest
from retrieval_service.db import TABLE, ChunkStore
from retrieval_service.embedder import Embedder
from retrieval_service.retriever import Retriever
from retrieval_service.validation import DocumentInput

PIECE = 8


class Recording:
    """The real model, with each call's start and end (or a scripted failure) on a shared log."""

    def __init__(self, model: Embedder, log: list[str], fail_call: int | None = None) -> None:
        self._model, self._log, self._fail_call = model, log, fail_call
        self.name, self.dimension, self.max_tokens = model.name, model.dimension, model.max_tokens
        self.calls = 0

    def count_tokens(self, text: str) -> int:
        return self._model.count_tokens(text)

    async def embed(self, texts: list[str], *, deadline: float | None = None) -> np.ndarray:
        self.calls += 1
        call = self.calls
        self._log.append(f"embed {call}")
        if call == self._fail_call:
            raise RuntimeError("the model failed part-way")
        rows = await self._model.embed(texts, deadline=deadline)
        self._log.append(f"embedded {call}")
        return rows

    async def close(self) -> None:
        pass


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[ChunkStore]:
    chunk_store = ChunkStore(min_size=1, max_size=4, pool_timeout=5, hnsw_m=16, hnsw_ef_construction=64)
    await chunk_store.open(database_url, dimension=384)
    yield chunk_store
    await chunk_store.close()


def _retriever(store: ChunkStore, model: Recording, piece: int) -> Retriever:
    return Retriever(
        store,
        model,
        chunk_tokens=64,
        overlap_tokens=0,
        max_chunks_per_request=1000,
        ef_search=40,
        embedding_piece=piece,
    )


def _documents(version: str) -> list[DocumentInput]:
    # A repeated sentence too: one embedding, stored in several documents.
    return [
        DocumentInput(f"doc-{i}", f"{version} note {i} on invoices for region {i % 5}.", {"n": str(i)})
        for i in range(30)
    ] + [
        DocumentInput("copy", "the same sentence twice.", {}),
        DocumentInput("copy-2", "the same sentence twice.", {}),
    ]


def _stored(database_url: str, tenant: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            f"SELECT source_id, ordinal, text, metadata, content_hash, embedding::text FROM {TABLE} "
            "WHERE tenant = %s ORDER BY source_id, ordinal",
            (tenant,),
        ).fetchall()
    return rows


def _in(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds


async def test_a_pipelined_ingest_stores_what_a_single_write_does(store, embedder, database_url):
    log: list[str] = []
    pipelined = Recording(embedder, log)
    result = await _retriever(store, pipelined, PIECE).ingest(
        "pipe-a", "c", _documents("v1"), deadline=_in(60)
    )
    assert pipelined.calls == 4  # 31 distinct texts in parts of 8
    single = Recording(embedder, [])
    other = await _retriever(store, single, 1000).ingest("pipe-b", "c", _documents("v1"), deadline=_in(60))
    assert single.calls == 1
    assert result == other and result.chunks == 32 and result.embedded == 31
    stored = _stored(database_url, "pipe-a")
    assert len(stored) == 32 and stored == _stored(database_url, "pipe-b")
    assert (await store.list_collections("pipe-a", timeout=10))[0].chunks == 32
    hits = await _retriever(store, single, 1000).search(
        "pipe-a", "c", "invoices for region 3", 3, deadline=_in(30)
    )
    assert len(hits) == 3


async def test_each_part_is_written_while_the_next_one_embeds(store, embedder, monkeypatch):
    log: list[str] = []
    from retrieval_service import db

    add = db.ChunkWriter.add

    async def logged_add(self, documents):
        documents = list(documents)
        log.append(f"write {sum(len(d.chunks) for d in documents)}")
        await add(self, documents)
        log.append("written")

    monkeypatch.setattr(db.ChunkWriter, "add", logged_add)
    model = Recording(embedder, log)
    await _retriever(store, model, PIECE).ingest("pipe-c", "c", _documents("v1"), deadline=_in(60))
    # The first write is of the chunks already embedded (none); then each part's rows (the part
    # with the repeated text has one row more than texts), each written while the next part embeds.
    writes = [i for i, e in enumerate(log) if e.startswith("write ")]
    sizes = [int(log[i].split()[1]) for i in writes]
    assert len(writes) == 5 and sizes[0] == 0 and sum(sizes) == 32
    for part in (1, 2, 3):  # part n's rows go in while part n + 1 embeds
        written = log.index("written", writes[part])
        assert log.index(f"embed {part + 1}") < written, log


async def test_a_failure_part_way_stores_nothing(store, embedder, database_url):
    model = Recording(embedder, [])
    await _retriever(store, model, PIECE).ingest("pipe-d", "c", _documents("v1"), deadline=_in(60))
    before = _stored(database_url, "pipe-d")
    version = await store.collection_version("pipe-d", "c", timeout=10)
    failing = Recording(embedder, [], fail_call=3)
    with pytest.raises(RuntimeError, match="part-way"):
        await _retriever(store, failing, PIECE).ingest("pipe-d", "c", _documents("v2"), deadline=_in(60))
    assert _stored(database_url, "pipe-d") == before
    assert await store.collection_version("pipe-d", "c", timeout=10) == version
    # The lock and the connection were given back: the next ingest goes through.
    again = await _retriever(store, Recording(embedder, []), PIECE).ingest(
        "pipe-d", "c", _documents("v2"), deadline=_in(60)
    )
    assert (again.embedded, again.unchanged) == (30, 2)
    assert all(r[2].startswith(("v2", "the same")) for r in _stored(database_url, "pipe-d"))
