"""Server-sent events: the framing of chunk payloads, the response, and the short path its events
take to the socket."""

from collections.abc import AsyncIterator, Callable, Sequence

import orjson
from starlette.responses import StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
SSE_DONE = b"data: [DONE]\n\n"
SSE_KEEPALIVE = b": keep-alive\n\n"
_DATA = b"data: "
_BETWEEN = b"\n\ndata: "
_END = b"\n\n"
# Where StreamSendMiddleware leaves the send it was given, for SSEResponse's events.
STREAM_SEND = "llmsuite.stream_send"


def sse(obj: object) -> bytes:
    return _DATA + orjson.dumps(obj) + _END


def sse_events(payloads: Sequence[bytes]) -> bytes:
    """Chunk payloads (JSON bytes, never a blank line inside) as one `data:` event each, in one write."""
    return _DATA + _BETWEEN.join(payloads) + _END


def sse_replay(payloads: Sequence[bytes]) -> tuple[bytes, ...]:
    """A complete stream's events as kept for replay: one per payload, then [DONE]."""
    return (*(_DATA + p + _END for p in payloads), SSE_DONE)


class StreamSendMiddleware:
    """Outermost of the gateway's middleware: keeps the send it is given in the scope.

    Every middleware inside it wraps `send` to see a response's start (headers, status, timing);
    none of them needs the events of a stream. SSEResponse sends its start and its end through the
    whole chain and each event straight to this send, so an event does not cross one wrapper per
    middleware. A middleware that must see every body message cannot sit inside this one.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[STREAM_SEND] = send
        try:
            await self.app(scope, receive, send)
        finally:
            # The send refers to the server's connection state, which holds the scope: left in
            # place, every request's objects would wait in that cycle for a full collection.
            del scope[STREAM_SEND]


class SSEResponse(StreamingResponse):
    """A text/event-stream response that always runs `on_close`, however the stream ends.

    Starlette cancels the body iterator on disconnect but does not close it, so cleanup placed in
    the iterator's own `finally` could wait for garbage collection.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        on_close: Callable[[], None],
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(content, headers={**SSE_HEADERS, **(headers or {})})
        self._on_close = on_close
        self._event_send: Send | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._event_send = scope.get(STREAM_SEND)
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        events = self._event_send or send
        async for chunk in self.body_iterator:
            await events({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
