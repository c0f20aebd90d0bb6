"""The streaming chat-completions client for OpenAI-compatible upstreams."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from llmsuite_common.errors import DeadlineExceeded, FailedPrecondition, Unavailable
from llmsuite_common.request_context import REQUEST_ID_METADATA_KEY, request_id_var

from .routing import Deployment
from .sse import SSEError, SSEParser
from .upstream_errors import error_for_status, error_for_stream_error, error_for_transport

log = logging.getLogger(__name__)

MAX_ERROR_BODY_BYTES = 64 * 1024
# After [DONE] the body normally ends at once; an upstream that lingers loses its connection.
DRAIN_SECONDS = 0.5
CALLER_DEADLINE_BACKUP_SECONDS = 1.0
DONE = "[DONE]"
_HEADERS = {
    "accept": "text/event-stream",
    # Compression would make proxies and servers buffer the stream.
    "accept-encoding": "identity",
    "content-type": "application/json",
}


@dataclass(frozen=True, slots=True)
class ContentDelta:
    content: str
    role: str


@dataclass(frozen=True, slots=True)
class ToolCallPiece:
    index: int
    id: str = ""
    type: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class ToolCallsDelta:
    calls: tuple[ToolCallPiece, ...]
    role: str


@dataclass(frozen=True, slots=True)
class StreamDone:
    finish_reason: str
    usage: dict[str, Any] | None
    upstream_id: str


UpstreamEvent = ContentDelta | ToolCallsDelta | StreamDone


class UpstreamClient:
    """Owns the process's one pooled HTTP client, shared by every upstream deployment."""

    def __init__(self, *, max_connections: int) -> None:
        self._max_connections = max_connections
        self._client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        if self._client is not None:
            return
        limits = httpx.Limits(max_connections=self._max_connections, max_keepalive_connections=self._max_connections)
        self._client = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0, connect=5.0), trust_env=False)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @staticmethod
    def _timeout(deployment: Deployment) -> httpx.Timeout:
        # Per-phase limits only; the overall budget is the deadline timer in stream_chat.
        t = deployment.timeouts
        return httpx.Timeout(connect=t.connect, read=t.read, write=t.read, pool=t.connect)

    async def stream_chat(
        self, deployment: Deployment, body: dict[str, Any], *, model: str, remaining: float | None
    ) -> AsyncIterator[UpstreamEvent]:
        """Content and tool-call deltas as they arrive, then one StreamDone.

        `remaining` is the caller's time budget; together with the deployment's
        total timeout it bounds every wait. Leaving the iteration early (cancel,
        deadline, aclose) closes the upstream response.
        """
        if self._client is None:
            raise FailedPrecondition("generation is not started", code="not_ready")
        if remaining is not None and remaining <= 0:
            raise DeadlineExceeded("deadline passed before the upstream call", code="timeout")
        callers_deadline = remaining is not None and remaining < deployment.timeouts.total
        # gRPC enforces the caller's deadline itself, cancelling this call at that instant (a
        # cancel, in the metrics). This timer only backs that up, a moment later, so the two never
        # race to decide how the same call ended.
        budget = (
            remaining + CALLER_DEADLINE_BACKUP_SECONDS
            if callers_deadline and remaining is not None
            else deployment.timeouts.total
        )
        deadline = asyncio.get_running_loop().time() + budget
        key = deployment.api_key.get_secret_value()
        secrets = (key,) if key else ()
        headers = dict(_HEADERS)
        if key:
            headers["authorization"] = f"Bearer {key}"
        request_id = request_id_var.get()
        if request_id:
            headers[REQUEST_ID_METADATA_KEY] = request_id
        try:
            async with AsyncExitStack() as stack:
                async with asyncio.timeout_at(deadline):
                    response = await stack.enter_async_context(
                        self._client.stream(
                            "POST",
                            deployment.chat_url,
                            content=orjson.dumps(body),
                            headers=headers,
                            timeout=self._timeout(deployment),
                        )
                    )
                    if response.status_code != 200:
                        raise await self._status_error(response, model, secrets)
                content_type = response.headers.get("content-type", "")
                if not content_type.startswith("text/event-stream"):
                    raise Unavailable(
                        f"upstream answered with {content_type or 'no content type'}, not an event stream",
                        code="upstream_protocol_error",
                    )
                pieces = await stack.enter_async_context(aclosing(_pieces(response, deadline)))
                events = await stack.enter_async_context(aclosing(_events(pieces, secrets)))
                async for event in events:
                    yield event
        except httpx.TransportError as exc:
            error = error_for_transport(exc)
            log.warning(
                "upstream transport failure",
                extra={"error": type(exc).__name__, "code": error.code, "deployment": deployment.name},
            )
            raise error from None
        except TimeoutError:
            if callers_deadline:
                # The caller's time ran out; no retry can help and the upstream is not to blame.
                raise DeadlineExceeded("deadline exceeded waiting for the upstream", code="timeout") from None
            raise DeadlineExceeded("upstream exceeded its total timeout", code="upstream_timeout") from None

    @staticmethod
    async def _status_error(response: httpx.Response, model: str, secrets: tuple[str, ...]) -> Exception:
        body = b""
        async for piece in response.aiter_bytes():
            body += piece
            if len(body) >= MAX_ERROR_BODY_BYTES:
                break
        error = error_for_status(response.status_code, body, response.headers, model=model, secrets=secrets)
        log.warning("upstream error status", extra={"status": response.status_code, "code": error.code})
        return error



async def _pieces(response: httpx.Response, deadline: float) -> AsyncIterator[bytes]:
    """The body's bytes; each wait is also bounded by the request's total deadline."""
    pieces = response.aiter_bytes()
    while True:
        # Per read, not around the caller's loop: a timeout must never fire while
        # this generator is suspended and the caller is running.
        async with asyncio.timeout_at(deadline):
            try:
                piece = await anext(pieces)
            except StopAsyncIteration:
                return
        yield piece


async def _events(pieces: AsyncIterator[bytes], secrets: tuple[str, ...]) -> AsyncIterator[UpstreamEvent]:
    parser = SSEParser()
    upstream_id = ""
    finish_reason = ""
    usage: dict[str, Any] | None = None
    role = ""
    async for piece in pieces:
        try:
            events = parser.feed(piece)
        except SSEError as exc:
            raise Unavailable(f"upstream stream is malformed: {exc}", code="upstream_protocol_error") from None
        for event in events:
            if event.data == DONE:
                yield StreamDone(finish_reason or "stop", usage, upstream_id)
                await _drain(pieces)
                return
            if event.event == "error":
                raise error_for_stream_error(event.data, secrets=secrets)
            try:
                chunk = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                raise Unavailable("upstream sent malformed JSON in the stream", code="upstream_protocol_error") from None
            if not isinstance(chunk, dict):
                raise Unavailable("upstream sent a chunk that is not an object", code="upstream_protocol_error")
            if "error" in chunk:
                raise error_for_stream_error(chunk["error"], secrets=secrets)
            if not upstream_id and isinstance(chunk.get("id"), str):
                upstream_id = chunk["id"]
            if isinstance(chunk.get("usage"), dict):
                usage = chunk["usage"]
            choices = chunk.get("choices")
            if not isinstance(choices, list):
                continue
            for choice in choices:
                # One completion per request (n=1): other indexes are not ours to merge.
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    if isinstance(delta.get("role"), str):
                        role = delta["role"]
                    calls = _tool_call_pieces(delta.get("tool_calls"))
                    if calls:
                        yield ToolCallsDelta(calls, role)
                        role = ""
                    content = delta.get("content")
                    if isinstance(content, str) and content:
                        yield ContentDelta(content, role)
                        role = ""
                if isinstance(choice.get("finish_reason"), str):
                    finish_reason = choice["finish_reason"]
    raise Unavailable("upstream stream ended without [DONE]", code="upstream_incomplete")


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _tool_call_pieces(value: object) -> tuple[ToolCallPiece, ...]:
    if not isinstance(value, list):
        return ()
    pieces = []
    for position, call in enumerate(value):
        if not isinstance(call, dict):
            continue
        index = call.get("index")
        # Some servers omit `index` when they send each call whole.
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 2**31:
            index = position
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        pieces.append(
            ToolCallPiece(
                index=index,
                id=_text(call.get("id")),
                type=_text(call.get("type")),
                name=_text(function.get("name")),
                arguments=_text(function.get("arguments")),
            )
        )
    return tuple(pieces)


async def _drain(pieces: AsyncIterator[bytes]) -> None:
    """Read to the end of the body so the connection can go back to the pool."""
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in pieces:
                pass
    except (TimeoutError, httpx.TransportError):
        pass
