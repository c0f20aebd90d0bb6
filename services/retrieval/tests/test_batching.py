import asyncio

import numpy as np
import pytest
from llmsuite_common.clock import ManualClock
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


class Gated:
    """A model that records each call's texts and the clock's time, and finishes a call only when
    the test opens its gate: the test decides what is queued while the model is busy."""

    name, dimension, max_tokens = "gated", 4, 256

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.calls: list[tuple[float, list[str]]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def embed(self, texts: list[str], *, deadline: float | None = None) -> np.ndarray:
        self.calls.append((self.clock(), list(texts)))
        await self.gate.wait()
        return np.ones((len(texts), self.dimension), dtype=np.float32)

    async def close(self) -> None:
        pass


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


@pytest.mark.parametrize("window", [0.0, 0.005])
async def test_a_lone_query_is_held_no_longer_than_the_window(window: float):
    clock = ManualClock()
    model = Gated(clock)
    batcher = MicroBatcher(
        model, batch_size=16, max_wait=window, max_queued=64, clock=clock, sleep=clock.sleep
    )
    try:
        for n in range(3):
            sent = clock()
            rows = await batcher.embed([f"lone query {n}"])
            assert rows.shape == (1, 4)
            assert len(model.calls) == n + 1
            called_at, texts = model.calls[-1]
            assert texts == [f"lone query {n}"]
            # The manual clock only moves when the batcher waits on it: by exactly its window.
            assert called_at - sent <= window
    finally:
        await batcher.close()


async def test_queries_arriving_while_the_model_is_busy_share_the_next_call():
    clock = ManualClock()
    model = Gated(clock)
    batcher = MicroBatcher(model, batch_size=16, max_wait=0, max_queued=64, clock=clock, sleep=clock.sleep)
    try:
        model.gate.clear()
        first = asyncio.ensure_future(batcher.embed(["the first query"]))
        await _settle()
        assert [len(t) for _, t in model.calls] == [1]  # sent at once, the model was idle
        others = [asyncio.ensure_future(batcher.embed([f"query {i}"])) for i in range(20)]
        await _settle()
        assert len(model.calls) == 1  # all twenty wait for the busy model
        model.gate.set()
        await asyncio.gather(first, *others)
    finally:
        await batcher.close()
    # 20 queued queries: one full batch of 16, then the remaining 4; no clock time passed.
    assert [len(t) for _, t in model.calls] == [1, 16, 4]
    assert {at for at, _ in model.calls} == {clock()}
    assert batcher.batches == 3


# Four queries fill a batch of 4 texts, and a batch of 16 texts that takes 4 searches at most.
@pytest.mark.parametrize(("batch_size", "query_batch_size"), [(4, None), (16, 4)])
async def test_a_window_fills_early_when_enough_queries_arrive(batch_size: int, query_batch_size: int | None):
    clock = ManualClock()
    model = Gated(clock)
    never = asyncio.Event()

    async def sleep_forever(seconds: float) -> None:
        await never.wait()

    batcher = MicroBatcher(
        model,
        batch_size=batch_size,
        max_wait=1.0,
        max_queued=64,
        query_batch_size=query_batch_size,
        clock=clock,
        sleep=sleep_forever,
    )
    try:
        waiting = [asyncio.ensure_future(batcher.embed(["q0"]))]
        await _settle()
        assert model.calls == []  # the idle model waits for company: the window never ends here
        waiting += [asyncio.ensure_future(batcher.embed([f"q{i}"])) for i in range(1, 4)]
        async with asyncio.timeout(5):
            await asyncio.gather(*waiting)
    finally:
        await batcher.close()
    assert [len(t) for _, t in model.calls] == [4]


async def test_searches_go_in_groups_of_the_search_batch_size_and_ingest_pieces_stay_whole():
    clock = ManualClock()
    model = Gated(clock)
    batcher = MicroBatcher(
        model, batch_size=16, max_wait=0, max_queued=64, query_batch_size=8, clock=clock, sleep=clock.sleep
    )
    try:
        model.gate.clear()
        first = asyncio.ensure_future(batcher.embed(["the first query"]))
        await _settle()
        queries = [asyncio.ensure_future(batcher.embed([f"query {i}"])) for i in range(20)]
        ingest = asyncio.ensure_future(batcher.embed([f"passage {i}" for i in range(16)]))
        await _settle()
        model.gate.set()
        await asyncio.gather(first, *queries, ingest)
    finally:
        await batcher.close()
    # The 20 queued queries in groups of 8 (the smallest requests first), then the ingest's piece
    # of 16 whole: the search batch size caps queries only.
    assert [len(t) for _, t in model.calls] == [1, 8, 8, 4, 16]
