"""OpenAI chat.completion objects, and the chat.completion.chunk payloads of a stream.

A chunk payload is the JSON of one chunk, as bytes; each transport frames it (SSE: sse_response.py,
WebSocket: one text frame each)."""

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2

from ..pipeline.tool_calls import delta_tool_calls, whole_tool_calls
from .errors import ApiError, envelope, note_error

DEFAULT_FINISH_REASON = "stop"
_MARKER = "\x00"


class ScoredChunk(Protocol):
    source_id: str
    chunk_id: str
    score: float


def new_completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


def citations(chunks: Sequence[ScoredChunk]) -> list[dict[str, Any]]:
    return [{"source_id": c.source_id, "chunk_id": c.chunk_id, "score": round(c.score, 6)} for c in chunks]


def usage(u: common_pb2.Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens or u.prompt_tokens + u.completion_tokens,
    }
    if u.cached_tokens:
        out["prompt_tokens_details"] = {"cached_tokens": u.cached_tokens}
    return out


@dataclass(frozen=True)
class CompletionMeta:
    model: str
    citations: list[dict[str, Any]] | None = None
    id: str = field(default_factory=new_completion_id)
    created: int = field(default_factory=lambda: int(time.time()))


def chat_completion(meta: CompletionMeta, content: str, final: generation_pb2.Final) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": final.finish_reason or DEFAULT_FINISH_REASON,
            }
        ],
        "usage": usage(final.usage),
    }
    if final.tool_calls:
        out["choices"][0]["message"] = {
            "role": "assistant",
            "content": content or None,
            "refusal": None,
            "tool_calls": whole_tool_calls(final.tool_calls),
        }
    if meta.citations is not None:
        out["citations"] = meta.citations
    return out


class ChunkEncoder:
    """Turns generation events into the chunk payloads of one completion, in order."""

    def __init__(self, meta: CompletionMeta, *, include_usage: bool) -> None:
        self._meta = meta
        self._include_usage = include_usage
        self._started = False
        # A plain content delta differs from the next only in its text: the bytes around it are
        # serialized once. The content is the last string in a chunk (only fixed keys and nulls
        # follow), so the last occurrence of the marker is it, whatever the id or model contain.
        template = orjson.dumps(self._chunk({"content": _MARKER}, None))
        self._content_prefix, _, self._content_suffix = template.rpartition(orjson.dumps(_MARKER))

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self._meta.id,
            "object": "chat.completion.chunk",
            "created": self._meta.created,
            "model": self._meta.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self._include_usage:
            out["usage"] = None
        return out

    def delta(self, content: str, tool_calls: Sequence[generation_pb2.ToolCallDelta] = ()) -> bytes:
        body: dict[str, Any] = {"content": content}
        if tool_calls:
            body = {"content": content or None, "tool_calls": delta_tool_calls(tool_calls)}
        if self._started:
            if not tool_calls:
                return self._content_prefix + orjson.dumps(content) + self._content_suffix
            return orjson.dumps(self._chunk(body, None))
        self._started = True
        chunk = self._chunk({"role": "assistant", **body}, None)
        if self._meta.citations is not None:
            chunk["citations"] = self._meta.citations
        return orjson.dumps(chunk)

    def finish(self, final: generation_pb2.Final) -> list[bytes]:
        """The last payloads: the finish reason, then (if asked for) the usage chunk."""
        payloads = [] if self._started else [self.delta("")]
        payloads.append(orjson.dumps(self._chunk({}, final.finish_reason or DEFAULT_FINISH_REASON)))
        if self._include_usage:
            last = self._chunk({}, None)
            last["choices"] = []
            last["usage"] = usage(final.usage)
            payloads.append(orjson.dumps(last))
        return payloads

    @staticmethod
    def error(err: ApiError) -> bytes:
        """The payload that ends a failed stream: the error envelope."""
        note_error(err)
        return orjson.dumps(envelope(err))
