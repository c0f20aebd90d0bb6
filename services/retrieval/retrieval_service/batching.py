"""A micro-batching queue in front of an embedder: concurrent callers share one model call.

A model call on a batch of 32 costs little more than on one text, so requests share calls.
A request that finds the model idle goes at once (`max_wait` 0, the default) or waits at most
`max_wait` for company; requests that arrive while the model is busy queue up and all go
together in the next call, so batches grow with the load without delaying a lone query. A
large request (an ingest) goes in `batch_size` pieces, one after the other, so searches
arriving meanwhile join the next batch rather than queue behind all of it: a batch takes the
smallest waiting requests first (searches before ingest pieces), and a request passed over once
goes first in the next batch, so an ingest is slowed by searches but never starved.
"""

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import numpy as np
from llmsuite_common.clock import Clock, Sleep, monotonic
from llmsuite_common.errors import DeadlineExceeded, ResourceExhausted

from .embedder import EmbeddingModel

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Request:
    texts: list[str]
    deadline: float | None
    passed_over: bool = False
    future: asyncio.Future[np.ndarray] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class MicroBatcher:
    def __init__(
        self,
        model: EmbeddingModel,
        *,
        batch_size: int,
        max_wait: float,
        max_queued: int,
        query_batch_size: int | None = None,
        clock: Clock = monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._model = model
        self._batch_size = batch_size
        self._query_batch_size = batch_size if query_batch_size is None else min(query_batch_size, batch_size)
        self._max_wait = max_wait
        self._clock, self._sleep = clock, sleep
        self._max_queued = max_queued
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        # Taken from the queue but left for a later batch (it was full).
        self._pending: list[_Request] = []
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0  # model calls made, for tests and benchmarks

    @property
    def name(self) -> str:
        return self._model.name

    @property
    def dimension(self) -> int:
        return self._model.dimension

    @property
    def max_tokens(self) -> int:
        return self._model.max_tokens

    def count_tokens(self, text: str) -> int:
        return self._model.count_tokens(text)

    async def embed(self, texts: list[str], *, deadline: float | None = None) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dimension), dtype=np.float32)
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="embedding-batcher")
        parts = []
        for start in range(0, len(texts), self._batch_size):
            request = _Request(texts[start : start + self._batch_size], deadline)
            if self._queue.qsize() + len(self._pending) >= self._max_queued:
                raise ResourceExhausted("too many embedding requests are waiting; retry shortly")
            self._queue.put_nowait(request)
            parts.append(await request.future)
        return np.vstack(parts)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._pending.append(await self._queue.get())
            # What queued while the model was busy goes now, together, without waiting more.
            self._take_queued()
            if self._max_wait > 0 and not self._batch_is_full():
                await self._wait_for_company()
            await self._serve(self._next_batch(), loop.time())

    def _take_queued(self) -> None:
        while not self._queue.empty():
            self._pending.append(self._queue.get_nowait())

    def _batch_is_full(self) -> bool:
        """Whether what waits already fills a batch: `batch_size` texts, or `query_batch_size`
        requests (as many searches as a batch takes)."""
        texts = sum(len(r.texts) for r in self._pending)
        return texts >= self._batch_size or len(self._pending) >= self._query_batch_size

    def _next_batch(self) -> list[_Request]:
        """Up to `batch_size` texts, or `query_batch_size` when they are all one-text requests
        (searches): a request passed over once goes first, then the smallest (searches before
        ingest pieces), in arrival order among equals.

        Under load, smaller batches of searches keep the model busy: while one group's model call
        runs, the group before does its database lookups and replies on the event loop, where one
        batch of every waiting search left the model idle for that part of each cycle."""
        order = sorted(
            range(len(self._pending)),
            key=lambda i: (not self._pending[i].passed_over, len(self._pending[i].texts), i),
        )
        chosen: set[int] = set()
        size = queries = 0
        for i in order:
            texts = len(self._pending[i].texts)
            if chosen and (
                size + texts > self._batch_size or (texts == 1 and queries >= self._query_batch_size)
            ):
                continue
            chosen.add(i)
            size += texts
            queries += texts == 1
        batch = [r for i, r in enumerate(self._pending) if i in chosen]
        self._pending = [r for i, r in enumerate(self._pending) if i not in chosen]
        for request in self._pending:
            request.passed_over = True
        return batch

    async def _wait_for_company(self) -> None:
        """Takes requests arriving within `max_wait` of now (on the injected clock) until a batch is full."""
        until = self._clock() + self._max_wait
        window = asyncio.ensure_future(self._sleep(self._max_wait))
        try:
            while not self._batch_is_full() and self._clock() < until and not window.done():
                getting = asyncio.ensure_future(self._queue.get())
                await asyncio.wait({getting, window}, return_when=asyncio.FIRST_COMPLETED)
                if not getting.done():
                    # A cancelled get leaves its item in the queue for the next batch.
                    getting.cancel()
                    break
                self._pending.append(getting.result())
                self._take_queued()
        finally:
            window.cancel()

    async def _serve(self, batch: list[_Request], now: float) -> None:
        live = []
        for request in batch:
            if request.future.cancelled():
                continue
            if request.deadline is not None and now >= request.deadline:
                request.future.set_exception(DeadlineExceeded("the deadline passed while waiting to embed"))
            else:
                live.append(request)
        if not live:
            return
        texts = [t for r in live for t in r.texts]
        deadlines = [r.deadline for r in live if r.deadline is not None]
        try:
            vectors = await self._model.embed(texts, deadline=max(deadlines) if deadlines else None)
        except Exception as exc:  # noqa: BLE001 - every waiting caller gets the failure
            for request in live:
                if not request.future.done():
                    request.future.set_exception(exc)
            return
        self.batches += 1
        offset = 0
        for request in live:
            if not request.future.done():
                request.future.set_result(vectors[offset : offset + len(request.texts)])
            offset += len(request.texts)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        await self._model.close()
