"""Search keeps answering while a large ingest runs: the micro-batcher interleaves them.

The model is a stand-in that takes a fixed time per call (the real one would make the test
take minutes on two cores); the store is the real embedded PostgreSQL. Bounds are counted in
model calls, not wall time, so a slow machine does not change the outcome.
"""

import asyncio
import hashlib
from collections.abc import AsyncIterator

import numpy as np
import pytest
from retrieval_service.batching import MicroBatcher
from retrieval_service.db import ChunkStore
from retrieval_service.retriever import Retriever
from retrieval_service.validation import DocumentInput

DIM, BATCH, CHUNKS = 384, 32, 2000


class TimedModel:
    """Deterministic unit vectors per text; each call takes `seconds` of the event loop's time."""

    name, dimension, max_tokens = "timed", DIM, 256

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0
        self.called = asyncio.Event()

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def embed(self, texts: list[str], *, deadline: float | None = None) -> np.ndarray:
        self.calls += 1
        self.called.set()
        await asyncio.sleep(self.seconds)
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
            v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
            rows.append(v / np.linalg.norm(v))
        return np.vstack(rows)

    async def close(self) -> None:
        pass


class Watching:
    """The batcher as the retriever sees it, counting the model calls each one-text request
    (a search's query) waited through, its own included."""

    def __init__(self, batcher: MicroBatcher, model: TimedModel) -> None:
        self._batcher, self._model = batcher, model
        self.name, self.dimension, self.max_tokens = model.name, model.dimension, model.max_tokens
        self.waited: list[int] = []

    def count_tokens(self, text: str) -> int:
        return self._model.count_tokens(text)

    async def embed(self, texts: list[str], *, deadline: float | None = None) -> np.ndarray:
        before = self._model.calls
        rows = await self._batcher.embed(texts, deadline=deadline)
        if len(texts) == 1:
            self.waited.append(self._model.calls - before)
        return rows

    async def close(self) -> None:
        await self._batcher.close()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[ChunkStore]:
    chunk_store = ChunkStore(min_size=1, max_size=4, pool_timeout=5, hnsw_m=16, hnsw_ef_construction=64)
    await chunk_store.open(database_url, dimension=DIM)
    yield chunk_store
    await chunk_store.close()


async def test_searches_complete_while_a_2000_chunk_ingest_runs(store: ChunkStore):
    model = TimedModel(seconds=0.01)
    batcher = MicroBatcher(model, batch_size=BATCH, max_wait=0, max_queued=256)
    watching = Watching(batcher, model)
    retriever = Retriever(
        store,
        watching,
        chunk_tokens=64,
        overlap_tokens=0,
        max_chunks_per_request=4096,
        ef_search=40,
    )
    tenant, collection = "during-ingest", "big"
    seeds = [DocumentInput(f"seed-{i}", f"a first small document number {i}", {}) for i in range(5)]
    await retriever.ingest(tenant, collection, seeds, deadline=_in(60))
    model.calls = 0
    model.called.clear()
    watching.waited.clear()
    # One sentence per document, one chunk per sentence: 2,000 chunks in one request.
    documents = [
        DocumentInput(f"doc-{i}", f"passage {i} about invoices, budgets and region {i % 17}", {})
        for i in range(CHUNKS)
    ]
    ingest = asyncio.ensure_future(retriever.ingest(tenant, collection, documents, deadline=_in(300)))
    answered = 0
    try:
        await model.called.wait()  # the ingest is embedding
        embedding_done = CHUNKS // BATCH
        while not ingest.done() and model.calls < embedding_done:
            hits = await retriever.search(
                tenant, collection, f"budget question {answered}", 3, deadline=_in(30)
            )
            answered += 1
            assert len(hits) == 3
        result = await ingest
    finally:
        await batcher.close()
    assert result.chunks == CHUNKS
    # The ingest needs 63 model calls of up to 32 texts; searches kept being answered throughout,
    # each query waiting through at most the ingest piece already running and its own call.
    assert answered >= 20, answered
    assert max(watching.waited) <= 2, watching.waited
    assert model.calls <= CHUNKS // BATCH + 1 + answered


def _in(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds
