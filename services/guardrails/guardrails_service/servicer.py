import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from llmsuite.guardrails.v1 import guardrails_pb2, guardrails_pb2_grpc
from llmsuite_common.call_auth import tenant_of
from llmsuite_common.errors import InvalidArgument
from llmsuite_common.rules.findings import CheckRun, Finding
from llmsuite_common.rules.output_rail import OutputRail, Step
from llmsuite_common.rules.output_report import report_block, report_done
from llmsuite_common.rules.policy import InjectionCheck
from llmsuite_common.rules.verdict_events import add_verdict_event
from opentelemetry import trace

from .classifier import ClassifierUnavailable, HttpClassifier
from .engine import ChunkResult, classifier_finding
from .metrics import GuardrailsMetrics
from .policy_store import PolicyStore
from .structured import InvalidSchema, SchemaLimits, check_off_loop, compile_off_loop

_END = object()


async def _read_all(requests: AsyncIterator[object], inbox: "asyncio.Queue[object]") -> None:
    try:
        async for item in requests:
            await inbox.put(item)
    except Exception as exc:  # noqa: BLE001 - e.g. a message that did not parse
        # Handed to the call's own task, which raises it: the caller gets its status, not a
        # stream that seems to have ended normally.
        await inbox.put(exc)
    finally:
        await inbox.put(_END)


def reason(f: Finding) -> guardrails_pb2.Reason:
    return guardrails_pb2.Reason(
        code=f.code, message=f.message, check=f.check, action=f.action, score=f.score, count=f.count
    )


def timing(run: CheckRun) -> guardrails_pb2.CheckTiming:
    return guardrails_pb2.CheckTiming(
        check=run.check,
        elapsed_us=run.elapsed_us,
        fired=run.fired,
        over_budget=run.over_budget,
        failed=run.failed,
    )


class GuardrailsServicer(guardrails_pb2_grpc.GuardrailsServiceServicer):
    def __init__(
        self,
        policies: PolicyStore,
        metrics: GuardrailsMetrics,
        schema_limits: SchemaLimits = SchemaLimits(),
        classifier: HttpClassifier | None = None,
    ) -> None:
        self._policies = policies
        self._metrics = metrics
        self._schema_limits = schema_limits
        self._classifier = classifier or HttpClassifier()

    async def _settle(self, findings: list[Finding], text: str, cfg: InjectionCheck, subject: str) -> None:
        """Replaces an inconclusive injection finding by the model classifier's verdict, when it
        answers within the budget; otherwise the warning stands."""
        for i, f in enumerate(findings):
            if f.check != "injection" or f.action != "warn":
                continue
            try:
                p = await self._classifier.score(cfg.classifier.url, text, cfg.classifier.budget_ms)
            except ClassifierUnavailable:
                self._metrics.classifier_calls.labels("unavailable").inc()
                return
            findings[i] = classifier_finding(f, p, cfg, subject=subject)
            self._metrics.classifier_calls.labels(findings[i].action).inc()
            return

    async def CheckInput(
        self, request: guardrails_pb2.CheckInputRequest, context: grpc.aio.ServicerContext
    ) -> guardrails_pb2.CheckInputResponse:
        guard = self._policies.guard_for(tenant_of(request.context))
        result = guard.check_input([m.content for m in request.messages], [m.role for m in request.messages])
        if result.inconclusive is not None:
            await self._settle(result.findings, result.inconclusive, guard.policy.input.injection, "input")
            if result.blocked:
                result.redacted = None
        self._metrics.record("input", result.timings, result.findings)
        verdict = "block" if result.blocked else "redact" if result.redacted is not None else "allow"
        add_verdict_event(trace.get_current_span(), "input", verdict, result.findings, guard.version)
        reply = guardrails_pb2.CheckInputResponse(
            verdict=guardrails_pb2.VERDICT_BLOCK if result.blocked else guardrails_pb2.VERDICT_ALLOW,
            # Warnings and redactions are reported too; only "block" findings decide the verdict.
            reasons=[reason(f) for f in result.findings],
            input_bytes=result.input_bytes,
            approx_tokens=result.approx_tokens,
            timings=[timing(t) for t in result.timings],
            policy_version=guard.version,
            elapsed_us=result.elapsed_us,
        )
        if result.redacted is not None:
            reply.redacted = True
            for message, text in zip(request.messages, result.redacted, strict=True):
                reply.redacted_messages.add(role=message.role, content=text, name=message.name)
        return reply

    async def CheckContext(
        self, request: guardrails_pb2.CheckContextRequest, context: grpc.aio.ServicerContext
    ) -> guardrails_pb2.CheckContextResponse:
        started = time.perf_counter_ns()
        guard = self._policies.guard_for(tenant_of(request.context))
        results, timings = guard.check_chunks([c.text for c in request.chunks])
        for i, res in enumerate(results):
            if res.inconclusive:
                await self._settle(
                    res.findings, request.chunks[i].text, guard.policy.context.injection, "retrieved passage"
                )
                results[i] = ChunkResult(any(f.action == "block" for f in res.findings), res.findings)
        reply = guardrails_pb2.CheckContextResponse(
            timings=[timing(t) for t in timings], policy_version=guard.version
        )
        findings: list[Finding] = []
        for i, (chunk, res) in enumerate(zip(request.chunks, results, strict=True)):
            findings.extend(res.findings)
            if res.dropped:
                reply.dropped.add(
                    index=i,
                    chunk_id=chunk.chunk_id,
                    source_id=chunk.source_id,
                    reasons=[reason(f) for f in res.findings],
                )
            else:
                reply.kept.append(i)
        self._metrics.record("context", timings, findings)
        add_verdict_event(
            trace.get_current_span(),
            "context",
            "drop" if reply.dropped else "allow",
            findings,
            guard.version,
            chunks_kept=len(reply.kept),
            chunks_dropped=len(reply.dropped),
        )
        reply.elapsed_us = (time.perf_counter_ns() - started) // 1000
        return reply

    async def CheckOutputStream(
        self,
        request_iterator: AsyncIterator[guardrails_pb2.OutputStreamRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[guardrails_pb2.OutputStreamResponse]:
        requests = aiter(request_iterator)
        reader: asyncio.Task[None] | None = None
        span = trace.get_current_span()
        try:
            first = await anext(requests, _END)
            if (
                first is _END
                or not isinstance(first, guardrails_pb2.OutputStreamRequest)
                or first.WhichOneof("item") != "start"
            ):
                raise InvalidArgument("the first message of an output stream must be `start`", param="start")
            guard = self._policies.guard_for(tenant_of(first.start.context))
            rail = OutputRail(guard.output)
            loop = asyncio.get_running_loop()
            receive: Callable[[], Awaitable[object]] = functools.partial(anext, requests, _END)
            if rail.timed:
                # Reads run in their own task so a time-based release can happen while no delta
                # arrives (cancelling a pending read would break the call). Without a time limit
                # deltas are read in place: the task and queue would cost two hand-offs per delta.
                inbox: asyncio.Queue[object] = asyncio.Queue(maxsize=64)
                reader = asyncio.create_task(_read_all(requests, inbox))
                receive = inbox.get
            for _ in range(10_000_000):  # bounded: one turn per delta or timer tick
                due = rail.next_due()
                try:
                    if due is None:
                        item = await receive()
                    else:
                        item = await asyncio.wait_for(receive(), max(0.0, due - loop.time()))
                except TimeoutError:
                    step = rail.tick(loop.time())
                else:
                    if isinstance(item, Exception):
                        raise item
                    if item is _END:
                        # Half-closed without `end`: the caller gave up (its generation failed),
                        # so held text is not released.
                        return
                    assert isinstance(item, guardrails_pb2.OutputStreamRequest)
                    kind = item.WhichOneof("item")
                    if kind == "end":
                        break
                    if kind != "delta":
                        raise InvalidArgument("after `start` an output stream carries deltas and one `end`")
                    step = rail.feed(item.delta, loop.time())
                for reply in self._replies(step, span, guard.version):
                    yield reply
                if step.blocked is not None:
                    return
            step = rail.finish(loop.time())
            for reply in self._replies(step, span, guard.version):
                yield reply
            if step.blocked is not None:
                return
            report_done(span, rail.state, guard.version, self._metrics)
            yield guardrails_pb2.OutputStreamResponse(
                done=guardrails_pb2.OutputDone(
                    redactions=rail.state.redactions,
                    flags=[reason(f) for f in rail.state.flags],
                    timings=[timing(CheckRun("output_scan", rail.state.scan_us))],
                    policy_version=guard.version,
                    mode=rail.mode,
                )
            )
        finally:
            if reader is not None:
                reader.cancel()

    def _replies(
        self, step: Step, span: trace.Span, policy_version: str
    ) -> list[guardrails_pb2.OutputStreamResponse]:
        out = [guardrails_pb2.OutputStreamResponse(released=piece) for piece in step.released]
        if step.blocked is not None:
            # Before the replies are sent: a caller that hangs up on `blocked` never resumes the stream.
            report_block(span, step.blocked, policy_version, self._metrics)
            out.append(
                guardrails_pb2.OutputStreamResponse(
                    blocked=guardrails_pb2.OutputBlocked(reasons=[reason(f) for f in step.blocked])
                )
            )
        return out

    async def GetOutputPolicy(
        self, request: guardrails_pb2.GetOutputPolicyRequest, context: grpc.aio.ServicerContext
    ) -> guardrails_pb2.GetOutputPolicyResponse:
        guard = self._policies.guard_for(tenant_of(request.context))
        return guardrails_pb2.GetOutputPolicyResponse(
            policy_version=guard.version, output_json=guard.policy.output.model_dump_json()
        )

    async def ValidateStructuredOutput(
        self, request: guardrails_pb2.ValidateStructuredOutputRequest, context: grpc.aio.ServicerContext
    ) -> guardrails_pb2.ValidateStructuredOutputResponse:
        limits = self._policies.guard_for(tenant_of(request.context)).policy.structured
        try:
            # Compiling a schema and validating against it can take a while: not on the event loop.
            if request.schema_only:
                await compile_off_loop(request.json_schema, self._schema_limits)
                return guardrails_pb2.ValidateStructuredOutputResponse(
                    valid=True, max_reasks=limits.max_reasks, reask_max_tokens=limits.reask_max_tokens
                )
            result = await check_off_loop(request.json_schema, request.text, self._schema_limits)
        except InvalidSchema as err:
            raise InvalidArgument(str(err), param="response_format") from None
        outcome = "invalid" if not result.valid else ("repaired" if result.repaired else "valid")
        self._metrics.structured.labels(outcome).inc()
        if request.attempt:
            self._metrics.reasks.inc()
        return guardrails_pb2.ValidateStructuredOutputResponse(
            valid=result.valid,
            text=result.text,
            repaired=result.repaired,
            errors=result.errors,
            max_reasks=limits.max_reasks,
            reask_max_tokens=limits.reask_max_tokens,
        )
