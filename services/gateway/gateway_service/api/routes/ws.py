"""Chat completions over WebSocket: the same chunks as SSE, one text frame each.

Protocol: after the handshake (authenticated like HTTP, `Authorization: Bearer <key>`), the client
sends a chat request as one JSON text frame. The gateway answers with one frame per
`chat.completion.chunk` - byte-identical to the SSE `data:` payloads - and ends with the usage chunk
(`"choices": []`, `"usage": {...}`). The client may then send the next request on the same connection.
A failure is an `{"error": {...}}` frame followed by a close: code 4000 + the HTTP status the same
failure would have over HTTP (4400, 4401, 4403, 4429, 4503, 4504, ...), or 1011 when the stream broke
after it started. Frames the protocol itself rules out get the RFC 6455 codes: a binary frame 1003,
a frame over MAX_FRAME_BYTES 1009. Closing the socket cancels the generation upstream.

A socket waiting for its next request is closed (1000) after GATEWAY_WS_IDLE_TIMEOUT_SECONDS without
a frame. The key is checked again while the socket is open (every half key-cache TTL, mostly a cache
hit): once it is revoked the socket gets an error frame and a policy close (1008), mid-stream too.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from llmsuite_common.request_context import request_id_var
from pydantic import ValidationError
from starlette.types import Message
from starlette.websockets import WebSocketDisconnected

from ...edge.auth import Identity
from ...edge.request_edge import EdgeRequest, RequestEdge
from ...edge.request_log import WS_ROUTE
from ...metrics import GatewayMetrics
from ...pipeline.chat import ChatPipeline, StreamTally, chunk_batches
from ...pipeline.deadline import Deadline
from ...pipeline.generation_reader import GenerationReader
from ...settings import GatewaySettings
from ..client_ip import client_ip
from ..completions import ChunkEncoder, CompletionMeta
from ..deps import EdgeDep, IdentityDep, MetricsDep, PipelineDep, SettingsDep
from ..errors import ApiError, close_error_note, envelope, note_error, open_error_note
from ..request_id import request_id_from
from ..schemas import ChatCompletionRequest
from ..text_guard import check_json_text
from ..validation import validation_error

log = logging.getLogger(__name__)
router = APIRouter()

PATH = "/v1/chat/completions/ws"
CLOSE_STREAM_FAILED = 1011
CLOSE_IDLE = 1000
CLOSE_POLICY = 1008
# Requests one connection may carry; a client that wants more reconnects.
MAX_REQUESTS_PER_CONNECTION = 1000
MAX_FRAME_BYTES = 1024 * 1024
# Errors about the frame itself, closed with the RFC 6455 code rather than 4000 + status.
_FRAME_CLOSE_CODES = {"unsupported_frame": 1003, "request_too_large": 1009}


def close_code(err: ApiError) -> int:
    if err.code in _FRAME_CLOSE_CODES:
        return _FRAME_CLOSE_CODES[err.code]
    return 4000 + err.status if 400 <= err.status <= 599 else CLOSE_STREAM_FAILED


def request_text(message: Mapping[str, Any]) -> str:
    """The text of a request frame; a binary or oversized frame is refused."""
    text = message.get("text")
    if text is None:
        raise ApiError(
            400, "send each request as a JSON text frame, not a binary one", code="unsupported_frame"
        )
    # Characters never outnumber UTF-8 bytes; only a long frame needs encoding to be measured.
    if len(text) > MAX_FRAME_BYTES // 4 and len(text.encode()) > MAX_FRAME_BYTES:
        raise ApiError(413, f"request frame exceeds {MAX_FRAME_BYTES} bytes", code="request_too_large")
    return text


class KeyRevoked(Exception):
    pass


class StreamBroke(Exception):
    pass


@dataclass(frozen=True)
class Socket:
    """One accepted connection, and what serves the requests it carries."""

    ws: WebSocket
    identity: Identity
    settings: GatewaySettings
    pipeline: ChatPipeline
    edge: RequestEdge
    metrics: GatewayMetrics
    # A client frame (its next request, or its close) that arrived as a stream ended, not yet read.
    pending: list[Message] = field(default_factory=list)


@router.websocket(PATH)
async def chat_ws(
    ws: WebSocket,
    identity: IdentityDep,
    settings: SettingsDep,
    pipeline: PipelineDep,
    edge: EdgeDep,
    metrics: MetricsDep,
) -> None:
    header = ws.headers.get("x-request-id")
    key_check = getattr(ws.state, "key_check", None)
    await ws.accept()
    serving = asyncio.ensure_future(serve(Socket(ws, identity, settings, pipeline, edge, metrics), header))
    # Half the key cache's lifetime: a revocation lands within about one TTL, mostly from the cache.
    every = settings.gateway_key_cache_ttl_seconds / 2
    watcher = asyncio.ensure_future(watch_key(key_check, every)) if key_check is not None else None
    try:
        if watcher is not None:
            await asyncio.wait({serving, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if watcher.done() and not serving.done():
                # Cancelling the request in progress cancels its generation and logs it.
                serving.cancel()
                await asyncio.gather(serving, return_exceptions=True)
                raise KeyRevoked
        await serving
    except KeyRevoked:
        err = ApiError(401, "the API key was revoked", code="invalid_api_key")
        try:
            await ws.send_text(orjson.dumps(envelope(err)).decode())
            await ws.close(CLOSE_POLICY, reason="api key revoked")
        except (RuntimeError, WebSocketDisconnect):
            pass
    except (WebSocketDisconnect, WebSocketDisconnected):
        # The client closed: how a socket normally ends, not an error.
        return
    except Exception:
        log.exception("websocket chat failed")
        try:
            await ws.close(CLOSE_STREAM_FAILED)
        except (RuntimeError, WebSocketDisconnect):
            pass
    finally:
        if watcher is not None:
            watcher.cancel()
        if not serving.done():
            serving.cancel()


async def watch_key(key_check: Callable[[], Awaitable[Identity | None]], every_seconds: float) -> None:
    """Returns once the socket's key no longer authenticates (revoked, or its org removed)."""
    while True:
        await asyncio.sleep(every_seconds)
        try:
            if await key_check() is None:
                return
        except Exception:  # noqa: BLE001 - a database hiccup keeps the socket; the next check decides
            log.warning("websocket key re-check failed", exc_info=True)


async def serve(socket: Socket, header: str | None) -> None:
    ws = socket.ws
    for _ in range(MAX_REQUESTS_PER_CONNECTION):
        token = request_id_var.set(request_id_from(header))
        # One error class per request on the connection, counted like an HTTP request's.
        error_note = open_error_note()
        try:
            try:
                async with asyncio.timeout(socket.settings.gateway_ws_idle_timeout_seconds):
                    message = socket.pending.pop(0) if socket.pending else await ws.receive()
            except TimeoutError:
                await ws.close(CLOSE_IDLE, reason="idle timeout")
                return
            if message["type"] == "websocket.disconnect":
                return
            raw = request_text(message)
            check_json_text(raw)
            try:
                body = ChatCompletionRequest.model_validate_json(raw)
            except ValidationError as err:
                raise validation_error(err.errors()) from None
            if not await one_request(socket, body):
                return
        except ApiError as err:
            note_error(err)
            await ws.send_text(orjson.dumps(envelope(err)).decode())
            await ws.close(close_code(err), reason=(err.code or "")[:120])
            return
        finally:
            if (error_class := close_error_note(error_note)) is not None:
                socket.metrics.errors.labels(error_class).inc()
            request_id_var.reset(token)
    await ws.close(1000, reason="request limit per connection reached")


async def one_request(socket: Socket, body: ChatCompletionRequest) -> bool:
    """Streams one completion; False when the client went away."""
    settings, pipeline = socket.settings, socket.pipeline
    deadline = Deadline(settings.gateway_request_timeout_seconds)
    admit = EdgeRequest(
        identity=socket.identity,
        body=body,
        model=pipeline.model_for(body),
        client_ip=client_ip(socket.ws.scope, settings.gateway_trusted_proxy_hops),
        deadline=deadline,
        stream=True,
        route=WS_ROUTE,
        log_failures=False,
    )
    async with socket.edge.admit(admit) as admitted:
        prepared = await pipeline.prepare(body, socket.identity, deadline, streamed=True)
        admitted.citations = prepared.citations
        reader = pipeline.generate(prepared, deadline)
        tally = StreamTally()
        stream = admitted.stream(tally)
        try:
            meta = CompletionMeta(model=prepared.request.model, citations=prepared.citations)
            return await send_stream(socket, reader, ChunkEncoder(meta, include_usage=True), tally, deadline)
        finally:
            reader.cancel()
            stream.close()


async def send_stream(
    socket: Socket, reader: GenerationReader, encoder: ChunkEncoder, tally: StreamTally, deadline: Deadline
) -> bool:
    """One text frame per chunk payload, while watching the socket; False when the stream did not end
    with its usage frame (the client left or spoke, or an error frame ended it)."""
    ws = socket.ws

    def first_token() -> None:
        socket.metrics.time_to_first_token.labels("ws").observe(deadline.elapsed())

    async def send_all() -> None:
        keepalive = socket.settings.gateway_keepalive_seconds
        async for batch in chunk_batches(
            reader, encoder, keepalive_seconds=keepalive, on_first_token=first_token, tally=tally
        ):
            for payload in batch:
                await ws.send_text(payload.decode())
            if tally.error is not None:
                raise StreamBroke

    sender = asyncio.ensure_future(send_all())
    watcher = asyncio.ensure_future(ws.receive())
    try:
        await asyncio.wait({sender, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if not sender.done():
            # The client spoke mid-stream: a close cancels; anything else is a protocol error.
            message = watcher.result()
            reader.cancel()
            sender.cancel()
            if message["type"] == "websocket.disconnect":
                return False
            err = ApiError(400, "send the next request after the usage frame", code="request_in_progress")
            note_error(err)
            await ws.send_text(orjson.dumps(envelope(err)).decode())
            await ws.close(close_code(err))
            return False
        if isinstance(sender.exception(), StreamBroke):
            await ws.close(CLOSE_STREAM_FAILED)
            return False
        sender.result()
        if watcher.done() and not watcher.cancelled() and watcher.exception() is None:
            # The client's next frame came as the stream ended (a close right after the usage
            # frame, or its next request): the socket's reader must see it, not wait for another.
            socket.pending.append(watcher.result())
        return True
    finally:
        watcher.cancel()
        if not sender.done():
            sender.cancel()
