"""Turns a GenerateRequest into the body of an OpenAI streaming chat completion."""

import math
from typing import Any

from llmsuite.generation.v1 import generation_pb2

from llmsuite_common.errors import InvalidArgument

from .settings import ModelRoute

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


def merged_stops(route_stops: list[str], request_stops: list[str]) -> list[str]:
    """The model's own stops first, then the request's; no duplicates, no empty strings."""
    return list(dict.fromkeys(s for s in (*route_stops, *request_stops) if s))


def effective_max_tokens(route_max: int | None, requested: int | None) -> int | None:
    """The request's value, capped by the model's; the model's when the request has none."""
    if requested is None:
        return route_max
    return requested if route_max is None else min(requested, route_max)


def _sampling(request: generation_pb2.GenerateRequest, name: str, low: float, high: float) -> float | None:
    if not request.HasField(name):
        return None
    value = getattr(request, name)
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidArgument(f"{name} must be between {low:g} and {high:g}", param=name)
    return value


def build_body(request: generation_pb2.GenerateRequest, route: ModelRoute) -> dict[str, Any]:
    if not request.messages:
        raise InvalidArgument("messages must not be empty", param="messages")
    messages: list[dict[str, str]] = []
    for i, message in enumerate(request.messages):
        if message.role not in ROLES:
            raise InvalidArgument(
                f"messages[{i}].role must be one of {', '.join(sorted(ROLES))}", param=f"messages[{i}].role"
            )
        entry = {"role": message.role, "content": message.content}
        if message.name:
            entry["name"] = message.name
        messages.append(entry)

    body: dict[str, Any] = {
        "model": route.upstream_model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.HasField("max_tokens") and request.max_tokens == 0:
        raise InvalidArgument("max_tokens must be at least 1", param="max_tokens")
    max_tokens = effective_max_tokens(
        route.max_tokens, request.max_tokens if request.HasField("max_tokens") else None
    )
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    temperature = _sampling(request, "temperature", 0.0, 2.0)
    if temperature is not None:
        body["temperature"] = temperature
    top_p = _sampling(request, "top_p", 0.0, 1.0)
    if top_p is not None:
        body["top_p"] = top_p
    stops = merged_stops(route.stop, list(request.stop))
    if stops:
        body["stop"] = stops
    if request.HasField("seed"):
        body["seed"] = request.seed
    return body
