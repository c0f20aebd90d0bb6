"""Turns a GenerateRequest into the body of an OpenAI chat completion: streamed, or whole when the
caller asked for the whole answer at once. And into what routing looks at, to choose where it goes."""

import math
from collections.abc import Callable
from typing import Any, Protocol

import orjson
from llmsuite.generation.v1 import generation_pb2
from llmsuite_common.errors import InvalidArgument

from .routing import Deployment, Route, RouteRequest
from .usage import estimate_prompt_tokens

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


def merged_stops(route_stops: list[str], request_stops: list[str]) -> list[str]:
    """The model's own stops first, then the request's; no duplicates, no empty strings."""
    return list(dict.fromkeys(s for s in (*route_stops, *request_stops) if s))


class RouteLimits(Protocol):
    @property
    def stop(self) -> tuple[str, ...] | list[str]: ...

    @property
    def max_tokens(self) -> int | None: ...

    @property
    def vision(self) -> bool: ...


def effective_max_tokens(
    route_max: int | None, requested: int | None, org_max: int | None = None
) -> int | None:
    """The request's value, capped by the model's and the org's; the tightest cap when the request has none."""
    caps = [c for c in (route_max, org_max) if c is not None]
    if requested is not None:
        caps.append(requested)
    return min(caps) if caps else None


def _json_field(
    request: generation_pb2.GenerateRequest, name: str, param: str, kinds: tuple[type, ...]
) -> Any:
    raw = getattr(request, name)
    if not raw:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidArgument(f"{param} is not valid JSON", param=param) from None
    if not isinstance(value, kinds):
        raise InvalidArgument(f"{param} has the wrong type", param=param)
    return value


def _tools(request: generation_pb2.GenerateRequest) -> list[Any] | None:
    tools = _json_field(request, "tools_json", "tools", (list,))
    if tools is not None and not all(isinstance(t, dict) for t in tools):
        raise InvalidArgument("tools must be a list of objects", param="tools")
    return tools


def _sampling(request: generation_pb2.GenerateRequest, name: str, low: float, high: float) -> float | None:
    if not request.HasField(name):  # type: ignore[arg-type]  # one of the optional sampling fields
        return None
    value = getattr(request, name)
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidArgument(f"{name} must be between {low:g} and {high:g}", param=name)
    return value


def has_images(request: generation_pb2.GenerateRequest) -> bool:
    return any(m.images for m in request.messages)


def _content(message: Any) -> str | list[dict[str, Any]]:
    """The text, or with images the OpenAI content parts: the text first, then each image."""
    if not message.images:
        return str(message.content)
    parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
    for image in message.images:
        url: dict[str, str] = {"url": image.url}
        if image.detail:
            url["detail"] = image.detail
        parts.append({"type": "image_url", "image_url": url})
    return parts


def _messages(request: generation_pb2.GenerateRequest, route: RouteLimits) -> list[dict[str, Any]]:
    if not request.messages:
        raise InvalidArgument("messages must not be empty", param="messages")
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(request.messages):
        if message.role not in ROLES:
            raise InvalidArgument(
                f"messages[{i}].role must be one of {', '.join(sorted(ROLES))}", param=f"messages[{i}].role"
            )
        if message.images and not route.vision:
            raise InvalidArgument(
                f"model '{request.model}' does not accept images (its routing entry does not declare vision)",
                code="images_not_supported",
                param=f"messages[{i}].content",
            )
        entry: dict[str, Any] = {"role": message.role, "content": _content(message)}
        if message.name:
            entry["name"] = message.name
        if message.tool_call_id:
            entry["tool_call_id"] = message.tool_call_id
        if message.tool_calls_json:
            param = f"messages[{i}].tool_calls"
            try:
                calls = orjson.loads(message.tool_calls_json)
            except orjson.JSONDecodeError:
                raise InvalidArgument(f"{param} is not valid JSON", param=param) from None
            if not isinstance(calls, list):
                raise InvalidArgument(f"{param} must be a list", param=param)
            entry["tool_calls"] = calls
            if not message.content:
                entry["content"] = None
        messages.append(entry)
    return messages


def build_body(
    request: generation_pb2.GenerateRequest,
    route: RouteLimits,
    upstream_model: str,
    *,
    org_max_tokens: int | None = None,
) -> dict[str, Any]:
    messages = _messages(request, route)
    body: dict[str, Any] = {"model": upstream_model, "messages": messages}
    if request.whole_answer:
        # One JSON answer (usage included) instead of one SSE event per token.
        body["stream"] = False
    else:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if request.HasField("max_tokens") and request.max_tokens == 0:
        raise InvalidArgument("max_tokens must be at least 1", param="max_tokens")
    max_tokens = effective_max_tokens(
        route.max_tokens, request.max_tokens if request.HasField("max_tokens") else None, org_max_tokens
    )
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    temperature = _sampling(request, "temperature", 0.0, 2.0)
    if temperature is not None:
        body["temperature"] = temperature
    top_p = _sampling(request, "top_p", 0.0, 1.0)
    if top_p is not None:
        body["top_p"] = top_p
    stops = merged_stops(list(route.stop), list(request.stop))
    if stops:
        body["stop"] = stops
    if request.HasField("seed"):
        body["seed"] = request.seed
    _penalties(request, body)
    tools = _tools(request)
    if tools is not None:
        body["tools"] = tools
    if request.HasField("parallel_tool_calls"):
        body["parallel_tool_calls"] = request.parallel_tool_calls
    tool_choice = _json_field(request, "tool_choice_json", "tool_choice", (str, dict))
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    response_format = _json_field(request, "response_format_json", "response_format", (dict,))
    if response_format is not None:
        body["response_format"] = response_format
    return body


def _penalties(request: generation_pb2.GenerateRequest, body: dict[str, Any]) -> None:
    """presence_penalty, frequency_penalty and logit_bias, passed on as the client gave them."""
    for name in ("presence_penalty", "frequency_penalty"):
        value = _sampling(request, name, -2.0, 2.0)
        if value is not None:
            body[name] = value
    logit_bias = _json_field(request, "logit_bias_json", "logit_bias", (dict,))
    if logit_bias is not None:
        body["logit_bias"] = logit_bias


def route_request(request: generation_pb2.GenerateRequest, org_id: str) -> RouteRequest:
    """What routing may look at: the name asked for and the request's shape."""
    return RouteRequest(
        model=request.model,
        org_id=org_id,
        prompt_tokens=estimate_prompt_tokens(m.content for m in request.messages),
        max_tokens=request.max_tokens if request.HasField("max_tokens") else None,
        has_tools=bool(request.tools_json),
    )


def bodies_for(
    request: generation_pb2.GenerateRequest, route: Route, *, org_max_tokens: int | None
) -> Callable[[Route, Deployment], dict[str, Any]]:
    """The body for whichever route and deployment an attempt goes to. The request is checked now,
    against `route`'s first deployment: bad input fails before any upstream is chosen or tried."""
    build_body(request, route, route.deployments[0].upstream_model, org_max_tokens=org_max_tokens)

    def body_for(attempt_route: Route, deployment: Deployment) -> dict[str, Any]:
        return build_body(request, attempt_route, deployment.upstream_model, org_max_tokens=org_max_tokens)

    return body_for
