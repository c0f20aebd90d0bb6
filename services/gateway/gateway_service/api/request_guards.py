"""Checks on the raw request object before field validation: nesting depth, smuggled provider
settings, and top-level fields the API does not know.

Clients never choose where or with which credentials the gateway calls an upstream (LiteLLM
CVE-2024-6587): keys like `api_base` or `api_key` are refused at any depth, except inside JSON
Schemas the client supplies (tool parameters, response formats), where they are property names.
"""

from collections.abc import Callable
from typing import Any

from pydantic_core import PydanticCustomError

MAX_JSON_DEPTH = 32
MAX_JSON_NODES = 200_000
# Fields accepted beyond a request's own (none for chat: every OpenAI field it accepts is declared,
# acted on or refused where it asks for what the gateway cannot do).
TOLERATED_FIELDS: frozenset[str] = frozenset()
FORBIDDEN_KEYS = frozenset(
    {
        "api_base",
        "base_url",
        "api_key",
        "api_version",
        "api_type",
        "custom_llm_provider",
        "provider",
        "upstream",
        "upstream_url",
        "endpoint",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "vertex_credentials",
        "azure_ad_token",
        "extra_headers",
    }
)


def _is_schema(path: tuple[Any, ...]) -> bool:
    """tools[i].function.parameters and response_format.json_schema hold client JSON Schemas."""
    return (len(path) >= 4 and path[0] == "tools" and path[2] == "function" and path[3] == "parameters") or (
        len(path) >= 2 and path[0] == "response_format" and path[1] == "json_schema"
    )


def _walk(data: dict[str, Any], is_schema: Callable[[tuple[Any, ...]], bool]) -> None:
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    nodes = 0
    while stack:
        value, path = stack.pop()
        nodes += 1
        if nodes > MAX_JSON_NODES:
            raise PydanticCustomError(
                "too_large", "the request has more than {n} JSON values", {"n": MAX_JSON_NODES}
            )
        if len(path) > MAX_JSON_DEPTH:
            raise PydanticCustomError(
                "too_deep", "the request nests JSON deeper than {n} levels", {"n": MAX_JSON_DEPTH}
            )
        if isinstance(value, dict):
            schema = is_schema(path)
            for key, item in value.items():
                if not schema and isinstance(key, str) and key.lower() in FORBIDDEN_KEYS:
                    where = ".".join(str(p) for p in (*path, key))
                    raise PydanticCustomError(
                        "forbidden_parameter",
                        "'{where}' is not accepted: the gateway decides where and how to call upstream models",
                        {"where": where},
                    )
                stack.append((item, (*path, key)))
        elif isinstance(value, list):
            stack.extend((item, (*path, i)) for i, item in enumerate(value))


def guard_request(
    data: Any,
    known_fields: frozenset[str],
    *,
    tolerated: frozenset[str] = TOLERATED_FIELDS,
    is_schema: Callable[[tuple[Any, ...]], bool] = _is_schema,
) -> Any:
    """`tolerated` and `is_schema` (where client JSON Schemas sit) are those of chat requests unless
    another API's request says otherwise."""
    if not isinstance(data, dict):
        return data
    _walk(data, is_schema)
    for name in data:
        if name not in known_fields and name not in tolerated:
            raise PydanticCustomError(
                "unrecognized_argument", "Unrecognized request argument supplied: {name}", {"name": name}
            )
    return data
