"""The gateway's doors as a test speaks them: one chat request spelled in each API, and each API's
stream read back into its events, its text, and how it ended."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson


def _chat(model: str, text: str, end_user: str | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    if end_user is not None:
        body["user"] = end_user
    return body


def _messages(model: str, text: str, end_user: str | None, **extra: Any) -> dict[str, Any]:
    extra.setdefault("max_tokens", 64)
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    if end_user is not None:
        body["metadata"] = {"user_id": end_user}
    return body


def _completions(model: str, text: str, end_user: str | None, **extra: Any) -> dict[str, Any]:
    extra.setdefault("max_tokens", 64)
    body: dict[str, Any] = {"model": model, "prompt": text, **extra}
    if end_user is not None:
        body["user"] = end_user
    return body


def data_events(raw: bytes) -> list[Any]:
    """OpenAI's SSE: the JSON of each `data:` event, and "[DONE]"."""
    out: list[Any] = []
    for block in raw.split(b"\n\n"):
        if block.startswith(b"data: "):
            payload = block[len(b"data: ") :]
            out.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return out


def named_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Anthropic's SSE: (event name, data) of each event; keep-alive comments skipped."""
    out = []
    for block in raw.split(b"\n\n"):
        lines = [line for line in block.split(b"\n") if line and not line.startswith(b":")]
        if lines:
            kind = lines[0].removeprefix(b"event: ").decode()
            out.append((kind, orjson.loads(lines[1].removeprefix(b"data: "))))
    return out


@dataclass(frozen=True)
class Ending:
    """How a stream ended: its text, whether it completed (its API's last event), the error event."""

    text: str
    completed: bool
    error: dict[str, Any] | None


def _openai_ending(raw: bytes, text_of: Callable[[dict[str, Any]], str]) -> Ending:
    events = data_events(raw)
    chunks = [e for e in events if isinstance(e, dict) and "error" not in e]
    errors = [e["error"] for e in events if isinstance(e, dict) and "error" in e]
    return Ending(
        "".join(text_of(c) for c in chunks if c["choices"]), events[-1:] == ["[DONE]"], (errors or [None])[-1]
    )


def _chat_text(chunk: dict[str, Any]) -> str:
    return str(chunk["choices"][0]["delta"].get("content") or "")


def _completion_text(chunk: dict[str, Any]) -> str:
    return str(chunk["choices"][0]["text"])


def _anthropic_ending(raw: bytes) -> Ending:
    events = named_events(raw)
    text = "".join(d["delta"].get("text", "") for kind, d in events if kind == "content_block_delta")
    errors = [d["error"] for kind, d in events if kind == "error"]
    completed = bool(events) and events[-1][0] == "message_stop"
    return Ending(text, completed, (errors or [None])[-1])


@dataclass(frozen=True)
class Door:
    name: str
    path: str
    # (model, text, end user, **fields) -> the request body in this API.
    body: Callable[..., dict[str, Any]]
    ending: Callable[[bytes], Ending]
    anthropic: bool = False

    def error_of(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The error object of an HTTP error body, checked to be in this API's shape."""
        if self.anthropic:
            assert payload["type"] == "error" and set(payload["error"]) == {"type", "message"}, payload
        else:
            assert set(payload) == {"error"} and set(payload["error"]) == {"message", "type", "param", "code"}
        return dict(payload["error"])


CHAT = Door("chat", "/v1/chat/completions", _chat, lambda raw: _openai_ending(raw, _chat_text))
MESSAGES = Door("messages", "/v1/messages", _messages, _anthropic_ending, anthropic=True)
COMPLETIONS = Door(
    "completions", "/v1/completions", _completions, lambda raw: _openai_ending(raw, _completion_text)
)
DOORS = [CHAT, MESSAGES, COMPLETIONS]
DOOR_IDS = [d.name for d in DOORS]
