"""Request validation failures as OpenAI errors naming the offending field."""

from collections.abc import Mapping, Sequence
from typing import Any

from .errors import ApiError

# Error types of request_guards.py, reported as the error code.
_GUARD_CODES = {"forbidden_parameter", "unrecognized_argument", "too_deep", "too_large", "unsupported"}

# Location prefixes FastAPI adds that are not part of the client's field path.
_SOURCES = {"body", "query", "path", "header", "cookie"}


def param_path(loc: Sequence[Any]) -> str | None:
    parts = list(loc[1:] if loc and loc[0] in _SOURCES else loc)
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or None


def validation_error(errors: Sequence[Mapping[str, Any]]) -> ApiError:
    if not errors:
        return ApiError(400, "invalid request")
    first = errors[0]
    if first.get("type") == "json_invalid":
        return ApiError(400, "the request body is not valid JSON", code="invalid_json")
    param = param_path(first.get("loc", ()))
    if first.get("type") == "missing" and param is None:
        return ApiError(400, "a JSON request body is required", code="missing_body")
    message = str(first.get("msg", "invalid value"))
    if first.get("type") in _GUARD_CODES:
        return ApiError(400, message, code=str(first["type"]), param=param)
    if param:
        message = f"invalid value for '{param}': {message}"
    return ApiError(400, message, code="invalid_value", param=param)
