"""The OpenAI Responses API (POST /v1/responses) as a door onto the chat pipeline: its request, and
that request translated into the internal chat request. The Response object and the stream events
going back are in responses_output.py.

| Responses request | chat request |
|---|---|
| `instructions` | a leading system message (not carried over to a follow-up, as OpenAI does) |
| `previous_response_id` | the kept conversation of that response, its output included, before `input` |
| `input` string | one user message |
| `input` message items (`input_text`, `output_text`, `input_image` by URL) | messages of their role |
| `function_call` items | an assistant message's `tool_calls` |
| `function_call_output` items | `tool` messages |
| `tools` (function tools), `tool_choice` | `tools`, `tool_choice` |
| `text.format` (`json_schema`, `json_object`) | `response_format`: the structured-output rail |
| `max_output_tokens`, `temperature`, `top_p`, `parallel_tool_calls` | `max_tokens`, the same |
| `user` (or `safety_identifier`) | `user`: the end user |
| `retrieval`, `cache` (llmsuite's extensions) | the same |

What the gateway cannot honour is refused with 400 naming the field (`background`, `reasoning`,
built-in tools such as `web_search`, `conversation`, `prompt`, `include`, ...), never dropped.
"""

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from ...pipeline.tool_calls import MAX_TOOLS, TOOL_CHOICES, check_response_format, check_tools
from ..errors import ApiError
from ..request_guards import guard_request
from ..schemas import ChatCompletionRequest, RetrievalOptions

ROUTE = "/v1/responses"
MAX_INPUT_ITEMS = 4096
MAX_METADATA_KEYS = 16
# Content parts that carry text.
_TEXT_PARTS = {"input_text", "output_text", "refusal", "text"}
_ROLES = ("user", "assistant", "system", "developer")


def _unsupported(message: str) -> PydanticCustomError:
    # Reported with code `unsupported` and `param` naming the field (api/validation.py).
    return PydanticCustomError("unsupported", message, {})


def _invalid(message: str) -> PydanticCustomError:
    return PydanticCustomError("invalid_item", message, {})


def _only(*allowed: Any, why: str) -> AfterValidator:
    """A field the gateway cannot honour: accepted only at the values that ask for nothing."""

    def check(value: Any) -> Any:
        if value not in allowed:
            raise _unsupported(why)
        return value

    return AfterValidator(check)


def _is_schema(path: tuple[Any, ...]) -> bool:
    """tools[i].parameters and text.format.schema hold client JSON Schemas."""
    return (len(path) >= 3 and path[0] == "tools" and path[2] == "parameters") or (
        len(path) >= 3 and path[:3] == ("text", "format", "schema")
    )


# --- input items -----------------------------------------------------------------------------------


def _image(part: dict[str, Any], where: str) -> dict[str, Any]:
    """An input_image part as chat's image_url part: by URL (or data: URL) only, never fetched here."""
    url = part.get("image_url")
    if not isinstance(url, str):
        raise _unsupported(f"{where}: input_image is supported by image_url only (not file_id)")
    image = {"url": url}
    if part.get("detail") is not None:
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _content(content: Any, where: str) -> str | list[dict[str, Any]]:
    """A message's content as chat's: a string (text parts joined by newlines), or chat content
    parts when it holds images."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _invalid(f"{where}.content must be a string or a list of content parts")
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "input_image":
            parts.append(_image(part, f"{where}.content[{j}]"))
            continue
        if kind not in _TEXT_PARTS:
            raise _unsupported(
                f"{where}.content[{j}]: content parts of type '{kind}' are not supported; "
                "only input_text and input_image (and output_text for earlier answers)"
            )
        text = part.get("text", part.get("refusal"))
        if not isinstance(text, str):
            raise _invalid(f"{where}.content[{j}].text must be a string")
        parts.append({"type": "text", "text": text})
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def _text(content: Any, where: str) -> str:
    out = _content(content, where)
    if not isinstance(out, str):
        raise _unsupported(f"{where}: only text is supported here")
    return out


def _call(item: dict[str, Any], where: str) -> dict[str, Any]:
    name, arguments, call_id = item.get("name"), item.get("arguments"), item.get("call_id")
    if not (isinstance(name, str) and isinstance(arguments, str) and isinstance(call_id, str)):
        raise _invalid(f"{where}: a function_call item needs call_id, name and arguments (strings)")
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _tool_output(item: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise _invalid(f"{where}: a function_call_output item needs its call_id")
    output = item.get("output")
    return {"role": "tool", "tool_call_id": call_id, "content": _text(output, where)}


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in _ROLES:
        raise _invalid(f"{where}.role must be one of {', '.join(_ROLES)}")
    return {"role": role, "content": _content(item.get("content"), where)}


def input_messages(value: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`input` as chat messages; consecutive function_call items join the assistant turn before them."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        kind = item.get("type", "message")
        if kind == "message":
            out.append(_message(item, where))
        elif kind == "function_call":
            call = _call(item, where)
            if out and out[-1]["role"] == "assistant":
                out[-1].setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            out.append(_tool_output(item, where))
        else:
            raise _unsupported(
                f"{where}: input items of type '{kind}' are not supported; "
                "only message, function_call and function_call_output"
            )
    return out


def _check_input(value: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    input_messages(value)
    return value


# --- tools and formats -----------------------------------------------------------------------------


def chat_tools(tools: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Responses function tools ({type, name, parameters, ...}) as chat tools ({type, function})."""
    out = []
    for i, tool in enumerate(tools):
        kind = tool.get("type")
        if kind != "function":
            raise _unsupported(f"tools[{i}]: tools of type '{kind}' are not supported; only function tools")
        if not isinstance(tool.get("name"), str):
            raise _invalid(f"tools[{i}].name must be a string")
        function = {
            k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None
        }
        out.append({"type": "function", "function": function})
    return out


def _check_tools(value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if value is not None:
        try:
            check_tools(chat_tools(value))
        except ValueError as err:
            raise _invalid(str(err).replace("function.parameters", "parameters")) from None
    return value


def chat_tool_choice(value: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(value, str):
        if value not in TOOL_CHOICES:
            raise _invalid(f"tool_choice must be one of {', '.join(TOOL_CHOICES)} or a function")
        return value
    if value.get("type") == "function" and isinstance(value.get("name"), str):
        return {"type": "function", "function": {"name": value["name"]}}
    raise _unsupported(f"tool_choice of type '{value.get('type')}' is not supported; only a function")


def _check_tool_choice(value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if value is not None:
        chat_tool_choice(value)
    return value


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format: dict[str, Any] | None = None
    verbosity: Annotated[
        str | None, _only(None, "medium", why="text.verbosity other than medium is not supported")
    ] = None


def response_format(text: TextFormat | None) -> dict[str, Any] | None:
    """text.format as chat's response_format (json_schema and json_object go through the structured
    output rail); None for plain text."""
    fmt = text.format if text is not None else None
    if fmt is None or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        spec = {k: fmt[k] for k in ("name", "description", "schema", "strict") if fmt.get(k) is not None}
        out = {"type": "json_schema", "json_schema": spec}
        check_response_format(out)
        return out
    raise _unsupported(f"text.format of type '{fmt.get('type')}' is not supported")


def _check_text(value: TextFormat | None) -> TextFormat | None:
    try:
        response_format(value)
    except ValueError as err:
        if isinstance(err, PydanticCustomError):
            raise
        raise _invalid(str(err).replace("response_format.json_schema", "text.format")) from None
    return value


def _check_metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is not None and (
        len(value) > MAX_METADATA_KEYS or any(len(k) > 64 or len(v) > 512 for k, v in value.items())
    ):
        raise _invalid("metadata holds at most 16 keys of 64 characters, values of 512")
    return value


# --- the request -----------------------------------------------------------------------------------

_NOT_HERE = "is not supported by this gateway"


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, max_length=256)
    input: Annotated[str | list[dict[str, Any]], AfterValidator(_check_input)] = Field(
        max_length=MAX_INPUT_ITEMS
    )
    instructions: str | None = None
    previous_response_id: str | None = Field(None, min_length=1, max_length=256)
    tools: Annotated[list[dict[str, Any]] | None, AfterValidator(_check_tools)] = Field(
        None, max_length=MAX_TOOLS
    )
    tool_choice: Annotated[str | dict[str, Any] | None, AfterValidator(_check_tool_choice)] = None
    text: Annotated[TextFormat | None, AfterValidator(_check_text)] = None
    max_output_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float | None = Field(None, ge=0, le=2, allow_inf_nan=False)
    top_p: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    stream: bool | None = False
    # Kept for GET /v1/responses/{id} and previous_response_id unless false, as OpenAI does.
    store: bool | None = True
    metadata: Annotated[dict[str, str] | None, AfterValidator(_check_metadata)] = None
    user: str | None = Field(None, max_length=256)
    safety_identifier: str | None = Field(None, max_length=256)
    # Extensions, as on chat.
    retrieval: RetrievalOptions | None = None
    cache: bool | None = None
    parallel_tool_calls: bool | None = None
    # Accepted only where they ask for what the gateway does anyway.
    truncation: Annotated[str | None, _only(None, "disabled", why=f"truncation: auto {_NOT_HERE}")] = None
    service_tier: Annotated[
        str | None, _only(None, "auto", "default", why=f"service_tier other than auto or default {_NOT_HERE}")
    ] = None
    stream_options: Annotated[
        dict[str, Any] | None,
        _only(
            None, {}, {"include_obfuscation": False}, why=f"stream_options.include_obfuscation {_NOT_HERE}"
        ),
    ] = None
    include: Annotated[list[Any] | None, _only(None, [], why=f"include {_NOT_HERE}")] = None
    top_logprobs: Annotated[int | None, _only(None, 0, why=f"top_logprobs {_NOT_HERE}")] = None
    background: Annotated[
        bool | None,
        _only(None, False, why=f"background {_NOT_HERE}: a response runs while its request is open"),
    ] = None
    reasoning: Annotated[Any, _only(None, why=f"reasoning {_NOT_HERE}")] = None
    conversation: Annotated[Any, _only(None, why=f"conversation {_NOT_HERE}; use previous_response_id")] = (
        None
    )
    prompt: Annotated[Any, _only(None, why="prompt templates are not supported by this gateway")] = None
    max_tool_calls: Annotated[Any, _only(None, why=f"max_tool_calls {_NOT_HERE}")] = None
    prompt_cache_key: Annotated[Any, _only(None, why=f"prompt_cache_key {_NOT_HERE}")] = None
    prompt_cache_retention: Annotated[Any, _only(None, why=f"prompt_cache_retention {_NOT_HERE}")] = None
    prompt_cache_options: Annotated[Any, _only(None, why=f"prompt_cache_options {_NOT_HERE}")] = None
    context_management: Annotated[Any, _only(None, why=f"context_management {_NOT_HERE}")] = None
    moderation: Annotated[Any, _only(None, why=f"moderation {_NOT_HERE}; guardrails check every request")] = (
        None
    )

    @model_validator(mode="before")
    @classmethod
    def _guard(cls, data: Any) -> Any:
        return guard_request(data, frozenset(cls.model_fields), tolerated=frozenset(), is_schema=_is_schema)

    @property
    def streamed(self) -> bool:
        return bool(self.stream)

    @property
    def kept(self) -> bool:
        return self.store is not False

    @property
    def end_user(self) -> str | None:
        return self.user or self.safety_identifier


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def to_chat(request: ResponsesRequest, history: Sequence[dict[str, Any]] = ()) -> ChatCompletionRequest:
    """The internal chat request: instructions, the kept conversation `history` of the previous
    response, then the input."""
    messages: list[dict[str, Any]] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    messages += [*history, *input_messages(request.input)]
    data = _drop_none(
        {
            "model": request.model,
            "messages": messages,
            "stream": request.streamed,
            "max_tokens": request.max_output_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "user": request.end_user,
            "tools": chat_tools(request.tools) if request.tools is not None else None,
            "tool_choice": chat_tool_choice(request.tool_choice) if request.tool_choice is not None else None,
            "response_format": response_format(request.text),
            "parallel_tool_calls": request.parallel_tool_calls,
            "retrieval": request.retrieval.model_dump(exclude_none=True) if request.retrieval else None,
            "cache": request.cache,
        }
    )
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        raise ApiError(
            400, f"this request cannot be served: {first.get('msg', 'invalid')}", code="invalid_value"
        ) from None


def conversation_of(
    request: ResponsesRequest, history: Sequence[dict[str, Any]], answer: dict[str, Any]
) -> list[dict[str, Any]]:
    """What a follow-up continues: the history, this input, this answer (instructions stay behind)."""
    return [*history, *input_messages(request.input), answer]
