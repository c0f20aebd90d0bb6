"""The accepted shape of OpenAI chat requests; unknown top-level fields are refused (request_guards.py)."""

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from ..pipeline.tool_calls import MAX_TOOLS, check_response_format, check_tool_choice, check_tools
from .request_guards import guard_request

MAX_STOP_SEQUENCES = 4


def _text_of_parts(value: Any) -> Any:
    """Content may be a string or a list of text parts; other part types are not supported."""
    if not isinstance(value, list):
        return value
    texts = []
    for part in value:
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise ValueError("only text content parts ({'type': 'text', 'text': ...}) are supported")
        texts.append(part["text"])
    return "\n".join(texts)


def _stop_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


_CONTENT_SCHEMA = {
    "anyOf": [
        {"type": "string"},
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
                "required": ["type", "text"],
            },
        },
        {"type": "null"},
    ]
}

Content = Annotated[str | None, BeforeValidator(_text_of_parts), WithJsonSchema(_CONTENT_SCHEMA)]
# The length bound belongs to the list alone: on the union it would be applied to an explicit null too.
Stop = Annotated[
    Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=MAX_STOP_SEQUENCES)] | None,
    BeforeValidator(_stop_list),
]


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Content = None
    name: str | None = Field(None, max_length=256)
    tool_call_id: str | None = Field(None, max_length=256)
    tool_calls: list[dict[str, Any]] | None = Field(None, max_length=MAX_TOOLS)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class RetrievalOptions(BaseModel):
    """Extension: answer from a collection's nearest chunks."""

    model_config = ConfigDict(extra="ignore")

    collection: str = Field(min_length=1, max_length=128)
    k: int | None = Field(None, ge=1, le=100)


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, max_length=256)
    messages: list[Message] = Field(min_length=1, max_length=4096)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    max_completion_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float | None = Field(None, ge=0, le=2, allow_inf_nan=False)
    top_p: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    stop: Stop = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    user: str | None = Field(None, max_length=256)
    retrieval: RetrievalOptions | None = None
    tools: Annotated[list[dict[str, Any]] | None, AfterValidator(check_tools)] = Field(
        None, max_length=MAX_TOOLS
    )
    tool_choice: Annotated[str | dict[str, Any] | None, AfterValidator(check_tool_choice)] = None
    response_format: Annotated[dict[str, Any] | None, AfterValidator(check_response_format)] = None
    # Extension: opt in to (true) or out of (false) the result cache; by default only temperature 0 is cached.
    cache: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _guard(cls, data: Any) -> Any:
        # Unknown top-level fields are refused like the OpenAI API does; see request_guards.py.
        return guard_request(data, frozenset(cls.model_fields))

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
