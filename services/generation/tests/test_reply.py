"""Generate's messages from the pool's events, without a server: batching, limits, whole answers, the
Final, and the times recorded, on a manual clock."""

from generation_service.accounting import Accounting
from generation_service.metrics import GenerationMetrics
from generation_service.pool import Committed
from generation_service.reply import StreamedReply, WholeReply
from generation_service.routing import Deployment, Route
from generation_service.upstream import ContentDelta, StreamDone, ToolCallPiece, ToolCallsDelta
from llmsuite_common.clock import ManualClock
from opentelemetry.trace import INVALID_SPAN
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

DEPLOYMENT = Deployment("d", "http://127.0.0.1:1/v1", "up", SecretStr(""))
ROUTE = Route("m", (DEPLOYMENT,))
TTFT = "llmsuite_generation_time_to_first_token_seconds"


def committed(**body) -> Committed:
    return Committed(ROUTE, DEPLOYMENT, body, attempts=1)


def account(clock: ManualClock | None = None, registry: CollectorRegistry | None = None) -> Accounting:
    clock = clock or ManualClock()
    metrics = GenerationMetrics(registry or CollectorRegistry())
    return Accounting("m", ["hello"], INVALID_SPAN, metrics, clock=clock)


def feed(reply, event) -> list:
    """What one event makes, sent on (the servicer iterates every feed at once)."""
    return list(reply.feed(event))


def test_deltas_of_one_read_go_out_together_and_a_lone_one_alone():
    reply = StreamedReply(account())
    assert feed(reply, committed()) == []
    assert feed(reply, ContentDelta("a", "assistant", more=True)) == []
    [batch] = feed(reply, ContentDelta("b", "", more=False))
    assert [(d.content, d.role) for d in batch.deltas.deltas] == [("a", "assistant"), ("b", "")]
    [single] = feed(reply, ContentDelta("c", ""))
    assert single.delta.content == "c"
    done = feed(reply, StreamDone("stop", {"completion_tokens": 3, "prompt_tokens": 2}, "up-1"))
    [final] = done
    assert final.final.finish_reason == "stop" and final.final.upstream_id == "up-1"
    assert final.final.usage.completion_tokens == 3 and final.final.deployment == "d"
    assert list(reply.end()) == []


def test_held_deltas_go_out_before_a_tool_call_delta():
    reply = StreamedReply(account())
    feed(reply, committed())
    feed(reply, ContentDelta("text", "assistant", more=True))
    held, tool = feed(reply, ToolCallsDelta((ToolCallPiece(0, "c1", "function", "f", "{}"),), ""))
    assert held.delta.content == "text" and held.delta.role == "assistant"
    assert [c.name for c in tool.delta.tool_calls] == ["f"] and tool.delta.role == ""
    *_, final = feed(reply, StreamDone("tool_calls", None, ""))
    assert [c.id for c in final.final.tool_calls] == ["c1"]


def test_the_end_of_the_stream_counts_only_once_the_deltas_before_it_are_out():
    reply = StreamedReply(account())
    feed(reply, committed())
    feed(reply, ContentDelta("a", "assistant", more=True))
    messages = iter(reply.feed(StreamDone("stop", {"completion_tokens": 9}, "up-1")))
    assert next(messages).delta.content == "a"
    # The caller went away while the held delta was being sent: the call did not complete.
    assert reply.account.finish_reason == ""
    assert [m.WhichOneof("event") for m in messages] == ["final"]
    assert reply.account.finish_reason == "stop"


def test_a_stop_sequence_ends_the_reply_early_with_what_came_before():
    reply = StreamedReply(account())
    feed(reply, committed(stop=["##"]))
    assert feed(reply, ContentDelta("Paris.", "assistant", more=True)) == []
    assert feed(reply, ContentDelta(" ## more", "")) == []
    assert reply.early_finish == "stop"
    batch, final = list(reply.end())
    assert [d.content for d in batch.deltas.deltas] == ["Paris.", " "]
    assert final.final.finish_reason == "stop"
    # Billed as generated: both chunks.
    assert final.final.usage.completion_tokens == 2


def test_the_token_cap_ends_the_reply_with_length():
    reply = StreamedReply(account())
    feed(reply, committed(max_tokens=2))
    for word in ("a ", "b "):
        assert feed(reply, ContentDelta(word, ""))
    assert feed(reply, ContentDelta("c ", "")) == []
    [final] = list(reply.end())
    assert final.final.finish_reason == "length"


def test_text_held_for_a_possible_stop_goes_out_when_the_upstream_ends():
    reply = StreamedReply(account())
    feed(reply, committed(stop=["###"]))
    [first] = feed(reply, ContentDelta("end #", "assistant"))
    assert first.delta.content == "end "
    held, final = feed(reply, StreamDone("stop", None, ""))
    assert held.delta.content == "#"
    assert final.final.finish_reason == "stop"


def test_a_whole_reply_is_one_delta_with_text_and_tool_calls_then_the_final():
    reply = WholeReply(account())
    feed(reply, committed())
    assert feed(reply, ContentDelta("the whole answer", "assistant")) == []
    assert feed(reply, ToolCallsDelta((ToolCallPiece(0, "c1", "function", "f", "{}"),), "")) == []
    delta, final = feed(reply, StreamDone("tool_calls", None, "up-2"))
    assert (delta.delta.content, delta.delta.role) == ("the whole answer", "assistant")
    assert [c.name for c in delta.delta.tool_calls] == ["f"]
    assert final.final.finish_reason == "tool_calls" and final.final.upstream_id == "up-2"
    # No usage from the upstream: the text's tokens are estimated.
    assert final.final.usage.completion_tokens > 0


def test_a_whole_reply_past_the_cap_is_cut_and_says_length():
    reply = WholeReply(account())
    feed(reply, committed(max_tokens=2))
    feed(reply, ContentDelta("one two three four", "assistant"))
    delta, final = feed(reply, StreamDone("stop", {"completion_tokens": 4}, ""))
    assert delta.delta.content == "one two "
    assert final.final.finish_reason == "length"
    assert final.final.usage.completion_tokens == 4


def test_time_to_first_token_is_read_from_the_clock():
    clock, registry = ManualClock(), CollectorRegistry()
    reply = StreamedReply(account(clock, registry))
    feed(reply, committed())
    clock.advance(0.25)
    feed(reply, ContentDelta("a", "assistant"))
    clock.advance(1.0)
    feed(reply, ContentDelta("b", ""))
    assert registry.get_sample_value(f"{TTFT}_sum", {"deployment": "d"}) == 0.25
    assert registry.get_sample_value(f"{TTFT}_count", {"deployment": "d"}) == 1
    inter = "llmsuite_generation_inter_token_seconds"
    assert registry.get_sample_value(f"{inter}_sum", {"deployment": "d"}) == 1.0
