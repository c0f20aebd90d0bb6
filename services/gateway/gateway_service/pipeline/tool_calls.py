"""Tools and structured output: the OpenAI request fields in, tool calls out.

The gateway checks only their outline; the upstream model server validates the
rest, and generation passes them through unchanged as JSON.
"""

from collections.abc import Iterable
from typing import Any

import orjson
from llmsuite.generation.v1 import generation_pb2
from llmsuite_common.rules.schema_outline import InvalidSchema, check_schema_outline

MAX_TOOLS = 128
TOOL_CHOICES = ("none", "auto", "required")


def _schema(schema: Any, where: str) -> None:
    # The model server resolves these schemas: a remote or file `$ref` would make it fetch it.
    try:
        check_schema_outline(schema)
    except InvalidSchema as err:
        raise ValueError(f"{where}: {err}") from None


def check_tools(value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    for i, tool in enumerate(value or ()):
        function = tool.get("function")
        if (
            tool.get("type") != "function"
            or not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
        ):
            raise ValueError("each tool must be {'type': 'function', 'function': {'name': ..., ...}}")
        _schema(function.get("parameters"), f"tools[{i}].function.parameters")
    return value


def check_tool_choice(value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if isinstance(value, str) and value not in TOOL_CHOICES:
        raise ValueError(f"tool_choice must be one of {', '.join(TOOL_CHOICES)} or an object")
    return value


def check_response_format(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and value.get("type") not in ("text", "json_object", "json_schema"):
        raise ValueError("response_format.type must be text, json_object or json_schema")
    if value is not None:
        _schema(value.get("json_schema"), "response_format.json_schema")
    return value


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def generate_fields(body: Any) -> dict[str, Any]:
    """GenerateRequest fields for a chat request's tools, tool_choice and response_format."""
    out = {}
    if body.tools is not None:
        out["tools_json"] = _json(body.tools)
    if body.tool_choice is not None:
        out["tool_choice_json"] = _json(body.tool_choice)
    if body.response_format is not None:
        out["response_format_json"] = _json(body.response_format)
    return out


def message_fields(message: Any) -> dict[str, str]:
    """ChatMessage fields for a tool result or an assistant turn that called tools."""
    out = {}
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        out["tool_calls_json"] = _json(message.tool_calls)
    return out


def delta_tool_calls(calls: Iterable[generation_pb2.ToolCallDelta]) -> list[dict[str, Any]]:
    """Streamed pieces as OpenAI sends them: id, type and name only on a call's first piece."""
    out = []
    for call in calls:
        piece: dict[str, Any] = {"index": call.index}
        if call.id:
            piece["id"] = call.id
        if call.type or call.id:
            piece["type"] = call.type or "function"
        function: dict[str, Any] = {"arguments": call.arguments}
        if call.name:
            function["name"] = call.name
        piece["function"] = function
        out.append(piece)
    return out


def whole_tool_calls(calls: Iterable[generation_pb2.ToolCallDelta]) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "type": c.type or "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in calls
    ]
