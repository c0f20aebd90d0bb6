import asyncio

import numpy as np
import pytest
from llmsuite_common.errors import DeadlineExceeded, ResourceExhausted
from retrieval_service.batching import MicroBatcher
from retrieval_service.embedder import Embedder


class Counting:
    """The real embedder, recording the size of every model call."""

    def __init__(self, model: Embedder) -> None:
        self._model = model
        self.calls: list[int] = []
        self.name, self.dimension, self.max_tokens = model.name, model.dimension, model.max_tokens

    def count_tokens(self, text: str) -> int:
        return self._model.count_tokens(text)

    async def embed(self, texts: list[str], *, deadline: float | None = None) -> np.ndarray:
        self.calls.append(len(texts))
        return await self._model.embed(texts, deadline=deadline)

    async def close(self) -> None:
        pass


async def test_concurrent_requests_share_model_calls_and_get_their_own_rows(embedder: Embedder):
    model = Counting(embedder)
    batcher = MicroBatcher(model, batch_size=16, max_wait=0.05, max_queued=64)
    texts = [f"question number {i} about the quarterly budget" for i in range(24)]
    try:
        results = await asyncio.gather(*(batcher.embed([t]) for t in texts))
    finally:
        await batcher.close()
    assert sum(model.calls) == 24 and len(model.calls) <= 3 and max(model.calls) == 16
    expected = await embedder.embed(texts)
    for row, want in zip(results, expected, strict=True):
        np.testing.assert_allclose(row[0], want, atol=1e-5)


async def test_a_large_request_goes_in_pieces_that_others_can_join(embedder: Embedder):
    model = Counting(embedder)
    batcher = MicroBatcher(model, batch_size=8, max_wait=0.01, max_queued=64)
    try:
        big = asyncio.ensure_future(batcher.embed([f"passage {i}" for i in range(20)]))
        await asyncio.sleep(0)
        small = await batcher.embed(["a query that arrives meanwhile"])
        rows = await big
    finally:
        await batcher.close()
    assert rows.shape == (20, 384) and small.shape == (1, 384)
    assert max(model.calls) <= 9  # one piece of the big request plus the query, never all 21


async def test_expired_and_overflowing_requests_fail_cleanly(embedder: Embedder):
    batcher = MicroBatcher(Counting(embedder), batch_size=4, max_wait=0, max_queued=1)
    loop = asyncio.get_running_loop()
    try:
        with pytest.raises(DeadlineExceeded):
            await batcher.embed(["late"], deadline=loop.time() - 1)
        first = asyncio.ensure_future(batcher.embed(["one"]))
        second = asyncio.ensure_future(batcher.embed(["two"]))
        third = asyncio.ensure_future(batcher.embed(["three"]))
        done = await asyncio.gather(first, second, third, return_exceptions=True)
    finally:
        await batcher.close()
    assert any(isinstance(r, ResourceExhausted) for r in done)
    assert any(isinstance(r, np.ndarray) for r in done)
