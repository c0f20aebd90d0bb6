"""The chat pipeline: input guardrails, optional retrieval, then generation."""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2
from llmsuite.guardrails.v1 import guardrails_pb2
from llmsuite.retrieval.v1 import retrieval_pb2
from llmsuite_common.grpc_client import call_metadata
from llmsuite_common.request_context import request_id_var

from .auth import Identity
from .clients import BackendClients
from .completions import SSE_KEEPALIVE, ChunkEncoder, citations
from .deadline import Deadline
from .errors import ApiError, from_grpc
from .generation_reader import GenerationReader
from .prompt import last_user_text, with_context
from .schemas import ChatCompletionRequest

log = logging.getLogger(__name__)

# Some OpenAI-compatible servers reject the newer "developer" role; it means the same as "system".
_ROLES = {"developer": "system"}


def incomplete_stream() -> ApiError:
    return ApiError(502, "the generation stream ended without a final message", code="upstream_error")


@dataclass(frozen=True)
class PreparedChat:
    request: generation_pb2.GenerateRequest
    citations: list[dict[str, Any]] | None


def to_messages(body: ChatCompletionRequest) -> list[common_pb2.ChatMessage]:
    return [
        common_pb2.ChatMessage(role=_ROLES.get(m.role, m.role), content=m.content or "", name=m.name or "")
        for m in body.messages
    ]


def generate_request(
    body: ChatCompletionRequest,
    model: str,
    context: common_pb2.RequestContext,
    messages: list[common_pb2.ChatMessage],
) -> generation_pb2.GenerateRequest:
    request = generation_pb2.GenerateRequest(
        context=context, model=model, messages=messages, stop=body.stop or []
    )
    if body.token_limit is not None:
        request.max_tokens = body.token_limit
    if body.temperature is not None:
        request.temperature = body.temperature
    if body.top_p is not None:
        request.top_p = body.top_p
    if body.seed is not None:
        request.seed = body.seed
    return request


class ChatPipeline:
    def __init__(self, clients: BackendClients, *, default_model: str) -> None:
        self._clients = clients
        self._default_model = default_model

    def model_for(self, body: ChatCompletionRequest) -> str:
        model = body.model or self._default_model
        if not model:
            raise ApiError(400, "you must provide a model parameter", code="missing_model", param="model")
        return model

    async def prepare(
        self, body: ChatCompletionRequest, identity: Identity, deadline: Deadline
    ) -> PreparedChat:
        model = self.model_for(body)
        context = common_pb2.RequestContext(
            request_id=request_id_var.get(),
            org_id=identity.org_id,
            user_id=body.user or "",
            key_id=identity.key_id,
        )
        messages = to_messages(body)
        await self._check_input(context, messages, deadline)
        cited = None
        if body.retrieval is not None:
            chunks = await self._search(context, body, messages, deadline)
            messages = with_context(messages, chunks)
            cited = citations(chunks)
        return PreparedChat(generate_request(body, model, context, messages), cited)

    async def _check_input(
        self, context: common_pb2.RequestContext, messages: list[common_pb2.ChatMessage], deadline: Deadline
    ) -> None:
        try:
            reply = await self._clients.guardrails.CheckInput(
                guardrails_pb2.CheckInputRequest(context=context, messages=messages),
                timeout=deadline.remaining(),
                metadata=call_metadata(),
            )
        except grpc.aio.AioRpcError as err:
            raise from_grpc(err, "guardrails") from None
        if reply.verdict == guardrails_pb2.VERDICT_ALLOW:
            return
        if reply.verdict == guardrails_pb2.VERDICT_BLOCK:
            reasons = "; ".join(r.message for r in reply.reasons if r.message) or "the input was blocked"
            raise ApiError(400, f"content policy violation: {reasons}", code="content_policy_violation")
        # Fail closed: a guardrails reply without a verdict is a bug, not a pass.
        log.error("guardrails returned no verdict", extra={"verdict": reply.verdict})
        raise ApiError(500, "internal error", code="internal_error")

    async def _search(
        self,
        context: common_pb2.RequestContext,
        body: ChatCompletionRequest,
        messages: list[common_pb2.ChatMessage],
        deadline: Deadline,
    ) -> list[retrieval_pb2.Chunk]:
        assert body.retrieval is not None
        query = last_user_text(messages)
        if query is None:
            raise ApiError(400, "retrieval needs a non-empty user message to search with", param="messages")
        try:
            reply = await self._clients.retrieval.Search(
                retrieval_pb2.SearchRequest(
                    context=context,
                    collection=body.retrieval.collection,
                    query=query,
                    k=body.retrieval.k or 0,
                ),
                timeout=deadline.remaining(),
                metadata=call_metadata(),
            )
        except grpc.aio.AioRpcError as err:
            raise from_grpc(err, "retrieval") from None
        return list(reply.chunks)

    def generate(self, prepared: PreparedChat, deadline: Deadline) -> GenerationReader:
        call = self._clients.generation.Generate(
            prepared.request, timeout=deadline.remaining(), metadata=call_metadata()
        )
        return GenerationReader(call)

    async def list_models(self, deadline: Deadline) -> list[generation_pb2.Model]:
        try:
            reply = await self._clients.generation.ListModels(
                generation_pb2.ListModelsRequest(), timeout=deadline.remaining(), metadata=call_metadata()
            )
        except grpc.aio.AioRpcError as err:
            raise from_grpc(err, "generation") from None
        return list(reply.models)


async def collect(
    reader: GenerationReader, on_first_token: Callable[[], None]
) -> tuple[str, generation_pb2.Final]:
    """Aggregates a whole Generate stream for a non-streaming response."""
    parts: list[str] = []
    try:
        while (event := await reader.next()) is not None:
            kind = event.WhichOneof("event")
            if kind == "delta":
                if not parts:
                    on_first_token()
                parts.append(event.delta.content)
            elif kind == "final":
                await reader.finish()
                return "".join(parts), event.final
    except grpc.aio.AioRpcError as err:
        raise from_grpc(err, "generation") from None
    raise incomplete_stream()


async def sse_events(
    reader: GenerationReader,
    encoder: ChunkEncoder,
    *,
    keepalive_seconds: float,
    on_first_token: Callable[[], None],
) -> AsyncIterator[bytes]:
    """One SSE event per generation delta; keep-alive comments until the first one arrives.

    The keep-alive loop is bounded by the Generate call's deadline, which fails the pending read.
    """
    try:
        while not (await _finished_within(reader, keepalive_seconds)):
            yield SSE_KEEPALIVE
        first = True
        while (event := await reader.next()) is not None:
            kind = event.WhichOneof("event")
            if kind == "delta":
                if first:
                    on_first_token()
                    first = False
                yield encoder.delta(event.delta.content)
            elif kind == "final":
                yield encoder.finish(event.final)
                await reader.finish()
                return
        yield encoder.error(incomplete_stream())
    except grpc.aio.AioRpcError as err:
        yield encoder.error(from_grpc(err, "generation"))
    except ApiError as err:
        yield encoder.error(err)
    except Exception:  # noqa: BLE001 - headers are sent; the failure must still reach the client
        log.exception("stream failed")
        yield encoder.error(ApiError(500, "internal error", code="internal_error"))


async def _finished_within(reader: GenerationReader, seconds: float) -> bool:
    done, _ = await asyncio.wait({reader.pending_read()}, timeout=seconds)
    return bool(done)
