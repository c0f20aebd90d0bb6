"""POST /v1/chat/completions, answered whole or as server-sent events.

The route admits the request at the edge (edge/request_edge.py: limits, budget, idempotency, the
result cache, and on exit usage and the request log), runs the pipeline (pipeline/chat.py: input
guardrails, retrieval, generation through the output rail) and frames what it yields: one JSON
response, or one SSE event per chunk payload.
"""

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

import grpc
import orjson
from fastapi import APIRouter, Request
from llmsuite_common.exemplars import trace_exemplar
from prometheus_client import Histogram
from starlette.responses import Response

from ...edge import idempotency as idem
from ...edge.auth import API_KEY_SCHEME
from ...edge.request_edge import Admitted, AdmittedStream, EdgeRequest
from ...pipeline.chat import StreamTally, chunk_batches, collect
from ...pipeline.deadline import Deadline
from ...pipeline.downstream import timed
from ...pipeline.generation_reader import GenerationReader, incomplete_stream
from .. import server_timing
from ..client_ip import client_ip
from ..completions import ChunkEncoder, CompletionMeta, chat_completion
from ..deps import EdgeDep, IdentityDep, MetricsDep, PipelineDep, SettingsDep
from ..disconnect import CLIENT_CLOSED_REQUEST, ClientDisconnected, wait_unless_disconnected
from ..errors import from_grpc
from ..schemas import ChatCompletionRequest
from ..sse_response import SSE_DONE, SSE_KEEPALIVE, SSEResponse, sse_events, sse_replay

router = APIRouter(dependencies=[API_KEY_SCHEME])


@router.post("/v1/chat/completions", response_class=Response)
async def create_chat_completion(
    body: ChatCompletionRequest,
    request: Request,
    identity: IdentityDep,
    settings: SettingsDep,
    pipeline: PipelineDep,
    edge: EdgeDep,
    metrics: MetricsDep,
) -> Response:
    deadline = Deadline(settings.gateway_request_timeout_seconds)
    admit = EdgeRequest(
        identity=identity,
        body=body,
        model=pipeline.model_for(body),
        client_ip=client_ip(request.scope, settings.gateway_trusted_proxy_hops),
        deadline=deadline,
        stream=body.stream,
        idempotency_key=request.headers.get(idem.HEADER),
    )
    async with edge.admit(admit) as admitted:
        if admitted.replay is not None:
            return admitted.replay
        screened = await pipeline.screen(body, identity, deadline)
        if (hit := await admitted.cached(screened)) is not None:
            return hit
        prepared = await pipeline.prepare(body, identity, deadline, screened=screened)
        meta = CompletionMeta(model=prepared.request.model, citations=prepared.citations)
        started = time.perf_counter()
        reader = pipeline.generate(prepared, deadline)
        admitted.generating()
        answer = ChatAnswer(
            request=request,
            admitted=admitted,
            reader=reader,
            meta=meta,
            time_to_first_token=metrics.time_to_first_token,
            keepalive_seconds=settings.gateway_keepalive_seconds,
            started=started,
        )
        try:
            if body.stream:
                return await answer_streamed(answer)
            return await answer_whole(answer)
        except ClientDisconnected:
            reader.cancel()
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        except BaseException:
            reader.cancel()
            raise


@dataclass(frozen=True)
class ChatAnswer:
    """One request's answer in the making: what its steps share."""

    request: Request
    admitted: Admitted
    reader: GenerationReader
    meta: CompletionMeta
    time_to_first_token: Histogram
    keepalive_seconds: float
    # When generation started (perf_counter), for Server-Timing's generation entry.
    started: float

    def first_token(self) -> None:
        elapsed = self.admitted.request.deadline.elapsed()
        self.admitted.ttft_seconds = elapsed
        mode = "true" if self.admitted.request.stream else "false"
        self.time_to_first_token.labels(mode).observe(elapsed, trace_exemplar())


async def answer_whole(answer: ChatAnswer) -> Response:
    work = asyncio.ensure_future(collect(answer.reader, answer.first_token))
    try:
        await timed(wait_unless_disconnected(answer.request.receive, work, None))
    finally:
        if not work.done():
            work.cancel()
    # Server-Timing's generation entry: the whole answer, the time the response waited for.
    server_timing.add("generation", time.perf_counter() - answer.started)
    content, final = work.result()
    body = orjson.dumps(chat_completion(answer.meta, content, final))
    answer.admitted.answered(final, content, body)
    return Response(body, media_type="application/json", headers=answer.admitted.headers)


async def answer_streamed(answer: ChatAnswer) -> Response:
    # Errors that come fast (bad model, backend down) still get a real HTTP status; after one
    # keep-alive interval the stream starts and later errors become an SSE error event.
    first = answer.reader.pending_read()
    deadline = answer.admitted.request.deadline
    wait = min(answer.keepalive_seconds, deadline.remaining())
    if await timed(wait_unless_disconnected(answer.request.receive, first, wait)):
        # The first event is in before the headers go: Server-Timing can carry the time to it.
        server_timing.add("generation", time.perf_counter() - answer.started)
        error = first.exception()
        if isinstance(error, grpc.aio.AioRpcError):
            raise from_grpc(error, "generation")
        if error is None and first.result() is None:
            raise incomplete_stream()
    tally = StreamTally()
    # From here the stream settles when it closes, after this route returned.
    stream = answer.admitted.stream(tally)
    batches = chunk_batches(
        answer.reader,
        ChunkEncoder(answer.meta, include_usage=answer.admitted.request.body.include_usage),
        keepalive_seconds=answer.keepalive_seconds,
        on_first_token=answer.first_token,
        tally=tally,
    )

    def closed() -> None:
        answer.reader.cancel()
        stream.close()

    return SSEResponse(sse_body(batches, tally, stream), on_close=closed, headers=answer.admitted.headers)


async def sse_body(
    batches: AsyncGenerator[list[bytes]], tally: StreamTally, stream: AdmittedStream
) -> AsyncIterator[bytes]:
    """Keep-alive comments until the first chunk, then one `data:` event per chunk payload (those of
    one generation message in one write) and [DONE] after the last, unless an error event ended the
    stream. The complete stream is stored before its last event goes out."""
    try:
        async for batch in batches:
            if not batch:
                yield SSE_KEEPALIVE
            elif tally.final is None:
                yield sse_events(batch)
            else:
                await stream.complete(sse_replay(tally.payloads))
                yield sse_events(batch) + SSE_DONE
    finally:
        await batches.aclose()
