"""Generated text through the guardrails output rail before any of it reaches the client.

GuardedReader reads like GenerationReader, but the deltas it returns are what the guardrails
CheckOutputStream released: a pump task copies generation deltas into the rail, and reads come
from the rail's replies. With the policy's hold-back window, text that turns unsafe is stopped
in the rail, so a violation ends the stream (ApiError -> error event, no [DONE]) before the
offending span is ever returned here.
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2
from llmsuite.guardrails.v1 import guardrails_pb2, guardrails_pb2_grpc
from llmsuite_common.grpc_client import call_metadata

from .deadline import Deadline
from .errors import ApiError, from_grpc
from .generation_reader import FINISH_SECONDS, GenerationReader
from .guardrails_calls import policy_violation
from .guardrails_summary import current_summary

log = logging.getLogger(__name__)

# Upper bound on rail replies read for one completion: one per delta plus a few; a guard only.
MAX_REPLIES = 1_000_000


def _incomplete() -> ApiError:
    return ApiError(502, "the generation stream ended without a final message", code="upstream_error")


class GuardedReader(GenerationReader):
    """A GenerationReader over the rail call, whose replies it turns back into generation events."""

    def __init__(
        self,
        inner: GenerationReader,
        stub: guardrails_pb2_grpc.GuardrailsServiceStub,
        context: common_pb2.RequestContext,
        deadline: Deadline,
    ) -> None:
        self._inner = inner
        self._context = context
        # Not super().__init__: that would take the call's response iterator; replies are read with
        # read() here. Requests come from an iterator gRPC drains itself: call.write() through an
        # intercepted channel costs a queue hand-off and two extra tasks per delta.
        self._go = asyncio.Event()
        self._pump: asyncio.Future = asyncio.get_running_loop().create_future()
        self._call: Any = stub.CheckOutputStream(
            self._requests(), timeout=deadline.remaining(), metadata=call_metadata()
        )
        # A call that ends unread (deadline, cancel) must not leave gRPC's request task waiting.
        self._call.add_done_callback(lambda _: self._go.set())
        self._pending: asyncio.Future | None = None
        self._final: generation_pb2.GenerateResponse | None = None
        # Tool-call pieces carry no content for the rail; they are returned just before Final.
        self._tool_deltas: list[generation_pb2.GenerateResponse] = []
        self._generation_error: BaseException | None = None
        self._queued: list[generation_pb2.GenerateResponse] = []
        self._ended = False
        self._summary = current_summary()

    async def _requests(self) -> AsyncIterator[guardrails_pb2.OutputStreamRequest]:
        """Generation deltas as rail requests; `_pump` resolves once generation is read to its end."""
        try:
            # Nothing is read from generation before the first read of this reader.
            await self._go.wait()
            yield guardrails_pb2.OutputStreamRequest(start=guardrails_pb2.OutputStreamStart(context=self._context))
            try:
                while (event := await self._inner.next()) is not None:
                    kind = event.WhichOneof("event")
                    if kind == "delta":
                        if event.delta.tool_calls:
                            self._tool_deltas.append(event)
                        if event.delta.content:
                            yield guardrails_pb2.OutputStreamRequest(delta=event.delta.content)
                    elif kind == "final":
                        self._final = event
                        break
                if self._final is None:
                    self._generation_error = _incomplete()
            except grpc.aio.AioRpcError as err:
                self._generation_error = err
            # Ending without `end` (gRPC then half-closes) abandons the rail: held text is not
            # released when generation failed, and the reader then raises the generation error.
            if self._generation_error is None:
                yield guardrails_pb2.OutputStreamRequest(end=guardrails_pb2.OutputStreamEnd())
                await self._inner.finish()
        except Exception:
            log.exception("output rail pump failed")
            raise
        finally:
            if not self._pump.done():
                self._pump.set_result(None)

    def _fail_from_generation(self) -> BaseException:
        err = self._generation_error
        assert err is not None
        return err

    async def _read(self) -> generation_pb2.GenerateResponse | None:
        if self._queued:
            return self._queued.pop(0)
        if self._ended:
            return None
        self._go.set()
        for _ in range(MAX_REPLIES):
            try:
                reply = await self._call.read()
            except grpc.aio.AioRpcError as err:
                if self._generation_error is not None:
                    raise self._fail_from_generation() from None
                raise from_grpc(err, "guardrails") from None
            if reply is grpc.aio.EOF:
                if self._generation_error is not None:
                    raise self._fail_from_generation()
                raise ApiError(502, "the guardrails output stream ended early", code="guardrails_error")
            kind = reply.WhichOneof("item")
            if kind == "released":
                return generation_pb2.GenerateResponse(delta=generation_pb2.Delta(content=reply.released))
            if kind == "blocked":
                self._ended = True
                self._stop_generation()
                if self._summary is not None:
                    self._summary.add(
                        "output", "block", [r.check for r in reply.blocked.reasons], 0,
                        codes=[r.code for r in reply.blocked.reasons],
                    )
                raise policy_violation(reply.blocked.reasons, "the response was stopped by the output policy")
            if kind == "done":
                self._ended = True
                await asyncio.shield(self._pump)
                if self._generation_error is not None:
                    raise self._fail_from_generation()
                if self._summary is not None:
                    outcome = f"redacted:{reply.done.redactions}" if reply.done.redactions else "allow"
                    if reply.done.flags:
                        outcome += f",flagged:{len(reply.done.flags)}"
                    self._summary.add(
                        "output", outcome, [t.check for t in reply.done.timings],
                        sum(t.elapsed_us for t in reply.done.timings),
                        codes=[r.code for r in reply.done.flags],
                    )
                assert self._final is not None
                self._queued = [*self._tool_deltas, self._final]
                return self._queued.pop(0)
        raise ApiError(502, "the guardrails output stream did not end", code="guardrails_error")

    async def finish(self) -> None:
        """Final has been returned; the rail and the generation call end on their own."""
        try:
            async with asyncio.timeout(FINISH_SECONDS):
                if self._go.is_set():
                    await self._pump
                while await self._call.read() is not grpc.aio.EOF:
                    pass
        except (TimeoutError, grpc.aio.AioRpcError):
            self.cancel()

    def _stop_generation(self) -> None:
        self._inner.cancel()
        self._call.cancel()

    def cancel(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
        self._stop_generation()

