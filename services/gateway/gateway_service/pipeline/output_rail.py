"""Generated text through the output rail before any of it reaches the client.

The rail runs here, next to the stream, with the organization's output policy as the guardrails
service reports it (GetOutputPolicy; refreshed whenever CheckInput reports another policy
version). Guardrails stays the one owner of policy and of every input and context check; the
output rules themselves are shared code (llmsuite_common.rules), so they are the same ones the
guardrails CheckOutputStream call applies. Running them here spares every streamed delta two gRPC
messages and a hop: a delta costs a scan of the held window instead of a round trip.

GuardedReader reads like GenerationReader, but the deltas it returns are what the rail released.
With the policy's hold-back window, text that turns unsafe is stopped in the rail, so a violation
ends the stream (ApiError -> error event, no [DONE]) before the offending span is ever returned.
"""

import asyncio
from collections import OrderedDict, deque
from typing import TYPE_CHECKING

from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2
from llmsuite.guardrails.v1 import guardrails_pb2
from llmsuite_common.rules.metrics import RuleMetrics
from llmsuite_common.rules.output_rail import OutputRail, Step
from llmsuite_common.rules.output_report import report_block, report_done
from llmsuite_common.rules.output_scan import OutputScanner
from llmsuite_common.rules.policy import OutputChecks
from opentelemetry import trace

from ..api.errors import ApiError
from ..api.guardrails_summary import current_summary
from .backend_call import backend_call
from .deadline import Deadline
from .generation_reader import GenerationReader, incomplete_stream
from .guardrails_calls import policy_violation

if TYPE_CHECKING:
    from .clients import BackendClients


# Organizations whose compiled output rules are kept; the least recently used go first.
MAX_CACHED_POLICIES = 10_000


class OutputPolicies:
    """Each organization's compiled output rules, keyed by the policy version guardrails reports."""

    def __init__(self, clients: "BackendClients") -> None:
        # The stub is read per fetch: channels open with the app, after this is built.
        self._clients = clients
        self._by_org: OrderedDict[str, OutputScanner] = OrderedDict()
        # One fetch per organization at a time; concurrent first requests share it.
        self._fetching: dict[str, asyncio.Future[OutputScanner]] = {}

    async def scanner(
        self, context: common_pb2.RequestContext, version: str, deadline: Deadline
    ) -> OutputScanner:
        org = context.org_id
        cached = self._by_org.get(org)
        if cached is not None and (cached.version == version or not version):
            self._by_org.move_to_end(org)
            return cached
        pending = self._fetching.get(org)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(context, deadline))
            self._fetching[org] = pending
            pending.add_done_callback(lambda _: self._fetching.pop(org, None))
        return await asyncio.shield(pending)

    async def _fetch(self, context: common_pb2.RequestContext, deadline: Deadline) -> OutputScanner:
        # Fail closed: without the policy no generated text may be released.
        request = guardrails_pb2.GetOutputPolicyRequest(context=context)
        reply = await backend_call(self._clients.guardrails.GetOutputPolicy, request, deadline, "guardrails")
        scanner = OutputScanner(OutputChecks.model_validate_json(reply.output_json), reply.policy_version)
        self._by_org[context.org_id] = scanner
        self._by_org.move_to_end(context.org_id)
        while len(self._by_org) > MAX_CACHED_POLICIES:
            self._by_org.popitem(last=False)
        return scanner


class GuardedReader(GenerationReader):
    """A GenerationReader whose deltas are the output rail's releases."""

    def __init__(
        self, inner: GenerationReader, scanner: OutputScanner, metrics: RuleMetrics | None = None
    ) -> None:
        # Not super().__init__: events come from `inner`, not from a call of this reader's own.
        self._inner = inner
        self._rail = OutputRail(scanner)
        self._version = scanner.version
        self._metrics = metrics
        self._pending: asyncio.Future | None = None
        self._queued: deque[generation_pb2.GenerateResponse] = deque()
        # Tool-call pieces carry no content for the rail; they are returned just before Final.
        self._tool_deltas: list[generation_pb2.GenerateResponse] = []
        self._ended = False
        # A block, raised once the text released before it has been read.
        self._blocked: ApiError | None = None
        self._summary = current_summary()
        self._time = asyncio.get_running_loop().time

    async def _read(self) -> generation_pb2.GenerateResponse | None:
        for _ in range(10_000_000):  # bounded: one turn per generation event or timer tick
            if self._queued:
                return self._queued.popleft()
            if self._blocked is not None:
                raise self._blocked
            if self._ended:
                return None
            due = self._rail.next_due()
            if due is not None:
                # Held text may be released by age while no delta arrives; the read stays pending.
                read = self._inner.pending_read()
                done, _ = await asyncio.wait({read}, timeout=max(0.0, due - self._time()))
                if not done:
                    self._release(self._rail.tick(self._time()))
                    continue
            event = await self._inner.next()
            if event is None:
                raise incomplete_stream()
            kind = event.WhichOneof("event")
            if kind == "delta":
                self._feed(event.delta)
            elif kind == "deltas":
                for delta in event.deltas.deltas:
                    if self._ended:
                        break
                    self._feed(delta)
            elif kind == "final":
                self._release(self._rail.finish(self._time()))
                if self._blocked is None:
                    self._done()
                    self._queued.extend(self._tool_deltas)
                    self._queued.append(event)
                self._ended = True
        raise ApiError(502, "the generation stream did not end", code="upstream_error")

    def ready(self) -> generation_pb2.GenerateResponse | None:
        """An event already released and waiting, without awaiting anything; None when there is none."""
        return self._queued.popleft() if self._queued else None

    def _feed(self, delta: generation_pb2.Delta) -> None:
        if delta.tool_calls:
            self._tool_deltas.append(generation_pb2.GenerateResponse(delta=delta))
        if delta.content:
            self._release(self._rail.feed(delta.content, self._time()))

    def _release(self, step: Step) -> None:
        for piece in step.released:
            self._queued.append(generation_pb2.GenerateResponse(delta=generation_pb2.Delta(content=piece)))
        if step.blocked is not None:
            self._ended = True
            self._inner.cancel()
            report_block(trace.get_current_span(), step.blocked, self._version, self._metrics)
            if self._summary is not None:
                self._summary.add(
                    "output",
                    "block",
                    [f.check for f in step.blocked],
                    self._rail.state.scan_us,
                    codes=[f.code for f in step.blocked],
                )
            self._blocked = policy_violation(step.blocked, "the response was stopped by the output policy")

    def _done(self) -> None:
        state = self._rail.state
        report_done(trace.get_current_span(), state, self._version, self._metrics)
        if self._summary is not None:
            outcome = f"redacted:{state.redactions}" if state.redactions else "allow"
            if state.flags:
                outcome += f",flagged:{len(state.flags)}"
            self._summary.add(
                "output", outcome, ["output_scan"], state.scan_us, codes=[f.code for f in state.flags]
            )

    async def finish(self) -> None:
        """Final has been returned; the generation call ends on its own."""
        await self._inner.finish()

    def cancel(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
        self._inner.cancel()
