"""A micro-batching queue in front of an embedder: concurrent callers share one model call.

A model call on a batch of 32 costs little more than on one text, so searches that
arrive together wait up to `max_wait` for company instead of running one by one. A
large request (an ingest) goes in `batch_size` pieces, one after the other, so
searches arriving meanwhile join the next batch rather than queue behind all of it.
"""

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import numpy as np
from llmsuite_common.errors import DeadlineExceeded, ResourceExhausted

from .embedder import EmbeddingModel

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Request:
    texts: list[str]
    deadline: float | None
    future: asyncio.Future[np.ndarray] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class MicroBatcher:
    def __init__(self, model: EmbeddingModel, *, batch_size: int, max_wait: float, max_queued: int) -> None:
        self._model = model
        self._batch_size = batch_size
        self._max_wait = max_wait
        self._queue: asyncio.Queue[_Request] = asyncio.Queue(maxsize=max_queued)
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
            try:
                self._queue.put_nowait(request)
            except asyncio.QueueFull:
                raise ResourceExhausted("too many embedding requests are waiting; retry shortly") from None
            parts.append(await request.future)
        return np.vstack(parts)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            size = len(batch[0].texts)
            until = loop.time() + self._max_wait
            while size < self._batch_size:
                try:
                    nxt = await asyncio.wait_for(self._queue.get(), max(0.0, until - loop.time()))
                except TimeoutError:
                    break
                batch.append(nxt)
                size += len(nxt.texts)
            await self._serve(batch, loop.time())

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
