"""Generate's messages, made from the events of the attempt that answered, then one Final.

A streamed reply passes deltas on as they arrive, enforcing stop sequences and the token cap on the
way (OutputLimits); deltas parsed from one upstream read go out together, as one message. A whole
reply (the caller asked for the whole answer) sends its text and tool calls as one Delta once the
upstream's answer is in. Either way the Accounting is kept up to date, and the reply ends with the
Final. Plain logic over the pool's events: the servicer passes on what `feed()` and `end()` return.
"""

from collections.abc import Iterable, Iterator

from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2

from .accounting import Accounting
from .output_limits import OutputLimits
from .pool import Committed
from .tool_calls import ToolCallAssembler
from .upstream import ContentDelta, StreamDone, ToolCallsDelta
from .usage import approx_tokens, count

Event = Committed | ContentDelta | ToolCallsDelta | StreamDone
Messages = tuple[generation_pb2.GenerateResponse, ...]


class Reply:
    """What the streamed and the whole reply share: the committed attempt, the tool calls, the Final."""

    def __init__(self, account: Accounting) -> None:
        self.account = account
        self.limits = OutputLimits((), None)
        self.tool_calls = ToolCallAssembler()
        # The role the upstream announced, sent with the next delta.
        self.role = ""
        # "stop" or "length" once the output was cut short: the caller closes the upstream, then `end()`.
        self.early_finish = ""

    def feed(self, event: Event) -> Iterable[generation_pb2.GenerateResponse]:
        """The messages one event of the pool's stream makes, in order, to be sent before the next
        event is fed. Other than a content delta, the event is taken in as they are iterated: what
        it counts is counted only once the messages before it are out (a caller gone meanwhile
        never saw it)."""
        if isinstance(event, ContentDelta):
            return self._content(event)
        return self._after_deltas(event)

    def end(self) -> Iterator[generation_pb2.GenerateResponse]:
        """What is left once the upstream's stream is over (or closed after an early finish)."""
        yield from self._held_deltas()
        if self.early_finish:
            # The upstream went past a stop sequence or the token cap; it is closed now.
            self.account.finish(self.early_finish, None, "")
            yield self.final()

    def final(self) -> generation_pb2.GenerateResponse:
        return final_message(self.account, self.tool_calls)

    def _after_deltas(
        self, event: Committed | ToolCallsDelta | StreamDone
    ) -> Iterator[generation_pb2.GenerateResponse]:
        # Anything else goes out after the deltas before it.
        yield from self._held_deltas()
        if isinstance(event, Committed):
            self.account.committed = event
            self.limits = OutputLimits(event.body.get("stop", ()), event.body.get("max_tokens"))
        elif isinstance(event, ToolCallsDelta):
            self.account.first_token()
            self.tool_calls.add(event)
            yield from self._tool_call_pieces(event)
        else:
            last, finish_reason = self._last_delta(event)
            yield from last
            self.account.finish(finish_reason, event.usage, event.upstream_id)
            yield self.final()

    def _content(self, event: ContentDelta) -> Messages:
        raise NotImplementedError

    def _tool_call_pieces(self, event: ToolCallsDelta) -> Messages:
        raise NotImplementedError

    def _last_delta(self, event: StreamDone) -> tuple[Messages, str]:
        """What goes out before the Final, and the finish reason the Final reports."""
        raise NotImplementedError

    def _held_deltas(self) -> Messages:
        return ()


class StreamedReply(Reply):
    def __init__(self, account: Accounting) -> None:
        super().__init__(account)
        self._first_token_seen = False
        # Deltas parsed from one upstream read, sent together once the read's last one is in.
        self._ready: list[generation_pb2.GenerateResponse] = []

    def _content(self, event: ContentDelta) -> Messages:
        account = self.account
        self.role = self.role or event.role
        arrived = account.content_delta()
        emit = self.limits.feed(event.content)
        account.content_chunks = self.limits.chunks
        if emit.text:
            if not self._first_token_seen:
                self._first_token_seen = True
                account.first_token(arrived)
            self._ready.append(_delta(emit.text, self.role))
            self.role = ""
        if emit.finish:
            self.early_finish = emit.finish
            return ()
        if self._ready and not event.more:
            return self._held_deltas()
        return ()

    def _tool_call_pieces(self, event: ToolCallsDelta) -> Messages:
        self._first_token_seen = True
        self.account.tool_chunks += 1
        delta = generation_pb2.Delta(role=self.role or event.role, tool_calls=_tool_calls(event))
        self.role = ""
        return (generation_pb2.GenerateResponse(delta=delta),)

    def _last_delta(self, event: StreamDone) -> tuple[Messages, str]:
        held = self.limits.flush()
        if not held:
            return (), event.finish_reason
        delta = generation_pb2.Delta(content=held, role=self.role)
        return (generation_pb2.GenerateResponse(delta=delta),), event.finish_reason

    def _held_deltas(self) -> Messages:
        if not self._ready:
            return ()
        ready, self._ready = self._ready, []
        return (_batch(ready),)


class WholeReply(Reply):
    def __init__(self, account: Accounting) -> None:
        super().__init__(account)
        self._parts: list[str] = []
        self._calls: list[generation_pb2.ToolCallDelta] = []
        self._arrived = 0.0

    def _content(self, event: ContentDelta) -> Messages:
        self.role = self.role or event.role
        self._arrived = self.account.content_delta()
        self._parts.append(event.content)
        return ()

    def _tool_call_pieces(self, event: ToolCallsDelta) -> Messages:
        self.role = self.role or event.role
        self._calls.extend(_tool_calls(event))
        self.account.tool_chunks += sum(approx_tokens(c.name + c.arguments) for c in event.calls)
        return ()

    def _last_delta(self, event: StreamDone) -> tuple[Messages, str]:
        text = "".join(self._parts)
        tokens = _completion_tokens(event.usage)
        if tokens is None:
            # Estimated (as a prompt is) where a stream would count its chunks.
            tokens = approx_tokens(text) if text else 0
        self.account.content_chunks = tokens
        emit = self.limits.whole(text, tokens)
        # Everything was generated (and is billed), even past a cut.
        finish_reason = emit.finish or event.finish_reason
        if not (emit.text or self._calls):
            return (), finish_reason
        if emit.text:
            self.account.first_token(self._arrived)
        delta = generation_pb2.Delta(content=emit.text, role=self.role, tool_calls=self._calls)
        return (generation_pb2.GenerateResponse(delta=delta),), finish_reason


def final_message(account: Accounting, tool_calls: ToolCallAssembler) -> generation_pb2.GenerateResponse:
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
