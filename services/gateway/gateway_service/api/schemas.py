"""The accepted shape of OpenAI chat requests; unknown top-level fields are refused (request_guards.py).

Every OpenAI field is either acted on (passed to generation, and by it to the upstream) or refused
with 400 naming it when it asks for what the gateway cannot do (`n` > 1, `logprobs`, `store`, a
service tier); none is accepted and dropped.
"""

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import InitErrorDetails, PydanticCustomError

from ..pipeline.tool_calls import MAX_TOOLS, check_response_format, check_tool_choice, check_tools
from .request_guards import guard_request

MAX_STOP_SEQUENCES = 4
MAX_CONTENT_PARTS = 256
MAX_IMAGE_URL_CHARS = 32 * 1024 * 1024
# Images are passed on by reference (or inline as data: URLs): the gateway never fetches them.
IMAGE_URL_PATTERN = r"^(https?://|data:image/)"


class ImageUrl(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=MAX_IMAGE_URL_CHARS, pattern=IMAGE_URL_PATTERN)
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


class ImagePart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["image_url"]
    image_url: ImageUrl


class _Parts(BaseModel):
    content: list[Annotated[TextPart | ImagePart, Field(discriminator="type")]] = Field(
        max_length=MAX_CONTENT_PARTS
    )


def _validated_parts(content: list[Any]) -> list[TextPart | ImagePart]:
    try:
        return _Parts.model_validate({"content": content}).content
    except ValidationError as err:
        # Without the union's tag in the location: content[1].image_url.url, not
        # content[1].image_url.image_url.url.
        errors: list[InitErrorDetails] = [
            {
                "type": e["type"],
                "loc": (*e["loc"][:2], *e["loc"][3:]) if len(e["loc"]) > 2 else e["loc"],
                "input": e["input"],
                "ctx": e.get("ctx", {}),
            }
            for e in err.errors()
        ]
        raise ValidationError.from_exception_data(err.title, errors) from None


def split_parts(message: Any) -> Any:
    """A message whose content is a list of parts: its text parts joined by newlines as `content`,
    its image parts as `images` (user turns only). Other part types are refused, naming the part."""
    if not isinstance(message, dict):
        return message
    # Images come from content parts only.
    message = {k: v for k, v in message.items() if k != "images"}
    if not isinstance(message.get("content"), list):
        return message
    parts = _validated_parts(message["content"])
    images = [p.image_url for p in parts if isinstance(p, ImagePart)]
    if images and message.get("role") != "user":
        raise PydanticCustomError(
            "unsupported", "image_url content parts are accepted in user messages only", {}
        )
    message["content"] = "\n".join(p.text for p in parts if isinstance(p, TextPart))
    if images:
        message["images"] = images
    return message


def _stop_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


_CONTENT_SCHEMA = {
    "anyOf": [
        {"type": "string"},
        {
            "type": "array",
            "items": {
                "type": "object",
                "oneOf": [
                    {
                        "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
                        "required": ["type", "text"],
                    },
                    {
                        "properties": {
                            "type": {"const": "image_url"},
                            "image_url": {
                                "type": "object",
                                "properties": {
                                    "url": {"type": "string", "pattern": IMAGE_URL_PATTERN},
                                    "detail": {"enum": ["auto", "low", "high"]},
                                },
                                "required": ["url"],
                            },
                        },
                        "required": ["type", "image_url"],
                    },
                ],
            },
        },
        {"type": "null"},
    ]
}

Content = Annotated[str | None, WithJsonSchema(_CONTENT_SCHEMA)]
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
    # The image parts of a user turn's content (split_parts); not a field a client sends.
    images: SkipJsonSchema[list[ImageUrl]] = Field(default_factory=list, max_length=MAX_CONTENT_PARTS)

    @model_validator(mode="before")
    @classmethod
    def _parts(cls, data: Any) -> Any:
        return split_parts(data)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class RetrievalOptions(BaseModel):
    """Extension: answer from a collection's nearest chunks."""

    model_config = ConfigDict(extra="ignore")

    collection: str = Field(min_length=1, max_length=128)
    k: int | None = Field(None, ge=1, le=100)


def _refuse_unless(*allowed: Any, why: str) -> AfterValidator:
    """A field asking for what the gateway cannot do: accepted only at values that ask for nothing;
    any other is 400 `unsupported` naming the field."""

    def check(value: Any) -> Any:
        if value not in allowed:
            raise PydanticCustomError("unsupported", why, {})
        return value

    return AfterValidator(check)


_ONE_CHOICE = "n must be 1: one choice per request is supported"
_NO_LOGPROBS = "logprobs are not supported: they would show tokens the output guardrails hold back or redact"
_NOT_STORED = "store: true is not supported: the gateway keeps no chat completions for later retrieval"
_SERVICE_TIERS = ("auto", "default")
_ONE_TIER = "service_tier must be 'auto' or 'default': the gateway serves one tier"
TokenId = Annotated[str, Field(pattern=r"^[0-9]{1,12}$")]


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
    # Passed to the upstream as given.
    presence_penalty: float | None = Field(None, ge=-2, le=2, allow_inf_nan=False)
    frequency_penalty: float | None = Field(None, ge=-2, le=2, allow_inf_nan=False)
    logit_bias: dict[TokenId, Annotated[int, Field(ge=-100, le=100)]] | None = Field(None, max_length=1024)
    parallel_tool_calls: bool | None = None
    # Accepted only where they ask for nothing the gateway cannot do.
    n: Annotated[int | None, _refuse_unless(None, 1, why=_ONE_CHOICE)] = None
    logprobs: Annotated[bool | None, _refuse_unless(None, False, why=_NO_LOGPROBS)] = None
    top_logprobs: Annotated[int | None, _refuse_unless(None, 0, why=_NO_LOGPROBS)] = None
    store: Annotated[bool | None, _refuse_unless(None, False, why=_NOT_STORED)] = None
    service_tier: Annotated[str | None, _refuse_unless(None, *_SERVICE_TIERS, why=_ONE_TIER)] = None
    # Tags of a stored completion at OpenAI; without `store` they have no effect there either.
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = Field(None, max_length=16)

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
