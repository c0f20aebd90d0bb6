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
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from llmsuite_common.request_context import request_id_var
from pydantic import ValidationError

from ...edge.auth import Identity
from ...edge.request_log import WS_ROUTE, logged
from ...edge.tokens import prompt_estimate, reservation
from ...metrics import GatewayMetrics
from ...pipeline.chat import ChatPipeline, StreamTally, sse_events
from ...pipeline.deadline import Deadline
from ...settings import GatewaySettings
from ..client_ip import client_ip
from ..completions import SSE_DONE, ChunkEncoder, CompletionMeta
from ..errors import (
    CANCELLED,
    ApiError,
    close_error_note,
    envelope,
    note_error,
    note_error_class,
    open_error_note,
)
from ..request_id import request_id_from
from ..schemas import ChatCompletionRequest
from ..text_guard import check_json_text
from ..validation import validation_error
from .chat import ChatEdge, stream_usage

log = logging.getLogger(__name__)

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


def frames(sse_bytes: bytes) -> list[bytes]:
    """The JSON payloads of SSE events; comments and [DONE] are SSE framing only."""
    out = []
    for block in sse_bytes.split(b"\n\n"):
        if block.startswith(b"data: ") and block + b"\n\n" != SSE_DONE:
            out.append(block[len(b"data: ") :])
    return out


class StreamBroke(Exception):
    pass


def ws_router(
    pipeline: ChatPipeline, settings: GatewaySettings, metrics: GatewayMetrics, edge: ChatEdge
) -> APIRouter:
    router = APIRouter()
    timeout = settings.gateway_request_timeout_seconds
    keepalive = settings.gateway_keepalive_seconds
    idle_seconds = settings.gateway_ws_idle_timeout_seconds
    # Half the key cache's lifetime: a revocation lands within about one TTL, mostly from the cache.
    key_check_seconds = settings.gateway_key_cache_ttl_seconds / 2

    async def one_request(ws: WebSocket, body: ChatCompletionRequest, identity: Identity) -> bool:
        """Streams one completion; False when the client went away."""
        deadline = Deadline(timeout)
        model = pipeline.model_for(body)
        edge.checks.check(identity, body, model)
        edge.usage.check_capacity()
        ip = client_ip(ws.scope, settings.gateway_trusted_proxy_hops)
        await edge.usage.check_budget(identity, ip)
        admission = await edge.limiter.admit(
            identity,
            ip,
            tokens=reservation(body, settings.gateway_reserved_completion_tokens),
            stream=True,
        )
        tally = StreamTally()
        used = 0
        try:
            prepared = await pipeline.prepare(body, identity, deadline, streamed=True)
            used = prompt_estimate(body)
            reader = pipeline.generate(prepared, deadline)
            encoder = ChunkEncoder(
                CompletionMeta(model=prepared.request.model, citations=prepared.citations), include_usage=True
            )
            first = True

            def first_token() -> None:
                metrics.time_to_first_token.labels("ws").observe(deadline.elapsed())

            async def send_all() -> None:
                nonlocal first
                async for data in sse_events(
                    reader, encoder, keepalive_seconds=keepalive, on_first_token=first_token, tally=tally
                ):
                    for payload in frames(data):
                        await ws.send_text(payload.decode())
                        if payload.startswith(b'{"error"'):
                            raise StreamBroke
                    first = False

            metrics.streams_in_flight.inc()
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
                    err = ApiError(
                        400, "send the next request after the usage frame", code="request_in_progress"
                    )
                    note_error(err)
                    await ws.send_text(orjson.dumps(envelope(err)).decode())
                    await ws.close(close_code(err))
                    return False
                if isinstance(sender.exception(), StreamBroke):
                    await ws.close(CLOSE_STREAM_FAILED)
                    return False
                sender.result()
                return True
            finally:
                watcher.cancel()
                if not sender.done():
                    sender.cancel()
                reader.cancel()
                metrics.streams_in_flight.dec()
        finally:
            if used and tally.final is None:
                # Unless an error frame ended it (noted already), the client left mid-stream.
                note_error_class(CANCELLED)
            if used:
                prompt, completion = stream_usage(body, tally)
                edge.usage.record(
                    identity,
                    model,
                    prompt,
                    completion,
                    request_id_var.get(),
                    cancelled=tally.final is None,
                    **logged(body, deadline, tally=tally, route=WS_ROUTE),
                )
                used = prompt + completion
            edge.limiter.run_later(admission.finish(used))

    async def watch_key(key_check: Callable[[], Awaitable[Identity | None]]) -> None:
        """Returns once the socket's key no longer authenticates (revoked, or its org removed)."""
        while True:
            await asyncio.sleep(key_check_seconds)
            try:
                if await key_check() is None:
                    return
            except Exception:  # noqa: BLE001 - a database hiccup keeps the socket; the next check decides
                log.warning("websocket key re-check failed", exc_info=True)

    async def serve(ws: WebSocket, identity: Identity, header: str | None) -> None:
        for _ in range(MAX_REQUESTS_PER_CONNECTION):
            token = request_id_var.set(request_id_from(header))
            # One error class per request on the connection, counted like an HTTP request's.
            error_note = open_error_note()
            try:
                try:
                    async with asyncio.timeout(idle_seconds):
                        message = await ws.receive()
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
                if not await one_request(ws, body, identity):
                    return
            except ApiError as err:
                note_error(err)
                await ws.send_text(orjson.dumps(envelope(err)).decode())
                await ws.close(close_code(err), reason=(err.code or "")[:120])
                return
            finally:
                if (error_class := close_error_note(error_note)) is not None:
                    metrics.errors.labels(error_class).inc()
                request_id_var.reset(token)
        await ws.close(1000, reason="request limit per connection reached")

    @router.websocket(PATH)
    async def chat_ws(ws: WebSocket) -> None:
        header = ws.headers.get("x-request-id")
        identity: Identity = ws.state.identity
        key_check = getattr(ws.state, "key_check", None)
        await ws.accept()
        serving = asyncio.ensure_future(serve(ws, identity, header))
        watcher = asyncio.ensure_future(watch_key(key_check)) if key_check is not None else None
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
        except WebSocketDisconnect:
            return
        except Exception:
            log.exception("websocket chat failed")
            try:
                await ws.close(CLOSE_STREAM_FAILED)
            except RuntimeError:
                pass
        finally:
            if watcher is not None:
                watcher.cancel()
            if not serving.done():
                serving.cancel()

    return router
