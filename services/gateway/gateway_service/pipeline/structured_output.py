"""response_format on non-streaming requests: the answer is validated against the schema (and
repaired when almost valid) by guardrails; an answer still invalid is re-asked with its errors,
within the org policy's bounds on attempts and tokens, and every attempt's usage is billed.

A streamed answer has left before it could be validated, so streams are not wrapped here.
"""

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2
from llmsuite.guardrails.v1 import guardrails_pb2, guardrails_pb2_grpc

from ..api.errors import ApiError
from ..api.guardrails_summary import current_summary
from .backend_call import backend_call
from .deadline import Deadline
from .generation_reader import GenerationReader, incomplete_stream

# Hard ceiling whatever a policy says; policies allow at most 5 re-asks.
MAX_ATTEMPTS = 6
REASK_PROMPT = (
    "Your previous reply is not valid for the required JSON format. Problems:\n{errors}\n"
    "Reply again with only the corrected JSON document, no other text."
)


@dataclass(frozen=True)
class StructuredSpec:
    # JSON Schema text; empty means any JSON object (json_object mode).
    schema_json: str


def structured_spec(stream: bool, response_format: dict[str, Any] | None) -> StructuredSpec | None:
    if stream or not response_format:
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return StructuredSpec("")
    if kind == "json_schema":
        return StructuredSpec(requested_schema(response_format) or "")
    return None


def requested_schema(response_format: dict[str, Any] | None) -> str | None:
    """The JSON Schema text a request's response_format names (streamed or not), if any."""
    if not response_format or response_format.get("type") != "json_schema":
        return None
    schema = (response_format.get("json_schema") or {}).get("schema")
    return json.dumps(schema) if isinstance(schema, dict) else None


async def check_schema(
    stub: guardrails_pb2_grpc.GuardrailsServiceStub,
    context: common_pb2.RequestContext,
    schema_json: str,
    deadline: Deadline,
) -> None:
    """Guardrails compiles the schema before any model is asked with it: a schema it cannot use
    (a `$ref` cycle, a pattern that backtracks without bound) is the caller's 400 now, not a
    model call billed first, and never reaches the model server, which compiles it too."""
    request = guardrails_pb2.ValidateStructuredOutputRequest(
        context=context, json_schema=schema_json, schema_only=True
    )
    await backend_call(stub.ValidateStructuredOutput, request, deadline, "guardrails")


async def _drain(reader: GenerationReader) -> tuple[str, generation_pb2.Final]:
    parts: list[str] = []
    while (event := await reader.next()) is not None:
        kind = event.WhichOneof("event")
        if kind == "delta":
            parts.append(event.delta.content)
        elif kind == "final":
            await reader.finish()
            return "".join(parts), event.final
    raise incomplete_stream()


def reask_request(
    request: generation_pb2.GenerateRequest, answer: str, errors: list[str], max_tokens: int
) -> generation_pb2.GenerateRequest:
    again = generation_pb2.GenerateRequest()
    again.CopyFrom(request)
    again.messages.add(role="assistant", content=answer)
    again.messages.add(role="user", content=REASK_PROMPT.format(errors="\n".join(f"- {e}" for e in errors)))
    again.max_tokens = min(max_tokens, request.max_tokens) if request.HasField("max_tokens") else max_tokens
    return again


class StructuredReader(GenerationReader):
    """Reads like a GenerationReader: one delta with the validated JSON, then Final."""

    def __init__(
        self,
        open_reader: Callable[[generation_pb2.GenerateRequest], GenerationReader],
        request: generation_pb2.GenerateRequest,
        spec: StructuredSpec,
        stub: guardrails_pb2_grpc.GuardrailsServiceStub,
        deadline: Deadline,
    ) -> None:
        # Not super().__init__: there is no single call; each attempt opens its own reader.
        self._open = open_reader
        self._request = request
        self._spec = spec
        self._stub = stub
        self._deadline = deadline
        self._current: GenerationReader | None = None
        self._pending: asyncio.Future | None = None
        self._events: list[generation_pb2.GenerateResponse] | None = None
        self._summary = current_summary()

    async def _validate(
        self, context: common_pb2.RequestContext, text: str, attempt: int
    ) -> guardrails_pb2.ValidateStructuredOutputResponse:
        request = guardrails_pb2.ValidateStructuredOutputRequest(
            context=context, text=text, json_schema=self._spec.schema_json, attempt=attempt
        )
        reply: guardrails_pb2.ValidateStructuredOutputResponse = await backend_call(
            self._stub.ValidateStructuredOutput, request, self._deadline, "guardrails"
        )
        return reply

    async def _run(self) -> list[generation_pb2.GenerateResponse]:
        request = self._request
        usage = common_pb2.Usage()
        reask_tokens = 0
        for attempt in range(MAX_ATTEMPTS):
            self._current = self._open(request)
            text, final = await _drain(self._current)
            usage.prompt_tokens += final.usage.prompt_tokens
            usage.completion_tokens += final.usage.completion_tokens
            usage.total_tokens += (
                final.usage.total_tokens or final.usage.prompt_tokens + final.usage.completion_tokens
            )
            if attempt:
                reask_tokens += final.usage.completion_tokens
            reply = await self._validate(request.context, text, attempt)
            if reply.valid:
                self._note(f"reasked:{attempt}" if attempt else ("repaired" if reply.repaired else "valid"))
                done = generation_pb2.Final()
                done.CopyFrom(final)
                done.usage.CopyFrom(usage)  # every attempt is billed
                return [
                    generation_pb2.GenerateResponse(delta=generation_pb2.Delta(content=reply.text)),
                    generation_pb2.GenerateResponse(final=done),
                ]
            budget = reply.reask_max_tokens - reask_tokens
            if attempt >= min(reply.max_reasks, MAX_ATTEMPTS - 1) or budget <= 0:
                self._note("invalid")
                problems = "; ".join(reply.errors) or "not JSON"
                raise ApiError(
                    502,
                    f"the model's answer does not match response_format after {attempt} re-ask(s): {problems}",
                    code="invalid_response_format",
                )
            request = reask_request(request, text, list(reply.errors), budget)
        raise AssertionError("unreachable: the loop returns or raises")

    def _note(self, outcome: str) -> None:
        if self._summary is not None:
            self._summary.add("structured", outcome, ["structured"], 0)

    async def _read(self) -> generation_pb2.GenerateResponse | None:
        if self._events is None:
            self._events = await self._run()
        return self._events.pop(0) if self._events else None

    async def finish(self) -> None:
        return None

    def cancel(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
        if self._current is not None:
            self._current.cancel()
