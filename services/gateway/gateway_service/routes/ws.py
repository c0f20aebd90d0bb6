"""Chat completions over WebSocket: the same chunks as SSE, one text frame each.

Protocol: after the handshake (authenticated like HTTP, `Authorization: Bearer <key>`), the client
sends a chat request as one JSON text frame. The gateway answers with one frame per
`chat.completion.chunk` - byte-identical to the SSE `data:` payloads - and ends with the usage chunk
(`"choices": []`, `"usage": {...}`). The client may then send the next request on the same connection.
A failure is an `{"error": {...}}` frame followed by a close: code 4000 + the HTTP status the same
failure would have over HTTP (4400, 4401, 4403, 4429, 4503, 4504, ...), or 1011 when the stream broke
after it started. Closing the socket cancels the generation upstream.
"""

import asyncio
import logging

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from llmsuite_common.request_context import request_id_var
from pydantic import ValidationError

from ..auth import Identity
from ..chat import ChatPipeline, StreamTally, sse_events
from ..client_ip import client_ip
from ..completions import SSE_DONE, ChunkEncoder, CompletionMeta
from ..deadline import Deadline
from ..errors import (
    CANCELLED,
    ApiError,
    close_error_note,
    envelope,
    note_error,
    note_error_class,
    open_error_note,
)
from ..metrics import GatewayMetrics
from ..request_id import request_id_from
from ..request_log import WS_ROUTE, logged
from ..schemas import ChatCompletionRequest
from ..settings import GatewaySettings
from ..tokens import prompt_estimate, reservation
from ..validation import validation_error
from .chat import ChatEdge, stream_usage

log = logging.getLogger(__name__)

PATH = "/v1/chat/completions/ws"
CLOSE_STREAM_FAILED = 1011
# Requests one connection may carry; a client that wants more reconnects.
MAX_REQUESTS_PER_CONNECTION = 1000
MAX_FRAME_BYTES = 1024 * 1024


def close_code(err: ApiError) -> int:
    return 4000 + err.status if 400 <= err.status <= 599 else CLOSE_STREAM_FAILED


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

    @router.websocket(PATH)
    async def chat_ws(ws: WebSocket) -> None:
        header = ws.headers.get("x-request-id")
        identity: Identity = ws.state.identity
        await ws.accept()
        try:
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                token = request_id_var.set(request_id_from(header))
                # One error class per request on the connection, counted like an HTTP request's.
                error_note = open_error_note()
                try:
                    raw = await ws.receive_text()
                    if len(raw) > MAX_FRAME_BYTES:
                        raise ApiError(
                            413, f"request frame exceeds {MAX_FRAME_BYTES} bytes", code="request_too_large"
                        )
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
        except WebSocketDisconnect:
            return
        except Exception:
            log.exception("websocket chat failed")
            try:
                await ws.close(CLOSE_STREAM_FAILED)
            except RuntimeError:
                pass

    return router
