"""The Anthropic Messages API (POST /v1/messages) as a door onto the chat pipeline: its request, and
that request translated into the internal chat request. The Message object and the stream events
going back are in anthropic_output.py.

| Messages request | chat request |
|---|---|
| `system` (a string or text blocks) | a leading system message |
| `messages`: `text` blocks | the text of a message (blocks joined by newlines) |
| `image` blocks (`base64` or `url` source) | `image_url` parts (a data: URL, or the URL); never fetched here |
| `tool_use` blocks of an assistant turn | its `tool_calls` (`input` as JSON arguments) |
| `tool_result` blocks of a user turn | `tool` messages before the rest of that turn (`is_error`: "Error: " before the text) |
| `tools` (custom tools), `tool_choice` | `tools`, `tool_choice` (`any` is `required`; `disable_parallel_tool_use` is `parallel_tool_calls: false`) |
| `max_tokens`, `stop_sequences`, `temperature`, `top_p` | `max_tokens`, `stop`, `temperature`, `top_p` |
| `metadata.user_id` | `user`: the end user, limited and logged as such |
| `retrieval`, `cache` (llmsuite's extensions) | the same |

`cache_control` on blocks and tools is a caching hint and changes no answer: accepted, not acted
on. What the gateway cannot honour is refused with 400 naming the field (`top_k`, `thinking`,
server tools such as `web_search`, `document` and `thinking` blocks, `container`, `mcp_servers`,
...), never dropped.
"""

from typing import Annotated, Any, Literal

import orjson
from llmsuite_common.rules.schema_outline import InvalidSchema, check_schema_outline
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ...pipeline.tool_calls import MAX_TOOLS
from ..errors import ApiError
from ..request_guards import guard_request
from ..schemas import MAX_STOP_SEQUENCES, ChatCompletionRequest, RetrievalOptions

ROUTE = "/v1/messages"
MAX_MESSAGES = 4096
MAX_BLOCKS = 1024


def _at_most_blocks(blocks: list[Any]) -> list[Any]:
    # Checked here rather than declared as maxItems: nested under the messages' own bound, a
    # declared one would have a schema-driven client (a fuzzer) build bodies of many megabytes.
    if len(blocks) > MAX_BLOCKS:
        raise ValueError(f"at most {MAX_BLOCKS} content blocks")
    return blocks


def _only(*allowed: Any, why: str) -> AfterValidator:
    """A field the gateway cannot honour: accepted only at values that ask for nothing; any other is
    400 naming the field (code `unsupported`)."""

    def check(value: Any) -> Any:
        if value not in allowed:
            raise PydanticCustomError("unsupported", why, {})
        return value

    return AfterValidator(check)


class _Block(BaseModel):
    # Anthropic refuses unknown fields; so does this door.
    model_config = ConfigDict(extra="forbid")

    # A prompt-caching hint: it changes no answer, so it is accepted and not acted on.
    cache_control: dict[str, Any] | None = None


class TextBlock(_Block):
    type: Literal["text"]
    text: str
    citations: Annotated[Any, _only(None, why="citations in request blocks are not supported")] = None


class Base64Source(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str = Field(min_length=1)


class UrlSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["url"]
    url: str = Field(min_length=1, max_length=8192, pattern=r"^https?://")


class ImageBlock(_Block):
    type: Literal["image"]
    source: Annotated[Base64Source | UrlSource, Field(discriminator="type")]

    def image_url(self) -> str:
        source = self.source
        if isinstance(source, UrlSource):
            return source.url
        return f"data:{source.media_type};base64,{source.data}"


class ToolUseBlock(_Block):
    type: Literal["tool_use"]
    id: str = Field(min_length=1, max_length=256)
    name: str = Field(min_length=1, max_length=256)
    input: dict[str, Any]


class ToolResultBlock(_Block):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1, max_length=256)
    content: str | list[TextBlock] = ""
    is_error: bool = False

    def text(self) -> str:
        text = self.content if isinstance(self.content, str) else "\n".join(b.text for b in self.content)
        return f"Error: {text}" if self.is_error else text


Block = Annotated[TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock, Field(discriminator="type")]


# The blocks each role's turns may hold.
_ROLE_BLOCKS: dict[str, tuple[type, ...]] = {
    "user": (TextBlock, ImageBlock, ToolResultBlock),
    "assistant": (TextBlock, ToolUseBlock),
}


class MessageParam(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str | Annotated[list[Block], AfterValidator(_at_most_blocks)]

    @model_validator(mode="after")
    def _blocks_of_its_role(self) -> "MessageParam":
        for j, block in enumerate(self.content if isinstance(self.content, list) else ()):
            if not isinstance(block, _ROLE_BLOCKS[self.role]):
                raise PydanticCustomError(
                    "unsupported",
                    "content[{j}]: {kind} blocks are not accepted in {role} turns",
                    {"j": j, "kind": block.type, "role": self.role},
                )
        return self


class Tool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Server tools (web_search, bash, text_editor, ...) run at Anthropic; only custom tools run here.
    type: Annotated[
        str | None, _only(None, "custom", why="only custom tools are supported (no server tools)")
    ] = None
    name: str = Field(min_length=1, max_length=128, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str | None = None
    input_schema: dict[str, Any]
    cache_control: dict[str, Any] | None = None

    @field_validator("input_schema")
    @classmethod
    def _outline(cls, schema: dict[str, Any]) -> dict[str, Any]:
        # The model server resolves it: no remote or file `$ref` (pipeline/tool_calls.py).
        try:
            check_schema_outline(schema)
        except InvalidSchema as err:
            raise ValueError(str(err)) from None
        return schema


class ToolChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["auto", "any", "tool", "none"]
    name: str | None = Field(None, min_length=1, max_length=128)
    disable_parallel_tool_use: bool | None = None

    @model_validator(mode="after")
    def _named(self) -> "ToolChoice":
        if (self.type == "tool") != (self.name is not None):
            raise ValueError("a tool choice names its tool exactly when its type is 'tool'")
        return self


class Metadata(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(None, max_length=256)


def _is_schema(path: tuple[Any, ...]) -> bool:
    """Client data the forbidden-key check leaves alone: tools[i].input_schema (JSON Schemas) and the
    `input` of earlier tool_use blocks (a model's own tool arguments)."""
    if len(path) >= 3 and path[0] == "tools" and path[2] == "input_schema":
        return True
    return len(path) >= 5 and path[0] == "messages" and path[2] == "content" and path[4] == "input"


_NOT_HERE = "is not supported by this gateway"


class MessagesRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=256)
    max_tokens: int = Field(ge=1, le=1_000_000)
    messages: list[MessageParam] = Field(min_length=1, max_length=MAX_MESSAGES)
    system: str | Annotated[list[TextBlock], AfterValidator(_at_most_blocks)] | None = None
    stop_sequences: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None, max_length=MAX_STOP_SEQUENCES
    )
    temperature: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    top_p: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    top_k: Annotated[
        int | None, _only(None, why="top_k is not supported: the upstreams take OpenAI's sampling parameters")
    ] = None
    stream: bool = False
    tools: list[Tool] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: ToolChoice | None = None
    metadata: Metadata | None = None
    thinking: Annotated[Any, _only(None, {"type": "disabled"}, why=f"extended thinking {_NOT_HERE}")] = None
    service_tier: Literal["auto", "standard_only"] | None = None
    container: Annotated[Any, _only(None, why=f"containers {_NOT_HERE}")] = None
    mcp_servers: Annotated[Any, _only(None, why=f"MCP servers {_NOT_HERE}")] = None
    context_management: Annotated[Any, _only(None, why=f"context_management {_NOT_HERE}")] = None
    # llmsuite's extensions, as on chat.
    retrieval: RetrievalOptions | None = None
    cache: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _guard(cls, data: Any) -> Any:
        # Unknown top-level fields are refused (as Anthropic does), provider settings at any depth.
        return guard_request(data, frozenset(cls.model_fields), tolerated=frozenset(), is_schema=_is_schema)


# --- translation -----------------------------------------------------------------------------------


def _text_of(blocks: list[TextBlock]) -> str:
    return "\n".join(b.text for b in blocks)


def _user_turn(blocks: list[Any]) -> list[dict[str, Any]]:
    """Tool results first (each a tool message, answering the assistant's calls just before), then
    the turn's text and images as one user message."""
    out: list[dict[str, Any]] = [
        {"role": "tool", "tool_call_id": b.tool_use_id, "content": b.text()}
        for b in blocks
        if isinstance(b, ToolResultBlock)
    ]
    parts: list[dict[str, Any]] = []
    for b in blocks:
        if isinstance(b, TextBlock):
            parts.append({"type": "text", "text": b.text})
        elif isinstance(b, ImageBlock):
            parts.append({"type": "image_url", "image_url": {"url": b.image_url()}})
    if parts or not out:
        out.append({"role": "user", "content": parts})
    return out


def _assistant_turn(blocks: list[Any]) -> dict[str, Any]:
    texts = [b for b in blocks if isinstance(b, TextBlock)]
    calls = [
        {
            "id": b.id,
            "type": "function",
            "function": {"name": b.name, "arguments": orjson.dumps(b.input).decode()},
        }
        for b in blocks
        if isinstance(b, ToolUseBlock)
    ]
    turn: dict[str, Any] = {"role": "assistant", "content": _text_of(texts) or (None if calls else "")}
    if calls:
        turn["tool_calls"] = calls
    return turn


def chat_messages(request: MessagesRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if request.system:
        system = request.system if isinstance(request.system, str) else _text_of(request.system)
        messages.append({"role": "system", "content": system})
    for turn in request.messages:
        if isinstance(turn.content, str):
            messages.append({"role": turn.role, "content": turn.content})
        elif turn.role == "user":
            messages += _user_turn(turn.content)
        else:
            messages.append(_assistant_turn(turn.content))
    return messages


def chat_tools(tools: list[Tool]) -> list[dict[str, Any]]:
    out = []
    for tool in tools:
        function: dict[str, Any] = {"name": tool.name, "parameters": tool.input_schema}
        if tool.description is not None:
            function["description"] = tool.description
        out.append({"type": "function", "function": function})
    return out


def chat_tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    if choice.type == "tool":
        return {"type": "function", "function": {"name": choice.name}}
    return {"auto": "auto", "any": "required", "none": "none"}[choice.type]


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def _chat_fields(request: MessagesRequest) -> dict[str, Any]:
    choice = request.tool_choice
    return _drop_none(
        {
            "model": request.model,
            "messages": chat_messages(request),
            "stream": request.stream,
            "max_tokens": request.max_tokens,
            "stop": request.stop_sequences,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "user": request.metadata.user_id if request.metadata else None,
            "tools": chat_tools(request.tools) if request.tools else None,
            "tool_choice": chat_tool_choice(choice) if choice else None,
            "parallel_tool_calls": False if choice and choice.disable_parallel_tool_use else None,
            "retrieval": request.retrieval.model_dump(exclude_none=True) if request.retrieval else None,
            "cache": request.cache,
        }
    )


def to_chat(request: MessagesRequest) -> ChatCompletionRequest:
    """The internal chat request; a request the translation cannot carry is 400 naming what."""
    try:
        return ChatCompletionRequest.model_validate(_chat_fields(request))
    except ValidationError as err:
        reason = err.errors()[0]["msg"] if err.errors() else "invalid value"
        raise ApiError(400, f"this request cannot be served: {reason}", code="invalid_value") from None
