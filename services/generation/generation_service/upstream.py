"""The chat-completions client for OpenAI-compatible upstreams, streamed or whole.

One aiohttp session (one connection pool) serves every upstream deployment. A streamed request
(`"stream": true`) yields content and tool-call deltas as the SSE chunks arrive; a whole one
(a non-streaming caller's) reads the upstream's JSON answer and yields the same events from it,
the whole text as one ContentDelta and the whole tool calls as one ToolCallsDelta, so routing,
retries, accounting and limits treat both alike. Either ends with one StreamDone.

aiohttp rather than httpx: per streamed chunk httpx goes through httpcore, h11 and anyio (about
4x the CPU of aiohttp's C parser and stream reader), and httpcore's pool scans every connection
per request (benchmarks in services/generation/README.md). Tracing is done here, as httpx's
instrumentation did it: one client span per attempt and the W3C traceparent on the request.
"""

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from llmsuite_common.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    ResourceExhausted,
    ServiceError,
    Unavailable,
)
from llmsuite_common.request_context import REQUEST_ID_METADATA_KEY, request_id_var
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider

from .attempt_budget import AttemptBudget
from .routing import Deployment
from .sse import SSEError, SSEParser
from .upstream_errors import error_for_status, error_for_stream_error, error_for_transport

log = logging.getLogger(__name__)

MAX_ERROR_BODY_BYTES = 64 * 1024
# A whole answer goes to the caller as one gRPC message, which cannot be larger than this anyway.
DEFAULT_MAX_ANSWER_BYTES = 4 * 1024 * 1024
# After [DONE] the body normally ends at once; an upstream that lingers loses its connection.
DRAIN_SECONDS = 0.5
DONE = "[DONE]"
_STREAM_HEADERS = {
    "accept": "text/event-stream",
    # Compression would make proxies and servers buffer the stream.
    "accept-encoding": "identity",
    "content-type": "application/json",
}
_WHOLE_HEADERS = {**_STREAM_HEADERS, "accept": "application/json"}


@dataclass(slots=True)
class ContentDelta:
    content: str
    role: str
    # Another event parsed from the same network read follows at once: a caller may hold this delta
    # and send both together, without waiting for anything.
    more: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class ToolCallPiece:
    index: int
    id: str = ""
    type: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(slots=True)
class ToolCallsDelta:
    calls: tuple[ToolCallPiece, ...]
    role: str


@dataclass(slots=True)
class StreamDone:
    finish_reason: str
    usage: dict[str, Any] | None
    upstream_id: str


UpstreamEvent = ContentDelta | ToolCallsDelta | StreamDone


class UpstreamClient:
    """Owns the process's one pooled HTTP client, shared by every upstream deployment."""

    def __init__(
        self,
        *,
        max_connections: int,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._max_answer_bytes = max_answer_bytes
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self._session: aiohttp.ClientSession | None = None
        # Requests holding or waiting for a connection: a connect timeout while more of them than
        # connections are open means the pool is exhausted, not that the upstream is unreachable.
        self._in_use = 0

    async def open(self) -> None:
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0)
        self._session = aiohttp.ClientSession(
            connector=connector,
            # Upstream cookies are not ours to keep, and would cross tenants on a shared session.
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trust_env=False,
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def stream_chat(
        self, deployment: Deployment, body: dict[str, Any], *, model: str, remaining: float | None
    ) -> AsyncGenerator[UpstreamEvent]:
        """Content and tool-call deltas, then one StreamDone: as they arrive when `body` asks for a
        stream, else from the upstream's whole answer (one ContentDelta and/or one ToolCallsDelta).

        `remaining` is the caller's time budget; together with the deployment's total timeout it
        bounds every wait. Leaving the iteration early (cancel, deadline, aclose) closes the
        upstream response, so the upstream sees the disconnect and stops generating.
        """
        session = self._started_session(remaining)
        streamed = bool(body.get("stream"))
        budget = AttemptBudget(deployment.timeouts, remaining)
        timeout = budget.client_timeout(streamed=streamed)
        key = deployment.api_key.get_secret_value()
        secrets = (key,) if key else ()
        headers = request_headers(key, streamed=streamed)
        url = deployment.chat_url
        span = self._tracer.start_span("POST", kind=SpanKind.CLIENT, attributes=_span_attributes(url))
        propagate.inject(headers, context=trace.set_span_in_context(span))
        response: aiohttp.ClientResponse | None = None
        self._in_use += 1
        try:
            response = await session.post(url, data=orjson.dumps(body), headers=headers, timeout=timeout)
            span.set_attribute("http.response.status_code", response.status)
            if response.status != 200:
                raise await self._status_error(response, model, secrets)
            if streamed:
                async with aclosing(_stream_events(response, secrets)) as events:
                    async for event in events:
                        yield event
            else:
                for event in await self._whole_answer(response, secrets):
                    yield event
        except aiohttp.ClientError as exc:
            # Before TimeoutError: aiohttp's socket timeouts are both.
            raise self._transport_error(exc, deployment, span) from None
        except TimeoutError:
            error = budget.timeout_error()
            _fail(span, error)
            raise error from None
        except ServiceError as error:
            _fail(span, error)
            raise
        except BaseException:
            span.set_attribute("error.type", "cancelled")
            raise
        finally:
            self._in_use -= 1
            if response is not None:
                _release(response)
            span.end()

    def _started_session(self, remaining: float | None) -> aiohttp.ClientSession:
        """The session to call on, if the client is open and the caller has time left."""
        if self._session is None:
            raise FailedPrecondition("generation is not started", code="not_ready")
        if remaining is not None and remaining <= 0:
            raise DeadlineExceeded("deadline passed before the upstream call", code="timeout")
        return self._session

    async def _whole_answer(
        self, response: aiohttp.ClientResponse, secrets: tuple[str, ...]
    ) -> list[UpstreamEvent]:
        raw = await _read_at_most(response.content, self._max_answer_bytes)
        if not response.content.at_eof():
            raise ResourceExhausted(
                f"upstream answer is larger than {self._max_answer_bytes} bytes",
                code="upstream_answer_too_large",
            )
        return whole_answer_events(raw, secrets)

    def _transport_error(
        self, exc: aiohttp.ClientError, deployment: Deployment, span: trace.Span
    ) -> ServiceError:
        error = error_for_transport(exc, pool_exhausted=self._in_use > self._max_connections)
        log.warning(
            "upstream transport failure",
            extra={"error": type(exc).__name__, "code": error.code, "deployment": deployment.name},
        )
        _fail(span, error)
        return error

    @staticmethod
    async def _status_error(
        response: aiohttp.ClientResponse, model: str, secrets: tuple[str, ...]
    ) -> ServiceError:
        body = await _read_at_most(response.content, MAX_ERROR_BODY_BYTES)
        error = error_for_status(response.status, body, response.headers, model=model, secrets=secrets)
        log.warning("upstream error status", extra={"status": response.status, "code": error.code})
        return error


def request_headers(api_key: str, *, streamed: bool) -> dict[str, str]:
    """The upstream request's headers: what it accepts, its key, and the call's request id."""
    headers = dict(_STREAM_HEADERS if streamed else _WHOLE_HEADERS)
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    request_id = request_id_var.get()
    if request_id:
        headers[REQUEST_ID_METADATA_KEY] = request_id
    return headers


def _stream_events(
    response: aiohttp.ClientResponse, secrets: tuple[str, ...]
) -> AsyncGenerator[UpstreamEvent]:
    """A streamed answer's events as its body arrives; an answer that is no event stream is refused."""
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith("text/event-stream"):
        raise Unavailable(
            f"upstream answered with {content_type or 'no content type'}, not an event stream",
            code="upstream_protocol_error",
        )
    return _events(_pieces(response.content), secrets)


def _release(response: aiohttp.ClientResponse) -> None:
    if response.content.at_eof():
        response.release()  # read to its end: the connection goes back to the pool
    else:
        response.close()  # the upstream sees the disconnect and stops


def _span_attributes(url: str) -> dict[str, Any]:
    """HTTP client span attributes (OpenTelemetry semantic conventions); URLs carry no credentials."""
    parts = urlsplit(url)
    attributes: dict[str, Any] = {"http.request.method": "POST", "url.full": url}
    if parts.hostname:
        attributes["server.address"] = parts.hostname
    attributes["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)
    return attributes


def _fail(span: trace.Span, error: ServiceError) -> None:
    span.set_attribute("error.type", error.code)
    span.set_status(Status(StatusCode.ERROR, error.code))


async def _read_at_most(content: aiohttp.StreamReader, limit: int) -> bytes:
    """The body up to `limit` bytes (more only if the last piece crosses it)."""
    pieces: list[bytes] = []
    size = 0
    while size < limit:
        piece = await content.readany()
        if not piece:
            break
        pieces.append(piece)
        size += len(piece)
    return b"".join(pieces)


async def _pieces(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive; aiohttp bounds each wait by the read and total timeouts."""
    while piece := await content.readany():
        yield piece


async def _events(pieces: AsyncIterator[bytes], secrets: tuple[str, ...]) -> AsyncGenerator[UpstreamEvent]:
    state = _StreamState()
    parser = SSEParser()
    async for piece in pieces:
        try:
            parsed = parser.feed(piece)
        except SSEError as exc:
            raise Unavailable(
                f"upstream stream is malformed: {exc}", code="upstream_protocol_error"
            ) from None
        out: list[UpstreamEvent] = []
        failure: ServiceError | None = None
        try:
            for event in parsed:
                if state.add(event, out, secrets):
                    break
        except ServiceError as exc:
            # What the read held before the failure is still delivered, in order.
            failure = exc
        last = len(out) - 1
        for position, item in enumerate(out):
            if isinstance(item, ContentDelta):
                # Another event of this read follows at once: the caller may send both together.
                item.more = position < last
            yield item
        if failure is not None:
            raise failure
        if out and isinstance(out[-1], StreamDone):
            await _drain(pieces)
            return
    raise Unavailable("upstream stream ended without [DONE]", code="upstream_incomplete")


class _StreamState:
    """What a stream has said so far that later chunks rely on: its id, usage, finish reason, role."""

    __slots__ = ("upstream_id", "finish_reason", "usage", "role")

    def __init__(self) -> None:
        self.upstream_id = ""
        self.finish_reason = ""
        self.usage: dict[str, Any] | None = None
        self.role = ""

    def add(self, event: Any, out: list[UpstreamEvent], secrets: tuple[str, ...]) -> bool:
        """Appends the events one SSE event makes; True at [DONE]."""
        data = event.data
        if data == DONE:
            out.append(StreamDone(self.finish_reason or "stop", self.usage, self.upstream_id))
            return True
        if event.event == "error":
            raise error_for_stream_error(data, secrets=secrets)
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise Unavailable(
                "upstream sent malformed JSON in the stream", code="upstream_protocol_error"
            ) from None
        if not isinstance(chunk, dict):
            raise Unavailable("upstream sent a chunk that is not an object", code="upstream_protocol_error")
        if "error" in chunk:
            raise error_for_stream_error(chunk["error"], secrets=secrets)
        if not self.upstream_id and isinstance(chunk.get("id"), str):
            self.upstream_id = chunk["id"]
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return False
        for choice in choices:
            # One completion per request (n=1): other indexes are not ours to merge.
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                if isinstance(delta.get("role"), str):
                    self.role = delta["role"]
                calls = _tool_call_pieces(delta.get("tool_calls"))
                if calls:
                    out.append(ToolCallsDelta(calls, self.role))
                    self.role = ""
                content = delta.get("content")
                if isinstance(content, str) and content:
                    out.append(ContentDelta(content, self.role))
                    self.role = ""
            if isinstance(choice.get("finish_reason"), str):
                self.finish_reason = choice["finish_reason"]
        return False


def whole_answer_events(raw: bytes, secrets: tuple[str, ...] = ()) -> list[UpstreamEvent]:
    """A non-streamed chat completion as the events of a stream: the whole text, the whole tool
    calls, then StreamDone with the answer's finish reason, usage and id."""
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Unavailable("upstream sent a malformed JSON answer", code="upstream_protocol_error") from None
    if not isinstance(answer, dict):
        raise Unavailable("upstream sent an answer that is not an object", code="upstream_protocol_error")
    if "error" in answer:
        raise error_for_stream_error(answer["error"], secrets=secrets)
    answer_id = answer.get("id")
    upstream_id = answer_id if isinstance(answer_id, str) else ""
    usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else None
    events: list[UpstreamEvent] = []
    finish_reason = ""
    choices = answer.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            continue
        message = choice.get("message")
        if isinstance(message, dict):
            role = _text(message.get("role"))
            content = _content_text(message.get("content"))
            if content:
                events.append(ContentDelta(content, role))
                role = ""
            calls = _tool_call_pieces(message.get("tool_calls"))
            if calls:
                events.append(ToolCallsDelta(calls, role))
        finish_reason = _text(choice.get("finish_reason"))
        break
    events.append(StreamDone(finish_reason or "stop", usage, upstream_id))
    return events


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _content_text(value: object) -> str:
    """A message's content: a string, or (some servers) a list of parts whose text parts count."""
    if isinstance(value, list):
        return "".join(p["text"] for p in value if isinstance(p, dict) and isinstance(p.get("text"), str))
    return _text(value)


def _tool_call_pieces(value: object) -> tuple[ToolCallPiece, ...]:
    if not isinstance(value, list):
        return ()
    pieces = []
    for position, call in enumerate(value):
        if not isinstance(call, dict):
            continue
        index = call.get("index")
        # Some servers omit `index` when they send each call whole (every non-streamed answer).
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 2**31:
            index = position
        raw_function = call.get("function")
        function = raw_function if isinstance(raw_function, dict) else {}
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
    except (TimeoutError, aiohttp.ClientError):
        pass
