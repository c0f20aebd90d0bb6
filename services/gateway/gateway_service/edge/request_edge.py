"""One chat request's way through the edge: admitted on entry, settled on exit.

    async with edge.admit(EdgeRequest(...)) as admitted:
        ...  # the pipeline's work; the route tells `admitted` what came of it

Entry, in order: the key's own checks (models, max_tokens), the request log's capacity, the spend
budget, the limiter (a token reservation, and a lease for a stream), then the Idempotency-Key: its
claim, or the stored response to replay (`admitted.replay`). Once the input passed its check,
`admitted.cached(screened)` looks the answer up in the result cache.

Exit: a whole answer (`admitted.answered`) is recorded (usage row and request log) and stored
(result cache, idempotency) and the limiter is reconciled with its tokens, off the response path. A
request that failed is logged with its error and frees its idempotency key. A stream
(`admitted.stream`) settles when it closes instead, however long after the route returned: it is
stored before its last event goes out (`complete`), and recorded, reconciled and, if it was not
stored, its key freed on `close`. A stream closed before its final message was cancelled by its
client, unless an error event ended it.
"""

from dataclasses import dataclass
from types import TracebackType
from typing import Any

from llmsuite.generation.v1 import generation_pb2
from llmsuite_common.request_context import request_id_var
from prometheus_client import Gauge
from starlette.responses import Response

from ..api import server_timing
from ..api.errors import CANCELLED, note_error_class
from ..api.schemas import ChatCompletionRequest
from ..pipeline.chat import Screened, StreamTally
from ..pipeline.deadline import Deadline
from . import idempotency as idem
from . import result_cache
from .admission import EdgeChecks
from .auth import Identity
from .idempotency import Claim, Idempotency
from .limits import Admission, Limiter
from .request_log import CHAT_ROUTE, logged
from .result_cache import ResultCache
from .stored_response import StoredResponse
from .tokens import prompt_estimate, reservation
from .usage import UsageRecorder


@dataclass(frozen=True)
class EdgeRequest:
    """A chat request as the edge sees it."""

    identity: Identity
    body: ChatCompletionRequest
    # The model it resolved to (the body's, or the default).
    model: str
    client_ip: str | None
    deadline: Deadline
    # A stream holds one of the key's concurrent stream leases until it closes.
    stream: bool
    idempotency_key: str | None = None
    # The route its request-log row names.
    route: str = CHAT_ROUTE
    # Whether a request that fails before its answer leaves a request-log row (the WebSocket route
    # logs only the streams it started).
    log_failures: bool = True
    # The request as the client's API spelled it, when a door translated it into `body` (e.g. the
    # Responses API): what an Idempotency-Key compares, and part of the result cache's key, so a
    # stored answer is only ever given back through the API that produced it.
    original: dict[str, Any] | None = None

    def door(self) -> dict[str, Any] | None:
        """The route and the client's own request, for a translated request; None for chat."""
        if self.original is None:
            return None
        return {"route": self.route, "request": self.original}


@dataclass(frozen=True)
class RequestEdge:
    """What sits between the client and the pipeline: limits, budget, idempotency, the result cache,
    usage and the request log."""

    limiter: Limiter
    idempotency: Idempotency
    cache: ResultCache
    checks: EdgeChecks
    usage: UsageRecorder
    streams_in_flight: Gauge
    # Reserved against tokens per minute for a request that sets no max_tokens.
    reserved_completion_tokens: int

    def admit(self, request: EdgeRequest) -> "Admitted":
        return Admitted(self, request)


def stream_usage(body: ChatCompletionRequest, tally: StreamTally) -> tuple[int, int]:
    """(prompt, completion) tokens of a stream: as reported, or for a cancelled or usage-less stream,
    the prompt estimate and one token per delta sent."""
    if tally.final is not None and (tally.final.usage.prompt_tokens or tally.final.usage.completion_tokens):
        return tally.final.usage.prompt_tokens, tally.final.usage.completion_tokens
    return prompt_estimate(body), tally.deltas


class Admitted:
    """One request, from its admission (entering `async with`) to its settlement (leaving it, or for
    a stream, closing it)."""

    def __init__(self, edge: RequestEdge, request: EdgeRequest) -> None:
        self._edge = edge
        self.request = request
        self.request_id = request_id_var.get()
        # The response's headers: RateLimit-* of the admission, x-cache of the lookup.
        self.headers: dict[str, str] = {}
        # An earlier request's stored response to this Idempotency-Key, to answer as it is.
        self.replay: Response | None = None
        # What the limiter reconciles the reservation with: nothing until generation starts, then the
        # prompt estimate, then what the answer used.
        self.tokens_used = 0
        # For the request log (request_log.logged).
        self.ttft_seconds: float | None = None
        self.finish_reason = ""
        self.answer = ""
        # What a request with the `retrieval` extension cited; None without retrieval.
        self.citations: list[dict[str, Any]] | None = None
        self._admission = Admission(None, [], "")
        self._claim: Claim | None = None
        self._cache_key: str | None = None
        self._answer_tokens = (0, 0)
        self._answer_body: bytes | None = None
        # Whether the answer went out as a stream, which settles itself. A flag, not the
        # AdmittedStream: that refers back to this object, and the pair would be a cycle holding
        # the whole request until a full garbage collection.
        self._streamed = False

    async def __aenter__(self) -> "Admitted":
        edge, request = self._edge, self.request
        edge.checks.check(request.identity, request.body, request.model)
        edge.usage.check_capacity()
        with server_timing.hop("limits"):
            end_user = request.body.user
            await edge.usage.check_budget(request.identity, request.client_ip, end_user=end_user)
            self._admission = await edge.limiter.admit(
                request.identity,
                request.client_ip,
                tokens=reservation(request.body, edge.reserved_completion_tokens),
                stream=request.stream,
                end_user=end_user,
            )
        self.headers = dict(self._admission.headers)
        if request.idempotency_key is not None:
            try:
                await self._claim_or_replay(request.idempotency_key)
            except BaseException as err:
                await self._settle(err)
                raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._streamed:
            await self._settle(exc)

    async def _claim_or_replay(self, key: str) -> None:
        request = self.request
        fingerprint = request.door() or request.body.model_dump(mode="json", exclude_unset=True)
        outcome = await self._edge.idempotency.claim(
            request.identity.org_id, key, idem.body_fingerprint(fingerprint)
        )
        if isinstance(outcome, StoredResponse):
            self.replay = outcome.response({**self.headers, idem.REPLAYED_HEADER: "true"})
        else:
            self._claim = outcome

    async def cached(self, screened: Screened) -> Response | None:
        """The result cache's answer to the same request (a hit settles the idempotency claim with it),
        or None; a miss's answer is stored when it is complete. Only after the input check: the
        entry's key holds the guardrails policy that passed the input and the collection searched."""
        identity, body = self.request.identity, self.request.body
        if not identity.policy.cache_ttl_seconds or not result_cache.cacheable(body):
            return None
        key = result_cache.cache_key(
            identity.org_id,
            self.request.model,
            body,
            policy_version=screened.policy_version,
            collection_version=screened.collection_version,
            door=self.request.door(),
        )
        if key is None:
            return None
        hit = await self._edge.cache.get(key, org_id=identity.org_id, key_id=identity.key_id)
        if hit is not None:
            if self._claim is not None:
                await self._edge.idempotency.complete(self._claim, hit)
                self._claim = None
            return hit.response({**self.headers, result_cache.HEADER: "hit"})
        self._cache_key = key
        self.headers[result_cache.HEADER] = "miss"
        return None

    def generating(self) -> None:
        """Generation started: from here the prompt counts against the key's tokens."""
        self.tokens_used = prompt_estimate(self.request.body)

    def answered(self, final: generation_pb2.Final, content: str, response_body: bytes) -> None:
        """A whole answer, sent as `response_body`: recorded and stored on exit."""
        prompt, completion = final.usage.prompt_tokens, final.usage.completion_tokens
        self.tokens_used = prompt + completion
        self._answer_tokens = (prompt, completion)
        self.finish_reason, self.answer = final.finish_reason, content
        self._answer_body = response_body

    def stream(self, tally: StreamTally) -> "AdmittedStream":
        """The answer goes out as a stream, which settles when it closes rather than on exit."""
        self._streamed = True
        return AdmittedStream(self, tally)

    async def _settle(self, error: BaseException | None) -> None:
        edge, request = self._edge, self.request
        try:
            if error is None and self._answer_body is not None:
                await self._settle_answer(self._answer_body)
            else:
                # Failed, cancelled, or nothing generated (a replay, a cache hit, a client gone).
                if self._claim is not None:
                    await edge.idempotency.release(self._claim)
                if isinstance(error, Exception) and request.log_failures:
                    edge.usage.record_failure(
                        request.identity,
                        request.model,
                        self.request_id,
                        request.body,
                        request.deadline,
                        error,
                    )
        finally:
            # Reconciled off the response path.
            edge.limiter.run_later(self._admission.finish(self.tokens_used))

    async def _settle_answer(self, response_body: bytes) -> None:
        request = self.request
        prompt, completion = self._answer_tokens
        self._edge.usage.record(
            request.identity,
            request.model,
            prompt,
            completion,
            self.request_id,
            **logged(request.body, request.deadline, state=self, route=request.route),
        )
        await self._store(StoredResponse(200, body=response_body))

    async def _store(self, stored: StoredResponse) -> None:
        if self._cache_key is not None:
            await self._edge.cache.put(
                self._cache_key, stored, self.request.identity.policy.cache_ttl_seconds
            )
        if self._claim is not None:
            await self._edge.idempotency.complete(self._claim, stored)


class AdmittedStream:
    """A streamed answer: kept for replay once complete, settled once closed."""

    def __init__(self, admitted: Admitted, tally: StreamTally) -> None:
        self._admitted = admitted
        self._tally = tally
        self._stored = False
        self._closed = False
        admitted._edge.streams_in_flight.inc()

    async def complete(self, events: tuple[bytes, ...]) -> None:
        """Keeps the complete stream (its events as a replay sends them) for the result cache and the
        idempotency key. Called before its last event goes out, so a client that retries the moment
        it sees the end already gets the replay rather than 409."""
        self._stored = True
        await self._admitted._store(StoredResponse(200, events=events))

    def close(self) -> None:
        """However the stream ended; its usage and limits are settled off the response path."""
        if self._closed:
            return
        self._closed = True
        if self._tally.final is None:
            # Ended before its final message: a client that left, unless an error event ended it
            # (that error was noted first and stands).
            note_error_class(CANCELLED)
        edge = self._admitted._edge
        edge.streams_in_flight.dec()
        edge.limiter.run_later(self._settle())

    async def _settle(self) -> None:
        admitted, tally = self._admitted, self._tally
        edge, request = admitted._edge, admitted.request
        prompt, completion = stream_usage(request.body, tally)
        edge.usage.record(
            request.identity,
            request.model,
            prompt,
            completion,
            admitted.request_id,
            cancelled=tally.final is None,
            **logged(request.body, request.deadline, state=admitted, tally=tally, route=request.route),
        )
        await admitted._admission.finish(prompt + completion)
        if not self._stored and admitted._claim is not None:
            await edge.idempotency.release(admitted._claim)
