"""What the Anthropic Messages door answers with: the Message object, or its stream of events.

A stream is `message_start` and a `ping`, then per content block `content_block_start`, its
`content_block_delta` events (`text_delta`, or `input_json_delta` for a tool_use block) and
`content_block_stop`, then `message_delta` (stop reason and usage) and `message_stop`. A failure
after the stream started is an `error` event, and nothing follows it (no `message_stop`), as the
Anthropic API ends a stream that failed.

| generation | Anthropic |
|---|---|
| finish reason `stop` / `length` / `tool_calls` / `content_filter` | stop_reason `end_turn` / `max_tokens` / `tool_use` / `refusal` |
| usage: prompt tokens (cached among them), completion tokens | `input_tokens` (without the cached), `cache_read_input_tokens`, `output_tokens` |
| tool calls (id, name, JSON arguments) | `tool_use` blocks (`input`: the arguments, parsed) |
| retrieval citations (llmsuite's extension) | `citations` beside `content`, as on chat |

Input tokens are known only at the end: `message_start` says 0 and `message_delta` gives them.
Generation reports a stop sequence as a plain `stop`, so an answer cut at one of the request's
`stop_sequences` ends with `end_turn` and `stop_sequence: null`.
"""

import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2

from ..completions import CompletionMeta
from ..errors import ApiError, anthropic_envelope, note_error
from ..schemas import ChatCompletionRequest
from ..serve_chat import Door
from .anthropic import ROUTE

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


def new_message_id() -> str:
    return "msg_" + uuid.uuid4().hex


def new_tool_use_id() -> str:
    return "toolu_" + uuid.uuid4().hex


def stop_reason(finish_reason: str) -> str:
    return STOP_REASONS.get(finish_reason, "end_turn")


def usage_of(u: common_pb2.Usage) -> dict[str, int]:
    out = {"input_tokens": max(0, u.prompt_tokens - u.cached_tokens), "output_tokens": u.completion_tokens}
    if u.cached_tokens:
        out["cache_read_input_tokens"] = u.cached_tokens
    return out


def tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's arguments as the `input` object of a tool_use block."""
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise ApiError(
            502,
            "the model's tool call arguments are not a JSON object",
            code="upstream_error",
            upstream=True,
        )
    return value


def _message(meta: CompletionMeta, content: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    out = {
        "id": meta.id,
        "type": "message",
        "role": "assistant",
        "model": meta.model,
        "content": content,
        **fields,
    }
    if meta.citations is not None:
        out["citations"] = meta.citations
    return out


def message_object(meta: CompletionMeta, text: str, final: generation_pb2.Final) -> dict[str, Any]:
    """A whole answer as a Message."""
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [
        {
            "type": "tool_use",
            "id": call.id or new_tool_use_id(),
            "name": call.name,
            "input": tool_input(call.arguments),
        }
        for call in final.tool_calls
    ]
    return _message(
        meta,
        content,
        stop_reason=stop_reason(final.finish_reason),
        stop_sequence=None,
        usage=usage_of(final.usage),
    )


def event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


class MessageEvents:
    """Turns generation events into the Messages stream's events, in order: each payload is one or
    more whole SSE events."""

    def __init__(self, meta: CompletionMeta, body: ChatCompletionRequest) -> None:
        self._meta = meta
        self._started = False
        # The open content block: its index and, for a tool_use block, the tool call it holds.
        self._open: int | None = None
        self._open_call: int | None = None
        self._blocks = 0
        # Tool call index (generation's) -> its block index.
        self._calls: dict[int, int] = {}

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        message = _message(
            self._meta,
            [],
            stop_reason=None,
            stop_sequence=None,
            usage={"input_tokens": 0, "output_tokens": 0},
        )
        return event("message_start", {"message": message}) + event("ping", {})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open, self._open_call = self._open, None, None
        return event("content_block_stop", {"index": index})

    def _open_block(self, block: dict[str, Any]) -> bytes:
        closed = self._close()
        self._open, self._blocks = self._blocks, self._blocks + 1
        return closed + event("content_block_start", {"index": self._open, "content_block": block})

    def _text(self, content: str) -> bytes:
        out = b""
        if self._open is None or self._open_call is not None:
            out = self._open_block({"type": "text", "text": ""})
        delta = {"type": "text_delta", "text": content}
        return out + event("content_block_delta", {"index": self._open, "delta": delta})

    def _tool_piece(self, piece: generation_pb2.ToolCallDelta) -> bytes:
        out = b""
        if piece.index not in self._calls:
            block = {"type": "tool_use", "id": piece.id or new_tool_use_id(), "name": piece.name, "input": {}}
            out = self._open_block(block)
            self._calls[piece.index] = self._blocks - 1
            self._open_call = piece.index
        if not piece.arguments:
            return out
        delta = {"type": "input_json_delta", "partial_json": piece.arguments}
        return out + event("content_block_delta", {"index": self._calls[piece.index], "delta": delta})

    def delta(self, content: str, tool_calls: Sequence[generation_pb2.ToolCallDelta] = ()) -> bytes:
        out = self._start()
        if content:
            out += self._text(content)
        for piece in tool_calls:
            out += self._tool_piece(piece)
        return out

    def finish(self, final: generation_pb2.Final) -> list[bytes]:
        """The last payload: the open block's end, message_delta and message_stop."""
        delta = {"stop_reason": stop_reason(final.finish_reason), "stop_sequence": None}
        end = event("message_delta", {"delta": delta, "usage": usage_of(final.usage)})
        return [self._start() + self._close() + end + event("message_stop", {})]

    @staticmethod
    def error(err: ApiError) -> bytes:
        """The event that ends a failed stream."""
        note_error(err)
        body = anthropic_envelope(err)
        return b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"


ANTHROPIC = Door.of_events(route=ROUTE, new_id=new_message_id, whole=message_object, encoder=MessageEvents)
