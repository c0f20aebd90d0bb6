"""OpenAI's legacy Completions API (POST /v1/completions) as a door onto the chat pipeline: the
request translated into the internal chat request, and text_completion objects back (whole, or
one per streamed delta, then [DONE]).

| Completions request | chat request |
|---|---|
| `prompt` (a string, or a list of one string) | one user message (the upstream is a chat model: the prompt is a turn, not raw text to continue) |
| `max_tokens` (16 when unset, as OpenAI) | `max_tokens` |
| `temperature`, `top_p`, `stop`, `seed`, `presence_penalty`, `frequency_penalty`, `logit_bias`, `user` | the same |
| `stream`, `stream_options.include_usage` | the same |
| `retrieval`, `cache` (llmsuite's extensions) | the same |

Refused with 400 naming the field, never dropped: a prompt of token ids, several prompts in one
request, `suffix`, `echo`, `logprobs`, `best_of` > 1 and `n` > 1.
"""

import uuid
from collections.abc import Sequence
from typing import Annotated, Any

import orjson
from llmsuite.generation.v1 import generation_pb2
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
from pydantic_core import PydanticCustomError

from ..completions import DEFAULT_FINISH_REASON, CompletionMeta, usage
from ..errors import ApiError, envelope, note_error
from ..request_guards import guard_request
from ..schemas import ChatCompletionRequest, RetrievalOptions, Stop, StreamOptions, TokenId
from ..serve_chat import Door

ROUTE = "/v1/completions"
# OpenAI's default for this API when a request sets none.
DEFAULT_MAX_TOKENS = 16


def _only(*allowed: Any, why: str) -> AfterValidator:
    def check(value: Any) -> Any:
        if value not in allowed:
            raise PydanticCustomError("unsupported", why, {})
        return value

    return AfterValidator(check)


def _one_prompt(value: Any) -> Any:
    """A prompt is a string, or a list holding one string; token ids and batches are refused."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, int) or isinstance(v, list) for v in value):
        raise PydanticCustomError(
            "unsupported", "prompts of token ids are not supported: send the prompt as text", {}
        )
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    if isinstance(value, list) and len(value) > 1:
        raise PydanticCustomError(
            "unsupported", "one prompt per request is supported: send each prompt as its own request", {}
        )
    raise ValueError("prompt must be a string or a list of one string")


_PROMPT_SCHEMA = {
    "anyOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 1},
    ]
}
_NO_LOGPROBS = "logprobs are not supported: they would show tokens the output guardrails hold back or redact"


class CompletionsRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, max_length=256)
    prompt: Annotated[str, BeforeValidator(_one_prompt), WithJsonSchema(_PROMPT_SCHEMA)] = Field(
        max_length=4_000_000
    )
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float | None = Field(None, ge=0, le=2, allow_inf_nan=False)
    top_p: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    stop: Stop = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    user: str | None = Field(None, max_length=256)
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2, allow_inf_nan=False)
    frequency_penalty: float | None = Field(None, ge=-2, le=2, allow_inf_nan=False)
    logit_bias: dict[TokenId, Annotated[int, Field(ge=-100, le=100)]] | None = Field(None, max_length=1024)
    n: Annotated[int | None, _only(None, 1, why="n must be 1: one choice per request is supported")] = None
    best_of: Annotated[int | None, _only(None, 1, why="best_of must be 1: one candidate per request")] = None
    echo: Annotated[
        bool | None, _only(None, False, why="echo is not supported: the prompt is not returned")
    ] = None
    suffix: Annotated[
        str | None, _only(None, "", why="suffix is not supported: the upstreams are chat models")
    ] = None
    logprobs: Annotated[int | None, _only(None, why=_NO_LOGPROBS)] = None
    # llmsuite's extensions, as on chat.
    retrieval: RetrievalOptions | None = None
    cache: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _guard(cls, data: Any) -> Any:
        return guard_request(data, frozenset(cls.model_fields), tolerated=frozenset())


def to_chat(request: CompletionsRequest) -> ChatCompletionRequest:
    fields = request.model_dump(
        exclude={"prompt", "max_tokens", "n", "best_of", "echo", "suffix", "logprobs"}, exclude_none=True
    )
    fields["messages"] = [{"role": "user", "content": request.prompt}]
    fields["max_tokens"] = request.max_tokens or DEFAULT_MAX_TOKENS
    try:
        return ChatCompletionRequest.model_validate(fields)
    except ValidationError as err:
        reason = err.errors()[0]["msg"] if err.errors() else "invalid value"
        raise ApiError(400, f"this request cannot be served: {reason}", code="invalid_value") from None


# --- answers ---------------------------------------------------------------------------------------


def new_completion_id() -> str:
    return "cmpl-" + uuid.uuid4().hex


def _completion(meta: CompletionMeta, choices: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": meta.id,
        "object": "text_completion",
        "created": meta.created,
        "model": meta.model,
        "choices": choices,
    }
    if meta.citations is not None:
        out["citations"] = meta.citations
    return out


def _choice(text: str, finish_reason: str | None) -> dict[str, Any]:
    return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}


def completion_object(meta: CompletionMeta, text: str, final: generation_pb2.Final) -> dict[str, Any]:
    out = _completion(meta, [_choice(text, final.finish_reason or DEFAULT_FINISH_REASON)])
    out["usage"] = usage(final.usage)
    return out


class TextChunks:
    """text_completion chunks of a stream: one per delta, the finish reason, then (if asked) usage."""

    def __init__(self, meta: CompletionMeta, body: ChatCompletionRequest) -> None:
        self._meta = meta
        self._include_usage = body.include_usage

    def delta(self, content: str, tool_calls: Sequence[generation_pb2.ToolCallDelta] = ()) -> bytes:
        return orjson.dumps(_completion(self._meta, [_choice(content, None)]))

    def finish(self, final: generation_pb2.Final) -> list[bytes]:
        last = _completion(self._meta, [_choice("", final.finish_reason or DEFAULT_FINISH_REASON)])
        payloads = [orjson.dumps(last)]
        if self._include_usage:
            payloads.append(orjson.dumps({**_completion(self._meta, []), "usage": usage(final.usage)}))
        return payloads

    @staticmethod
    def error(err: ApiError) -> bytes:
        note_error(err)
        return orjson.dumps(envelope(err))


COMPLETIONS = Door(route=ROUTE, new_id=new_completion_id, whole=completion_object, encoder=TextChunks)
