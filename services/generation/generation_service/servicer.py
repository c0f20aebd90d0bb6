import logging
import time
from contextlib import aclosing

import grpc
from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2, generation_pb2_grpc
from llmsuite_common.call_auth import tenant_of
from opentelemetry import trace

from .accounting import Accounting
from .metrics import GenerationMetrics
from .output_limits import OutputLimits
from .pool import Committed, UpstreamPool
from .routing import RouteRequest
from .routing_source import RoutingSource
from .tool_calls import ToolCallAssembler
from .upstream import ContentDelta, StreamDone, ToolCallsDelta
from .upstream_request import build_body
from .usage import approx_tokens, count, estimate_prompt_tokens

log = logging.getLogger(__name__)

OWNED_BY = "llmsuite"


def _tool_calls(event: ToolCallsDelta) -> list[generation_pb2.ToolCallDelta]:
    return [
        generation_pb2.ToolCallDelta(index=c.index, id=c.id, type=c.type, name=c.name, arguments=c.arguments)
        for c in event.calls
    ]


def _batch(deltas: list[generation_pb2.GenerateResponse]) -> generation_pb2.GenerateResponse:
    """Deltas that were ready together, as one message (one gRPC write instead of one each)."""
    if len(deltas) == 1:
        return deltas[0]
    response = generation_pb2.GenerateResponse()
    response.deltas.deltas.extend(d.delta for d in deltas)
    return response


def _delta(content: str, role: str) -> generation_pb2.GenerateResponse:
    # Filled in place: a third of the cost of building the Delta and copying it in.
    response = generation_pb2.GenerateResponse()
    delta = response.delta
    delta.content = content
    if role:
        delta.role = role
    return response


def _completion_tokens(usage: dict | None) -> int | None:
    return count(usage.get("completion_tokens")) if usage else None


class GenerationServicer(generation_pb2_grpc.GenerationServiceServicer):
    def __init__(self, routing: RoutingSource, pool: UpstreamPool, metrics: GenerationMetrics) -> None:
        self._routing = routing
        self._pool = pool
        self._metrics = metrics

    async def Generate(self, request: generation_pb2.GenerateRequest, context: grpc.aio.ServicerContext):  # type: ignore[override]
        started = time.perf_counter()
        table = self._routing.table
        org_id = tenant_of(request.context)
        prompt_estimate = estimate_prompt_tokens(m.content for m in request.messages)
        route = table.resolve(
            RouteRequest(
                model=request.model,
                org_id=org_id,
                prompt_tokens=prompt_estimate,
                max_tokens=request.max_tokens if request.HasField("max_tokens") else None,
                has_tools=bool(request.tools_json),
            )
        )
        org_cap = table.org_max_tokens(org_id)
        # Bad input fails here, before any upstream is chosen or tried.
        build_body(request, route, route.deployments[0].upstream_model, org_max_tokens=org_cap)

        def body_for(r, d):
            return build_body(request, r, d.upstream_model, org_max_tokens=org_cap)

        account = Accounting(
            request.model,
            (m.content for m in request.messages),
            trace.get_current_span(),
            self._metrics,
            org=org_id,
            started=started,
        )
        limits = OutputLimits((), None)
        tool_calls = ToolCallAssembler()
        whole = request.whole_answer
        role = ""
        early_finish = ""
        first_token_seen = False
        # A whole answer: its text and tool calls, sent as one Delta once the upstream's answer is in.
        parts: list[str] = []
        whole_calls: list[generation_pb2.ToolCallDelta] = []
        arrived = 0.0
        # Deltas parsed from one upstream read, sent together once the read's last one is in.
        ready: list[generation_pb2.GenerateResponse] = []
        stream = self._pool.stream(
            table.chain(route), body_for, model=request.model, remaining=context.time_remaining
        )
        try:
            # aclosing: however this ends (cancel, deadline, error, early stop), the
            # upstream response is closed now rather than when the garbage collector gets to it.
            async with aclosing(stream) as events:
                async for event in events:
                    if isinstance(event, ContentDelta):
                        role = role or event.role
                        arrived = account.content_delta()
                        if whole:
                            parts.append(event.content)
                            continue
                        emit = limits.feed(event.content)
                        account.content_chunks = limits.chunks
                        if emit.text:
                            if not first_token_seen:
                                first_token_seen = True
                                account.first_token(arrived)
                            ready.append(_delta(emit.text, role))
                            role = ""
                        if emit.finish:
                            early_finish = emit.finish
                            break
                        if ready and not event.more:
                            yield _batch(ready)
                            ready = []
                        continue
                    if ready:
                        # Anything else goes out after the deltas before it.
                        yield _batch(ready)
                        ready = []
                    if isinstance(event, Committed):
                        account.committed = event
                        limits = OutputLimits(event.body.get("stop", ()), event.body.get("max_tokens"))
                    elif isinstance(event, ToolCallsDelta):
                        first_token_seen = True
                        account.first_token()
                        tool_calls.add(event)
                        if whole:
                            role = role or event.role
                            whole_calls.extend(_tool_calls(event))
                            account.tool_chunks += sum(
                                approx_tokens(c.name + c.arguments) for c in event.calls
                            )
                            continue
                        account.tool_chunks += 1
                        yield generation_pb2.GenerateResponse(
                            delta=generation_pb2.Delta(role=role or event.role, tool_calls=_tool_calls(event))
                        )
                        role = ""
                    elif isinstance(event, StreamDone):
                        finish_reason = event.finish_reason
                        if whole:
                            text = "".join(parts)
                            tokens = _completion_tokens(event.usage)
                            if tokens is None:
                                # Estimated (as a prompt is) where a stream would count its chunks.
                                tokens = approx_tokens(text) if text else 0
                            account.content_chunks = tokens
                            emit = limits.whole(text, tokens)
                            if emit.text or whole_calls:
                                if emit.text:
                                    account.first_token(arrived)
                                yield generation_pb2.GenerateResponse(
                                    delta=generation_pb2.Delta(
                                        content=emit.text, role=role, tool_calls=whole_calls
                                    )
                                )
                            # Everything was generated (and is billed), even past a cut.
                            finish_reason = emit.finish or finish_reason
                        else:
                            held = limits.flush()
                            if held:
                                yield generation_pb2.GenerateResponse(
                                    delta=generation_pb2.Delta(content=held, role=role)
                                )
                        account.finish(finish_reason, event.usage, event.upstream_id)
                        yield self._final(account, tool_calls)
            if ready:
                yield _batch(ready)
                ready = []
            if early_finish:
                # The upstream went past a stop sequence or the token cap; it is closed now.
                account.finish(early_finish, None, "")
                yield self._final(account, tool_calls)
        except BaseException as exc:
            account.fail(exc)
            raise
        finally:
            account.close()

    async def Complete(
        self, request: generation_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.CompleteResponse:
        """Generate's whole answer as one reply: a unary call costs less than a two-message stream."""
        request.whole_answer = True
        reply = generation_pb2.CompleteResponse()
        async with aclosing(self.Generate(request, context)) as events:
            async for event in events:
                kind = event.WhichOneof("event")
                if kind == "delta":
                    reply.delta.CopyFrom(event.delta)
                elif kind == "final":
                    reply.final.CopyFrom(event.final)
        return reply

    @staticmethod
    def _final(account: Accounting, tool_calls: ToolCallAssembler) -> generation_pb2.GenerateResponse:
        usage, committed = account.usage, account.committed
        return generation_pb2.GenerateResponse(
            final=generation_pb2.Final(
                finish_reason=account.finish_reason,
                usage=common_pb2.Usage(
                    prompt_tokens=usage.prompt_tokens,
                    completion_tokens=usage.completion_tokens,
                    total_tokens=usage.total_tokens,
                    cached_tokens=usage.cached_tokens,
                ),
                upstream_id=account.upstream_id,
                model=committed.route.model if committed else "",
                deployment=committed.deployment.name if committed else "",
                attempts=committed.attempts if committed else 0,
                cost_usd=account.cost_usd,
                tool_calls=tool_calls.calls(),
            )
        )

    async def ListModels(
        self, request: generation_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.ListModelsResponse:
        return generation_pb2.ListModelsResponse(
            models=[
                generation_pb2.Model(id=name, owned_by=OWNED_BY)
                for name in self._routing.table.public_names()
            ]
        )
