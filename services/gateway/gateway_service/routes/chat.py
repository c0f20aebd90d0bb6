import asyncio
from collections.abc import Callable

import grpc
import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from ..auth import API_KEY_SCHEME, Identity
from ..chat import ChatPipeline, collect, incomplete_stream, sse_events
from ..completions import ChunkEncoder, CompletionMeta, chat_completion
from ..deadline import Deadline
from ..disconnect import CLIENT_CLOSED_REQUEST, ClientDisconnected, wait_unless_disconnected
from ..errors import from_grpc
from ..generation_reader import GenerationReader
from ..metrics import GatewayMetrics
from ..schemas import ChatCompletionRequest
from ..settings import GatewaySettings
from ..sse_response import SSEResponse


def chat_router(pipeline: ChatPipeline, settings: GatewaySettings, metrics: GatewayMetrics) -> APIRouter:
    router = APIRouter(dependencies=[API_KEY_SCHEME])
    timeout = settings.gateway_request_timeout_seconds
    keepalive = settings.gateway_keepalive_seconds

    @router.post("/v1/chat/completions", response_class=Response)
    async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
        deadline = Deadline(timeout)
        identity: Identity = request.state.identity
        prepared = await pipeline.prepare(body, identity, deadline)
        meta = CompletionMeta(model=prepared.request.model, citations=prepared.citations)
        reader = pipeline.generate(prepared, deadline)
        mode = "true" if body.stream else "false"

        def first_token() -> None:
            metrics.time_to_first_token.labels(mode).observe(deadline.elapsed())

        try:
            if body.stream:
                return await _stream(request, reader, meta, body, first_token, deadline)
            return await _complete(request, reader, meta, first_token)
        except ClientDisconnected:
            reader.cancel()
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        except BaseException:
            reader.cancel()
            raise

    async def _complete(
        request: Request, reader: GenerationReader, meta: CompletionMeta, first_token: Callable[[], None]
    ) -> Response:
        work = asyncio.ensure_future(collect(reader, first_token))
        try:
            await wait_unless_disconnected(request.receive, work, None)
        finally:
            if not work.done():
                work.cancel()
        content, final = work.result()
        return Response(orjson.dumps(chat_completion(meta, content, final)), media_type="application/json")

    async def _stream(
        request: Request,
        reader: GenerationReader,
        meta: CompletionMeta,
        body: ChatCompletionRequest,
        first_token: Callable[[], None],
        deadline: Deadline,
    ) -> Response:
        # Errors that come fast (bad model, backend down) still get a real HTTP status; after one
        # keep-alive interval the stream starts and later errors become an SSE error event.
        first = reader.pending_read()
        if await wait_unless_disconnected(request.receive, first, min(keepalive, deadline.remaining())):
            error = first.exception()
            if isinstance(error, grpc.aio.AioRpcError):
                raise from_grpc(error, "generation")
            if error is None and first.result() is None:
                raise incomplete_stream()
        encoder = ChunkEncoder(meta, include_usage=body.include_usage)
        metrics.streams_in_flight.inc()

        def closed() -> None:
            reader.cancel()
            metrics.streams_in_flight.dec()

        events = sse_events(reader, encoder, keepalive_seconds=keepalive, on_first_token=first_token)
        return SSEResponse(events, on_close=closed)

    return router
