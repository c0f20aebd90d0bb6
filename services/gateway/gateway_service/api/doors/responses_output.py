"""The Responses API's answers: the Response object (answered whole, kept, carried by stream events)
and a stream's typed events, each framed as `event: <type>` and `data: <json>` with its
`sequence_number`.

A stream goes:

    response.created, response.in_progress
    per output item: response.output_item.added
      a message: response.content_part.added, response.output_text.delta ...,
                 [response.output_text.annotation.added ...], response.output_text.done,
                 response.content_part.done
      a function call: response.function_call_arguments.delta ..., response.function_call_arguments.done
    response.output_item.done
    response.completed (or response.incomplete: max_output_tokens reached, content filtered)

and a failure once it started (the output rail blocking, the upstream failing) ends it with an
`error` event (the gateway's own code, message and param) and `response.failed` (the Response with
its `error`), never `response.completed`.

Retrieval citations (llmsuite's `retrieval` extension) become annotations on the output text: a
source that is a URL a `url_citation` (its span the `[n]` the text cites it by, or the whole text),
any other a `file_citation` (file_id the chunk, filename the source, index n - 1).
"""

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2

from ..errors import ApiError, note_error
from .responses import ResponsesRequest

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


@dataclass(frozen=True)
class ResponseMeta:
    request: ResponsesRequest
    model: str
    citations: list[dict[str, Any]] | None = None
    id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))

    def item_id(self, prefix: str, index: int) -> str:
        """The id of output item `index` (and of a call the upstream gave none): the same for a
        stream's events and the Response kept from it."""
        return f"{prefix}_{self.id.removeprefix('resp_')}_{index}"


def _tool_echo(tool: dict[str, Any]) -> dict[str, Any]:
    out = {"type": "function", "name": tool["name"]}
    if isinstance(tool.get("description"), str):
        out["description"] = tool["description"]
    return {**out, "parameters": tool.get("parameters"), "strict": tool.get("strict")}


def _echo(meta: ResponseMeta) -> dict[str, Any]:
    """What a Response repeats of its request."""
    r = meta.request
    out: dict[str, Any] = {
        "model": meta.model,
        "instructions": r.instructions,
        "previous_response_id": r.previous_response_id,
        "tools": [_tool_echo(t) for t in r.tools or ()],
        "tool_choice": r.tool_choice if r.tool_choice is not None else "auto",
        "parallel_tool_calls": r.parallel_tool_calls is not False,
        "text": {"format": r.text.format if r.text is not None and r.text.format else {"type": "text"}},
        "temperature": r.temperature,
        "top_p": r.top_p,
        "max_output_tokens": r.max_output_tokens,
        "truncation": "disabled",
        "metadata": r.metadata or {},
        "store": r.kept,
        "background": False,
    }
    if r.user is not None:
        out["user"] = r.user
    if r.safety_identifier is not None:
        out["safety_identifier"] = r.safety_identifier
    return out


def response_object(
    meta: ResponseMeta,
    status: str,
    output: Sequence[dict[str, Any]],
    *,
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    incomplete: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": meta.id,
        "object": "response",
        "created_at": meta.created_at,
        "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": error,
        "incomplete_details": incomplete,
        "output": list(output),
        **_echo(meta),
    }
    if usage is not None:
        out["usage"] = usage
    return out


def usage_of(u: common_pb2.Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.total_tokens or u.prompt_tokens + u.completion_tokens,
    }


def status_of(finish_reason: str) -> tuple[str, dict[str, Any] | None]:
    """(status, incomplete_details) for generation's finish reason."""
    reason = _INCOMPLETE.get(finish_reason)
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def failed_code(err: ApiError) -> str:
    """The Response error code (OpenAI's closed list) nearest to a gateway error; the `error` event
    before response.failed carries the gateway's own code."""
    if err.status == 429:
        return "rate_limit_exceeded"
    return "server_error" if err.status >= 500 else "invalid_prompt"


def annotations(citations: Sequence[dict[str, Any]] | None, text: str) -> list[dict[str, Any]]:
    out = []
    for n, cited in enumerate(citations or (), 1):
        source = str(cited.get("source_id", ""))
        if source.startswith(("http://", "https://")):
            at = text.find(f"[{n}]")
            start, end = (at, at + len(f"[{n}]")) if at >= 0 else (0, len(text))
            out.append(
                {
                    "type": "url_citation",
                    "url": source,
                    "title": source,
                    "start_index": start,
                    "end_index": end,
                }
            )
        else:
            chunk = str(cited.get("chunk_id", ""))
            out.append({"type": "file_citation", "file_id": chunk, "filename": source, "index": n - 1})
    return out


def _text_part(text: str, cited: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": cited, "logprobs": []}


def message_item(item_id: str, text: str, cited: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [_text_part(text, cited)],
    }


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def whole_response(meta: ResponseMeta, content: str, final: generation_pb2.Final) -> dict[str, Any]:
    """The Response of a non-streamed request."""
    output = []
    if content or not final.tool_calls:
        cited = annotations(meta.citations, content)
        output.append(message_item(meta.item_id("msg", 0), content, cited, "completed"))
    for call in final.tool_calls:
        at = len(output)
        call_id = call.id or meta.item_id("call", at)
        output.append(call_item(meta.item_id("fc", at), call_id, call.name, call.arguments, "completed"))
    status, incomplete = status_of(final.finish_reason)
    return response_object(meta, status, output, usage=usage_of(final.usage), incomplete=incomplete)


def assistant_turn(response: dict[str, Any]) -> dict[str, Any]:
    """A Response's output as the chat assistant message a follow-up continues after."""
    texts, calls = [], []
    for item in response.get("output", ()):
        if item.get("type") == "message":
            texts += [p.get("text", "") for p in item.get("content", ()) if p.get("type") == "output_text"]
        elif item.get("type") == "function_call":
            function = {"name": item["name"], "arguments": item["arguments"]}
            calls.append({"id": item["call_id"], "type": "function", "function": function})
    text = "".join(texts)
    if not calls:
        return {"role": "assistant", "content": text}
    return {"role": "assistant", "content": text or None, "tool_calls": calls}


@dataclass
class _OpenItem:
    """The output item a stream is adding to."""

    kind: str
    id: str
    index: int
    parts: list[str] = field(default_factory=list)
    # A function call's: generation's tool-call index, its call id and name.
    tool_index: int = -1
    call_id: str = ""
    name: str = ""


class ResponseEvents:
    """Turns generation events into a stream's event payloads (each already framed as SSE), in order;
    `response` is the Response as the last event carried it."""

    def __init__(self, meta: ResponseMeta) -> None:
        self._meta = meta
        self._sequence = 0
        self._done: list[dict[str, Any]] = []
        self._open: _OpenItem | None = None
        self._started = False
        self.response: dict[str, Any] | None = None

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, **fields, "sequence_number": self._sequence}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def _opening(self) -> bytes:
        """response.created and response.in_progress, before the stream's first other event."""
        if self._started:
            return b""
        self._started = True
        snapshot = response_object(self._meta, "in_progress", [])
        return self._event("response.created", response=snapshot) + self._event(
            "response.in_progress", response=snapshot
        )

    def _add(self, kind: str, item: dict[str, Any], **extra: Any) -> _OpenItem:
        self._open = _OpenItem(kind, item["id"], len(self._done), **extra)
        return self._open

    def _open_message(self) -> bytes:
        item = message_item(self._meta.item_id("msg", len(self._done)), "", [], "in_progress")
        item["content"] = []
        opened = self._add("message", item)
        where = {"item_id": opened.id, "output_index": opened.index, "content_index": 0}
        return self._event("response.output_item.added", output_index=opened.index, item=item) + self._event(
            "response.content_part.added", **where, part=_text_part("", [])
        )

    def _open_call(self, piece: generation_pb2.ToolCallDelta) -> bytes:
        at = len(self._done)
        call_id = piece.id or self._meta.item_id("call", at)
        item = call_item(self._meta.item_id("fc", at), call_id, piece.name, "", "in_progress")
        opened = self._add("function_call", item, tool_index=piece.index, call_id=call_id, name=piece.name)
        return self._event("response.output_item.added", output_index=opened.index, item=item)

    def delta(self, content: str, tool_calls: Sequence[generation_pb2.ToolCallDelta] = ()) -> bytes:
        out = self._opening()
        if content:
            if self._open is None or self._open.kind != "message":
                out += self._close() + self._open_message()
            assert self._open is not None
            self._open.parts.append(content)
            where = {"item_id": self._open.id, "output_index": self._open.index, "content_index": 0}
            out += self._event("response.output_text.delta", **where, delta=content, logprobs=[])
        for piece in tool_calls:
            current = self._open
            if current is None or current.kind != "function_call" or current.tool_index != piece.index:
                out += self._close() + self._open_call(piece)
            assert self._open is not None
            if piece.arguments:
                self._open.parts.append(piece.arguments)
                where = {"item_id": self._open.id, "output_index": self._open.index}
                out += self._event("response.function_call_arguments.delta", **where, delta=piece.arguments)
        return out

    def _close(self, whole: dict[int, generation_pb2.ToolCallDelta] | None = None) -> bytes:
        opened, self._open = self._open, None
        if opened is None:
            return b""
        if opened.kind == "message":
            return self._close_message(opened)
        call = (whole or {}).get(opened.tool_index)
        arguments = call.arguments if call is not None else "".join(opened.parts)
        name = (call.name if call is not None else "") or opened.name
        item = call_item(opened.id, opened.call_id, name, arguments, "completed")
        self._done.append(item)
        where = {"item_id": opened.id, "output_index": opened.index}
        return self._event(
            "response.function_call_arguments.done", **where, name=name, arguments=arguments
        ) + self._event("response.output_item.done", output_index=opened.index, item=item)

    def _close_message(self, opened: _OpenItem) -> bytes:
        text = "".join(opened.parts)
        cited = annotations(self._meta.citations, text)
        where = {"item_id": opened.id, "output_index": opened.index, "content_index": 0}
        out = b"".join(
            self._event("response.output_text.annotation.added", **where, annotation_index=i, annotation=a)
            for i, a in enumerate(cited)
        )
        out += self._event("response.output_text.done", **where, text=text, logprobs=[])
        out += self._event("response.content_part.done", **where, part=_text_part(text, cited))
        item = message_item(opened.id, text, cited, "completed")
        self._done.append(item)
        return out + self._event("response.output_item.done", output_index=opened.index, item=item)

    def finish(self, final: generation_pb2.Final) -> list[bytes]:
        """The last payloads: the open item closed, then response.completed (or .incomplete)."""
        out = self._opening()
        out += self._open_message() if self._open is None and not self._done else b""
        out += self._close({c.index: c for c in final.tool_calls})
        status, incomplete = status_of(final.finish_reason)
        self.response = response_object(
            self._meta, status, self._done, usage=usage_of(final.usage), incomplete=incomplete
        )
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return [out, self._event(kind, response=self.response)]

    def error(self, err: ApiError) -> bytes:
        """The end of a failed stream: an `error` event, then response.failed with what was sent."""
        note_error(err)
        output = list(self._done)
        opened = self._open
        if opened is not None and opened.kind == "message":
            output.append(message_item(opened.id, "".join(opened.parts), [], "incomplete"))
        elif opened is not None:
            output.append(
                call_item(opened.id, opened.call_id, opened.name, "".join(opened.parts), "incomplete")
            )
        self._open = None
        failure = {"code": failed_code(err), "message": err.message}
        self.response = response_object(self._meta, "failed", output, error=failure)
        out = self._opening() + self._event("error", code=err.code, message=err.message, param=err.param)
        return out + self._event("response.failed", response=self.response)
