import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc
import orjson
from fastapi import APIRouter, Request
from llmsuite_common.exemplars import trace_exemplar
from llmsuite_common.request_context import request_id_var
from starlette.responses import Response, StreamingResponse

from ...edge import idempotency as idem
from ...edge import result_cache
from ...edge.admission import EdgeChecks
from ...edge.auth import API_KEY_SCHEME, Identity
from ...edge.idempotency import Claim, Idempotency
from ...edge.limits import Admission, Limiter
from ...edge.request_log import logged
from ...edge.result_cache import ResultCache
from ...edge.stored_response import StoredResponse
from ...edge.tokens import prompt_estimate, reservation
from ...edge.usage import UsageRecorder
from ...metrics import GatewayMetrics
from ...pipeline.chat import ChatPipeline, StreamTally, collect, sse_events
from ...pipeline.deadline import Deadline
from ...pipeline.downstream import timed
from ...pipeline.generation_reader import GenerationReader, incomplete_stream
from ...settings import GatewaySettings
from .. import server_timing
from ..client_ip import client_ip
from ..completions import ChunkEncoder, CompletionMeta, chat_completion
from ..disconnect import CLIENT_CLOSED_REQUEST, ClientDisconnected, wait_unless_disconnected
from ..errors import CANCELLED, from_grpc, note_error_class
from ..schemas import ChatCompletionRequest
from ..sse_response import SSEResponse


@dataclass(frozen=True)
class ChatEdge:
    """What sits between the client and the pipeline: limits, idempotency, the result cache."""

    limiter: Limiter
    idempotency: Idempotency
    cache: ResultCache
    checks: EdgeChecks
    usage: UsageRecorder


def stream_usage(body: ChatCompletionRequest, tally: StreamTally) -> tuple[int, int]:
    """(prompt, completion) tokens of a stream: as reported, or for a cancelled or usage-less stream,
    the prompt estimate and one token per delta sent."""
    if tally.final is not None and (tally.final.usage.prompt_tokens or tally.final.usage.completion_tokens):
        return tally.final.usage.prompt_tokens, tally.final.usage.completion_tokens
    return prompt_estimate(body), tally.deltas


def chat_router(
    pipeline: ChatPipeline, settings: GatewaySettings, metrics: GatewayMetrics, edge: ChatEdge
) -> APIRouter:
    router = APIRouter(dependencies=[API_KEY_SCHEME])
    timeout = settings.gateway_request_timeout_seconds
    keepalive = settings.gateway_keepalive_seconds
    hops = settings.gateway_trusted_proxy_hops
    limiter = edge.limiter

    @router.post("/v1/chat/completions", response_class=Response)
    async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
        deadline = Deadline(timeout)
        identity: Identity = request.state.identity
        model = pipeline.model_for(body)
        edge.checks.check(identity, body, model)
        edge.usage.check_capacity()
        ip = client_ip(request.scope, hops)
        with server_timing.hop("limits"):
            await edge.usage.check_budget(identity, ip)
            admission = await limiter.admit(
                identity,
                ip,
                tokens=reservation(body, settings.gateway_reserved_completion_tokens),
                stream=body.stream,
            )
        finished = False
        request.state.tokens_used = 0
        try:
            response = await _serve(request, body, identity, model, admission, deadline)
            finished = isinstance(response, SSEResponse)
            return response
        except Exception as err:
            edge.usage.record_failure(identity, model, request_id_var.get(), body, deadline, err)
            raise
        finally:
            if not finished:
                # Non-stream requests are done here, reconciled off the response path; streams
                # reconcile when they close.
                limiter.run_later(admission.finish(request.state.tokens_used))

    async def _serve(
        request: Request,
        body: ChatCompletionRequest,
        identity: Identity,
        model: str,
        admission: Admission,
        deadline: Deadline,
    ) -> Response:
        headers = dict(admission.headers)
        claim: Claim | None = None
        if (key := request.headers.get(idem.HEADER)) is not None:
            outcome = await edge.idempotency.claim(
                identity.org_id, key, idem.body_fingerprint(body.model_dump(mode="json", exclude_unset=True))
            )
            if isinstance(outcome, StoredResponse):
                return outcome.response({**headers, idem.REPLAYED_HEADER: "true"})
            claim = outcome
        try:
            response = await _cached_or_generated(
                request, body, identity, model, admission, deadline, headers, claim
            )
        except BaseException:
            if claim is not None:
                await edge.idempotency.release(claim)
            raise
        # Streams settle their claim when they end; a cache hit settled it already.
        if claim is not None and not isinstance(response, StreamingResponse):
            if response.status_code == 200:
                await edge.idempotency.complete(claim, StoredResponse(200, body=bytes(response.body)))
            else:
                await edge.idempotency.release(claim)
        return response

    async def _cached_or_generated(
        request: Request,
        body: ChatCompletionRequest,
        identity: Identity,
        model: str,
        admission: Admission,
        deadline: Deadline,
        headers: dict[str, str],
        claim: Claim | None,
    ) -> Response:
        ttl = identity.policy.cache_ttl_seconds
        screened = await pipeline.screen(body, identity, deadline)
        cache_key = (
            result_cache.cache_key(
                identity.org_id,
                model,
                body,
                policy_version=screened.policy_version,
                collection_version=screened.collection_version,
            )
            if ttl and result_cache.cacheable(body)
            else None
        )
        if cache_key is not None:
            hit = await edge.cache.get(cache_key, org_id=identity.org_id, key_id=identity.key_id)
            if hit is not None:
                if claim is not None:
                    await edge.idempotency.complete(claim, hit)
                return hit.response({**headers, result_cache.HEADER: "hit"})
            headers[result_cache.HEADER] = "miss"

        async def store(stored: StoredResponse) -> None:
            if cache_key is not None:
                await edge.cache.put(cache_key, stored, ttl)
            if claim is not None:
                await edge.idempotency.complete(claim, stored)

        prepared = await pipeline.prepare(body, identity, deadline, screened=screened)
        meta = CompletionMeta(model=prepared.request.model, citations=prepared.citations)
        generation_started = time.perf_counter()
        reader = pipeline.generate(prepared, deadline)
        mode = "true" if body.stream else "false"
        request.state.tokens_used = prompt_estimate(body)

        def first_token() -> None:
            request.state.ttft_seconds = deadline.elapsed()
            metrics.time_to_first_token.labels(mode).observe(deadline.elapsed(), trace_exemplar())

        try:
            if body.stream:
                return await _stream(
                    request,
                    reader,
                    meta,
                    body,
                    first_token,
                    deadline,
                    admission,
                    headers,
                    claim,
                    store,
                    generation_started,
                )
            response = await _complete(request, reader, meta, first_token, headers, generation_started)
            edge.usage.record(
                identity,
                meta.model,
                request.state.prompt_tokens,
                request.state.completion_tokens,
                request_id_var.get(),
                **logged(body, deadline, state=request.state),
            )
            if cache_key is not None:
                await edge.cache.put(cache_key, StoredResponse(200, body=bytes(response.body)), ttl)
            return response
        except ClientDisconnected:
            reader.cancel()
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        except BaseException:
            reader.cancel()
            raise

    async def _complete(
        request: Request,
        reader: GenerationReader,
        meta: CompletionMeta,
        first_token: Callable[[], None],
        headers: dict[str, str],
        generation_started: float,
    ) -> Response:
        work = asyncio.ensure_future(collect(reader, first_token))
        try:
            await timed(wait_unless_disconnected(request.receive, work, None))
        finally:
            if not work.done():
                work.cancel()
        # Server-Timing's generation entry: the whole answer, the time the response waited for.
        server_timing.add("generation", time.perf_counter() - generation_started)
        content, final = work.result()
        request.state.tokens_used = final.usage.prompt_tokens + final.usage.completion_tokens
        request.state.prompt_tokens = final.usage.prompt_tokens
        request.state.completion_tokens = final.usage.completion_tokens
        request.state.finish_reason, request.state.answer = final.finish_reason, content
        return Response(
            orjson.dumps(chat_completion(meta, content, final)),
            media_type="application/json",
            headers=headers,
        )

    async def _stream(
        request: Request,
        reader: GenerationReader,
        meta: CompletionMeta,
        body: ChatCompletionRequest,
        first_token: Callable[[], None],
        deadline: Deadline,
        admission: Admission,
        headers: dict[str, str],
        claim: Claim | None,
        store: Callable[[StoredResponse], Awaitable[None]],
        generation_started: float,
    ) -> Response:
        # Errors that come fast (bad model, backend down) still get a real HTTP status; after one
        # keep-alive interval the stream starts and later errors become an SSE error event.
        first = reader.pending_read()
        if await timed(
            wait_unless_disconnected(request.receive, first, min(keepalive, deadline.remaining()))
        ):
            # The first event is in before the headers go: Server-Timing can carry the time to it.
            server_timing.add("generation", time.perf_counter() - generation_started)
            error = first.exception()
            if isinstance(error, grpc.aio.AioRpcError):
                raise from_grpc(error, "generation")
            if error is None and first.result() is None:
                raise incomplete_stream()
        encoder = ChunkEncoder(meta, include_usage=body.include_usage)
        metrics.streams_in_flight.inc()
        tally = StreamTally()

        request_id = request_id_var.get()
        identity: Identity = request.state.identity

        stored = False

        async def after_stream() -> None:
            prompt, completion = stream_usage(body, tally)
            edge.usage.record(
                identity,
                meta.model,
                prompt,
                completion,
                request_id,
                cancelled=tally.final is None,
                **logged(body, deadline, state=request.state, tally=tally),
            )
            await admission.finish(prompt + completion)
            if not stored and claim is not None:
                await edge.idempotency.release(claim)

        def closed() -> None:
            if tally.final is None:
                # Ended before its final message: a client that left, unless an error event ended it
                # (that error was noted first and stands).
                note_error_class(CANCELLED)
            reader.cancel()
            metrics.streams_in_flight.dec()
            limiter.run_later(after_stream())

        events = sse_events(
            reader, encoder, keepalive_seconds=keepalive, on_first_token=first_token, tally=tally
        )

        async def storing_events() -> AsyncIterator[bytes]:
            # The complete stream is stored before its last event goes out, so a client that
            # retries the moment it sees [DONE] already gets the replay rather than 409.
            nonlocal stored
            try:
                async for data in events:
                    if tally.final is not None and not stored:
                        stored = True
                        await store(StoredResponse(200, events=tuple(tally.events)))
                    yield data
            finally:
                await events.aclose()

        return SSEResponse(storing_events(), on_close=closed, headers=headers)

    return router
