"""The chat pipeline: input guardrails, optional retrieval, then generation."""

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import orjson
from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2
from llmsuite.retrieval.v1 import retrieval_pb2
from llmsuite_common.request_context import request_id_var
from llmsuite_common.rules.metrics import RuleMetrics
from llmsuite_common.rules.output_scan import OutputScanner

from ..api.completions import citations
from ..api.errors import ApiError, from_grpc
from ..api.schemas import ChatCompletionRequest
from ..edge.auth import Identity
from .backend_call import backend_call
from .clients import BackendClients
from .deadline import Deadline
from .generation_reader import CompletedReader, GenerationReader, incomplete_stream
from .guardrails_calls import check_context, check_input
from .output_rail import GuardedReader, OutputPolicies
from .prompt import last_user_text, with_context
from .structured_output import (
    StructuredReader,
    StructuredSpec,
    check_schema,
    requested_schema,
    structured_spec,
)
from .tool_calls import generate_fields, message_fields

log = logging.getLogger(__name__)

# Some OpenAI-compatible servers reject the newer "developer" role; it means the same as "system".
_ROLES = {"developer": "system"}


@dataclass(frozen=True)
class PreparedChat:
    request: generation_pb2.GenerateRequest
    citations: list[dict[str, Any]] | None
    # The organization's output rules, which every generated text passes before the client sees it.
    output: OutputScanner
    structured: StructuredSpec | None = None


@dataclass(frozen=True)
class Screened:
    """A request past its input check and its search: what its answer depends on beyond the body."""

    context: common_pb2.RequestContext
    # The messages to send on (redacted where guardrails redacted them).
    messages: list[common_pb2.ChatMessage]
    # The guardrails policy that passed the input.
    policy_version: str
    # Retrieved chunks, not yet checked as context; None without retrieval.
    chunks: list[retrieval_pb2.Chunk] | None = None
    collection_version: str = ""


def to_messages(body: ChatCompletionRequest) -> list[common_pb2.ChatMessage]:
    return [
        common_pb2.ChatMessage(
            role=_ROLES.get(m.role, m.role),
            content=m.content or "",
            name=m.name or "",
            images=[common_pb2.ImageUrl(url=i.url, detail=i.detail or "") for i in m.images],
            **message_fields(m),
        )
        for m in body.messages
    ]


def generate_request(
    body: ChatCompletionRequest,
    model: str,
    context: common_pb2.RequestContext,
    messages: list[common_pb2.ChatMessage],
) -> generation_pb2.GenerateRequest:
    request = generation_pb2.GenerateRequest(
        context=context, model=model, messages=messages, stop=body.stop or [], **generate_fields(body)
    )
    if body.token_limit is not None:
        request.max_tokens = body.token_limit
    if body.temperature is not None:
        request.temperature = body.temperature
    if body.top_p is not None:
        request.top_p = body.top_p
    if body.seed is not None:
        request.seed = body.seed
    if body.presence_penalty is not None:
        request.presence_penalty = body.presence_penalty
    if body.frequency_penalty is not None:
        request.frequency_penalty = body.frequency_penalty
    if body.logit_bias is not None:
        request.logit_bias_json = orjson.dumps(body.logit_bias).decode()
    if body.parallel_tool_calls is not None:
        request.parallel_tool_calls = body.parallel_tool_calls
    return request


class ChatPipeline:
    def __init__(
        self, clients: BackendClients, *, default_model: str, rule_metrics: RuleMetrics | None = None
    ) -> None:
        self._clients = clients
        self._default_model = default_model
        self._rule_metrics = rule_metrics
        self._output_policies = OutputPolicies(clients)

    def model_for(self, body: ChatCompletionRequest) -> str:
        model = body.model or self._default_model
        if not model:
            raise ApiError(400, "you must provide a model parameter", code="missing_model", param="model")
        return model

    async def screen(self, body: ChatCompletionRequest, identity: Identity, deadline: Deadline) -> Screened:
        """The input check and the search: what the result cache needs to know before a lookup."""
        context = common_pb2.RequestContext(
            request_id=request_id_var.get(),
            org_id=identity.org_id,
            user_id=body.user or "",
            key_id=identity.key_id,
        )
        checked = check_input(self._clients.guardrails, context, to_messages(body), deadline)
        schema = requested_schema(body.response_format)
        if schema is None:
            messages, policy_version = await checked
        else:
            # Side by side: the schema check adds a call, not a wait.
            (messages, policy_version), _ = await asyncio.gather(
                checked, check_schema(self._clients.guardrails, context, schema, deadline)
            )
        if body.retrieval is None:
            return Screened(context, messages, policy_version)
        chunks, collection_version = await self._search(context, body, messages, deadline)
        return Screened(context, messages, policy_version, chunks, collection_version)

    async def prepare(
        self,
        body: ChatCompletionRequest,
        identity: Identity,
        deadline: Deadline,
        *,
        streamed: bool | None = None,
        screened: Screened | None = None,
    ) -> PreparedChat:
        """`streamed` overrides body.stream for transports that always stream (WebSocket)."""
        model = self.model_for(body)
        screened = screened or await self.screen(body, identity, deadline)
        context, messages = screened.context, screened.messages
        output = await self._output_policies.scanner(context, screened.policy_version, deadline)
        cited = None
        if screened.chunks is not None:
            chunks = await check_context(self._clients.guardrails, context, screened.chunks, deadline)
            messages = with_context(messages, chunks)
            cited = citations(chunks)
        request = generate_request(body, model, context, messages)
        # A client that waits for the whole answer gets it in one message from generation.
        request.whole_answer = not (body.stream if streamed is None else streamed)
        return PreparedChat(request, cited, output, structured_spec(body.stream, body.response_format))

    async def _search(
        self,
        context: common_pb2.RequestContext,
        body: ChatCompletionRequest,
        messages: list[common_pb2.ChatMessage],
        deadline: Deadline,
    ) -> tuple[list[retrieval_pb2.Chunk], str]:
        """The chunks found, and the version of the collection they were found in."""
        assert body.retrieval is not None
        query = last_user_text(messages)
        if query is None:
            raise ApiError(400, "retrieval needs a non-empty user message to search with", param="messages")
        search = retrieval_pb2.SearchRequest(
            context=context, collection=body.retrieval.collection, query=query, k=body.retrieval.k or 0
        )
        reply = await backend_call(self._clients.retrieval.Search, search, deadline, "retrieval")
        return list(reply.chunks), reply.collection_version

    def generate(self, prepared: PreparedChat, deadline: Deadline) -> GenerationReader:
        if prepared.structured is not None:
            return StructuredReader(
                lambda request: self._generate(request, prepared.output, deadline),
                prepared.request,
                prepared.structured,
                self._clients.guardrails,
                deadline,
            )
        return self._generate(prepared.request, prepared.output, deadline)

    def _generate(
        self, request: generation_pb2.GenerateRequest, output: OutputScanner, deadline: Deadline
    ) -> GenerationReader:
        """Every generation goes through the output rail."""
        if request.whole_answer:
            # One unary call: the answer and its Final in one reply.
            completed = self._clients.generation.Complete(request, timeout=deadline.remaining())
            return GuardedReader(CompletedReader(completed), output, self._rule_metrics)
        call = self._clients.generation.Generate(request, timeout=deadline.remaining())
        return GuardedReader(GenerationReader(call), output, self._rule_metrics)

    async def list_models(self, deadline: Deadline) -> list[generation_pb2.Model]:
        request = generation_pb2.ListModelsRequest()
        reply = await backend_call(self._clients.generation.ListModels, request, deadline, "generation")
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


@dataclass
class StreamTally:
    """What a stream delivered: deltas sent, the final message, and its chunk payloads for replay."""

    deltas: int = 0
    final: generation_pb2.Final | None = None
    payloads: list[bytes] = field(default_factory=list)
    # The text delivered, for the request log.
    parts: list[str] = field(default_factory=list)
    # The error that ended the stream after it started (its payload was the last one sent).
    error: ApiError | None = None


class PayloadEncoder(Protocol):
    """What turns generation events into one API's stream payloads (chat.completion.chunk objects:
    api/completions.py's ChunkEncoder; other APIs' events: api/doors/)."""

    def delta(self, content: str, tool_calls: Sequence[generation_pb2.ToolCallDelta] = ()) -> bytes: ...

    def finish(self, final: generation_pb2.Final) -> list[bytes]: ...

    def error(self, err: ApiError) -> bytes: ...


async def chunk_batches(
    reader: GenerationReader,
    encoder: PayloadEncoder,
    *,
    keepalive_seconds: float,
    on_first_token: Callable[[], None],
    tally: StreamTally,
) -> AsyncGenerator[list[bytes]]:
    """The chunk payloads of a stream, one list per generation message; an empty list for each
    keep-alive interval that passes before the first message. After the final message or an error
    payload (tally.final, tally.error), nothing follows.

    Events already released together (a batch from generation, held text let go at once) come in one
    list, for one write. The keep-alive loop is bounded by the Generate call's deadline, which fails
    the pending read.
    """
    try:
        while not (await _finished_within(reader, keepalive_seconds)):
            yield []
        first = True
        while (event := await reader.next()) is not None:
            out: list[bytes] = []
            while event is not None:
                kind = event.WhichOneof("event")
                if kind == "delta":
                    if first:
                        on_first_token()
                        first = False
                    data = encoder.delta(event.delta.content, event.delta.tool_calls)
                    tally.deltas += 1
                    tally.parts.append(event.delta.content)
                    tally.payloads.append(data)
                    out.append(data)
                elif kind == "final":
                    last = encoder.finish(event.final)
                    tally.payloads.extend(last)
                    tally.final = event.final
                    # The call ends right after Final; read that end first, so the stream's last
                    # events and the end of the response body go out together. Awaited after them,
                    # it left a client that closes on [DONE] a moment to be seen as leaving:
                    # the response was cancelled and the connection dropped instead of reused.
                    await reader.finish()
                    yield out + last
                    return
                event = reader.ready()
            if out:
                yield out
        error = incomplete_stream()
    except grpc.aio.AioRpcError as err:
        error = from_grpc(err, "generation")
    except ApiError as err:
        error = err
    except Exception:  # noqa: BLE001 - headers are sent; the failure must still reach the client
        log.exception("stream failed")
        error = ApiError(500, "internal error", code="internal_error")
    tally.error = error
    yield [encoder.error(error)]


async def _finished_within(reader: GenerationReader, seconds: float) -> bool:
    done, _ = await asyncio.wait({reader.pending_read()}, timeout=seconds)
    return bool(done)
