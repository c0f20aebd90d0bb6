"""Serving one chat request, whichever API it came through: the step every door shares.

A door (api/doors/: Anthropic Messages, legacy Completions; chat itself) translates its request
into the internal ChatCompletionRequest and hands it to `serve_chat` with a `Door`: how that API
names its answers, builds a whole answer, encodes a stream's events and frames them. Everything
else is the same for every door: admission and settlement at the edge (edge/request_edge.py:
limits, budget, idempotency, the result cache, usage and the request log, under the door's
route), the pipeline (pipeline/chat.py: input guardrails, retrieval, context check, generation
through the output rail), tracing and Server-Timing.
"""

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import orjson
from fastapi import Request
from llmsuite.generation.v1 import generation_pb2
from llmsuite_common.exemplars import trace_exemplar
from prometheus_client import Histogram
from starlette.responses import Response

from ..edge import idempotency as idem
from ..edge.auth import Identity
from ..edge.request_edge import Admitted, AdmittedStream, EdgeRequest, RequestEdge
from ..edge.request_log import CHAT_ROUTE
from ..metrics import GatewayMetrics
from ..pipeline.chat import ChatPipeline, PayloadEncoder, StreamTally, chunk_batches, collect
from ..pipeline.deadline import Deadline
from ..pipeline.downstream import timed
from ..pipeline.generation_reader import GenerationReader, incomplete_stream
from ..settings import GatewaySettings
from . import server_timing
from .client_ip import client_ip
from .completions import ChunkEncoder, CompletionMeta, chat_completion, new_completion_id
from .disconnect import CLIENT_CLOSED_REQUEST, ClientDisconnected, wait_unless_disconnected
from .errors import ApiError, from_grpc
from .schemas import ChatCompletionRequest
from .sse_response import SSE_DONE, SSE_KEEPALIVE, SSEResponse, sse_events, sse_replay


def _concatenated(payloads: Sequence[bytes]) -> bytes:
    return b"".join(payloads)


@dataclass(frozen=True)
class Door:
    """What one API makes of a chat's answer."""

    # The route its request-log rows name (and, for a translated request, part of the idempotency
    # and result-cache keys, so an answer only ever goes back through the API that produced it).
    route: str
    # A new id for an answer: "chatcmpl-...", "msg_...", "cmpl-...".
    new_id: Callable[[], str]
    # The whole answer as the API's response object.
    whole: Callable[[CompletionMeta, str, generation_pb2.Final], dict[str, Any]]
    # The encoder of a stream's payloads.
    encoder: Callable[[CompletionMeta, ChatCompletionRequest], PayloadEncoder]
    # SSE framing: the payloads of one write, the events a replay sends, and what follows the last
    # event. Chat's payloads are JSON objects, each one `data:` event, and [DONE] ends the stream; a
    # door whose encoder makes whole SSE events (`event:` and `data:` lines) concatenates them.
    frame: Callable[[Sequence[bytes]], bytes] = sse_events
    replay: Callable[[Sequence[bytes]], tuple[bytes, ...]] = sse_replay
    done: bytes = SSE_DONE
    # A door that keeps its answers (the Responses API's `store`) keeps the whole answer's object
    # here before the client has all of it: a whole answer before it is sent, a stream (its object
    # made by `whole` from what was sent) before its last event. An ApiError it raises fails the
    # request instead; a stream then ends with the encoder's error payload in place of its last.
    keep: Callable[[dict[str, Any]], Awaitable[None]] | None = None

    @classmethod
    def of_events(cls, **fields: Any) -> "Door":
        """A door whose encoder makes whole SSE events and whose last event says the stream is over."""
        return cls(**fields, frame=_concatenated, replay=tuple, done=b"")


CHAT = Door(
    route=CHAT_ROUTE,
    new_id=new_completion_id,
    whole=chat_completion,
    encoder=lambda meta, body: ChunkEncoder(meta, include_usage=body.include_usage),
)


@dataclass(frozen=True)
class Serving:
    """What serving a chat takes from the app and the request (api/deps.py's ServingDep)."""

    request: Request
    identity: Identity
    settings: GatewaySettings
    pipeline: ChatPipeline
    edge: RequestEdge
    metrics: GatewayMetrics


async def serve_chat(
    door: Door, body: ChatCompletionRequest, serving: Serving, *, original: dict[str, Any] | None = None
) -> Response:
    """Admits, runs and answers one chat request through `door`. `original` is the client's request
    as its API spelled it, for a door that translated it (what an Idempotency-Key compares)."""
    request, identity, settings, pipeline = (
        serving.request,
        serving.identity,
        serving.settings,
        serving.pipeline,
    )
    deadline = Deadline(settings.gateway_request_timeout_seconds)
    admit = EdgeRequest(
        identity=identity,
        body=body,
        model=pipeline.model_for(body),
        client_ip=client_ip(request.scope, settings.gateway_trusted_proxy_hops),
        deadline=deadline,
        stream=body.stream,
        idempotency_key=request.headers.get(idem.HEADER),
        route=door.route,
        original=original,
    )
    async with serving.edge.admit(admit) as admitted:
        if admitted.replay is not None:
            return admitted.replay
        screened = await pipeline.screen(body, identity, deadline)
        if (hit := await admitted.cached(screened)) is not None:
            return hit
        prepared = await pipeline.prepare(body, identity, deadline, screened=screened)
        admitted.citations = prepared.citations
        meta = CompletionMeta(model=prepared.request.model, citations=prepared.citations, id=door.new_id())
        started = time.perf_counter()
        reader = pipeline.generate(prepared, deadline)
        admitted.generating()
        answer = ChatAnswer(
            request=request,
            admitted=admitted,
            reader=reader,
            meta=meta,
            time_to_first_token=serving.metrics.time_to_first_token,
            keepalive_seconds=settings.gateway_keepalive_seconds,
            started=started,
            door=door,
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
    door: Door = field(default=CHAT)

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
    whole = answer.door.whole(answer.meta, content, final)
    if answer.door.keep is not None:
        await answer.door.keep(whole)
    body = orjson.dumps(whole)
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
    encoder = answer.door.encoder(answer.meta, answer.admitted.request.body)
    batches = chunk_batches(
        answer.reader,
        encoder,
        keepalive_seconds=answer.keepalive_seconds,
        on_first_token=answer.first_token,
        tally=tally,
    )

    def closed() -> None:
        answer.reader.cancel()
        stream.close()

    body = sse_body(batches, tally, stream, answer.door, kept(answer, tally, encoder))
    return SSEResponse(body, on_close=closed, headers=answer.admitted.headers)


def kept(
    answer: ChatAnswer, tally: StreamTally, encoder: PayloadEncoder
) -> Callable[[], Awaitable[bytes | None]] | None:
    """For a door that keeps its answers: keeps a finished stream's; None, or the error payload
    that ends the stream instead when it could not be kept."""
    keep, door = answer.door.keep, answer.door
    if keep is None:
        return None

    async def keep_stream() -> bytes | None:
        assert tally.final is not None
        try:
            await keep(door.whole(answer.meta, "".join(tally.parts), tally.final))
        except ApiError as err:
            return encoder.error(err)
        return None

    return keep_stream


async def sse_body(
    batches: AsyncGenerator[list[bytes]],
    tally: StreamTally,
    stream: AdmittedStream,
    door: Door,
    keep: Callable[[], Awaitable[bytes | None]] | None = None,
) -> AsyncIterator[bytes]:
    """Keep-alive comments until the first payload, then the door's events for each batch of
    payloads (those of one generation message in one write), and its end after the last one, unless
    an error event ended the stream. The complete stream is kept (`keep`) and stored before its last
    event goes out."""
    try:
        async for batch in batches:
            if not batch:
                yield SSE_KEEPALIVE
            elif tally.final is None:
                yield door.frame(batch)
            else:
                if keep is not None and (failed := await keep()) is not None:
                    yield door.frame([*batch[:-1], failed])
                    return
                await stream.complete(door.replay(tally.payloads))
                yield door.frame(batch) + door.done
    finally:
        await batches.aclose()
