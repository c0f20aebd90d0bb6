"""Reads a Generate stream one event at a time, so a wait can time out without cancelling the read."""

import asyncio
from typing import Any

import grpc
from llmsuite.generation.v1 import generation_pb2

from ..api.errors import ApiError

# Final is the last message and the status follows at once; this only bounds a misbehaving backend.
FINISH_SECONDS = 1.0


def incomplete_stream() -> ApiError:
    return ApiError(502, "the generation stream ended without a final message", code="upstream_error")


async def _next_or_none(iterator: Any) -> generation_pb2.GenerateResponse | None:
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return None


class GenerationReader:
    def __init__(self, call: Any) -> None:
        self._call = call
        self._iterator = call.__aiter__()
        self._pending: asyncio.Future | None = None

    async def _read(self) -> generation_pb2.GenerateResponse | None:
        """One event from the source; subclasses that read elsewhere override only this."""
        return await _next_or_none(self._iterator)

    def pending_read(self) -> asyncio.Future:
        """The read in progress (starting one if needed); waiting on it with a timeout is safe."""
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._read())
        return self._pending

    async def next(self) -> generation_pb2.GenerateResponse | None:
        """The next event, or None at the end of the stream."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            return await pending
        return await self._read()

    def ready(self) -> generation_pb2.GenerateResponse | None:
        """An event that can be had without waiting (a reader that buffers); None otherwise."""
        return None

    async def finish(self) -> None:
        """Reads past Final to the end of the stream, so the call (and its client span) completes
        normally instead of waiting to be cancelled or collected."""
        try:
            async with asyncio.timeout(FINISH_SECONDS):
                while await self.next() is not None:
                    pass
        except (TimeoutError, grpc.aio.AioRpcError):
            # The answer is complete already; a backend that lingers or fails after Final changes nothing.
            self.cancel()

    def cancel(self) -> None:
        """Stops the call; the generation service then closes its upstream request."""
        if self._pending is not None:
            self._pending.cancel()
        self._call.cancel()


class CompletedReader(GenerationReader):
    """Reads a Complete call's one reply as the events a whole-answer Generate stream gives."""

    def __init__(self, call: Any) -> None:
        # Not super().__init__: a unary call has no response iterator.
        self._call = call
        self._pending = None
        self._events: list[generation_pb2.GenerateResponse] | None = None

    async def _read(self) -> generation_pb2.GenerateResponse | None:
        if self._events is None:
            reply = await self._call
            self._events = [generation_pb2.GenerateResponse(final=reply.final)]
            if reply.HasField("delta"):
                self._events.insert(0, generation_pb2.GenerateResponse(delta=reply.delta))
        return self._events.pop(0) if self._events else None

    async def finish(self) -> None:
        """The reply held everything; there is no stream to read to its end."""
