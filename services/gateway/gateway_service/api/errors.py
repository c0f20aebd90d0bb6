"""The error envelope (OpenAI's, or Anthropic's on the Messages route family: `shape_for`), how
backend gRPC failures map onto it, and the class each error is counted under in
`llmsuite_gateway_errors_total`."""

from collections.abc import Callable
from contextvars import ContextVar, Token
from http import HTTPStatus
from typing import Any

import grpc
import orjson
from llmsuite_common.errors import read_error_detail
from llmsuite_common.request_context import request_id_var
from starlette.responses import Response

RETRY_AFTER_METADATA_KEY = "retry-after"
DEFAULT_RETRY_AFTER_SECONDS = 1

_TYPES = {429: "rate_limit_error"}

# Statuses a backend can return, as HTTP statuses and the code used when the backend gave none.
_GRPC_TO_HTTP: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request"),
    grpc.StatusCode.FAILED_PRECONDITION: (400, "failed_precondition"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "invalid_request"),
    # The gateway's own service token was refused: a deployment fault (keys that do not match),
    # never the client's.
    grpc.StatusCode.UNAUTHENTICATED: (500, "backend_auth_failed"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_denied"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_exceeded"),
    grpc.StatusCode.UNAVAILABLE: (503, "service_unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "timeout"),
}


class ApiError(Exception):
    """A failure to report to the client; its message must be safe to show."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type_: str | None = None,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
        upstream: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = (
            type_ or _TYPES.get(status) or ("server_error" if status >= 500 else "invalid_request_error")
        )
        self.retry_after = retry_after
        self.headers = headers or {}
        # Reported by a backend service (guardrails, retrieval, generation or the model behind it).
        self.upstream = upstream


def envelope(err: ApiError) -> dict[str, Any]:
    """OpenAI's error body."""
    return {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}


# Anthropic's error types by HTTP status (the `type` of its error object); other 4xx are
# invalid_request_error, other 5xx api_error.
_ANTHROPIC_TYPES = {
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_envelope(err: ApiError) -> dict[str, Any]:
    """Anthropic's error body: `{"type": "error", "error": {"type", "message"}, "request_id"}`."""
    kind = _ANTHROPIC_TYPES.get(err.status) or ("api_error" if err.status >= 500 else "invalid_request_error")
    return {
        "type": "error",
        "error": {"type": kind, "message": err.message},
        "request_id": request_id_var.get() or None,
    }


# The shape of an error body: OpenAI's (`envelope`) unless a route family speaks another API.
ErrorShape = Callable[[ApiError], dict[str, Any]]
# Path prefixes of the route families that answer errors in their own API's shape.
_SHAPES: tuple[tuple[str, ErrorShape], ...] = (("/v1/messages", anthropic_envelope),)


def shape_for(path: str) -> ErrorShape:
    """The error shape of the route family `path` belongs to, whatever fails (auth, validation, limits)."""
    for prefix, shape in _SHAPES:
        if path == prefix or path.startswith(prefix + "/"):
            return shape
    return envelope


# The values of the `class` label of llmsuite_gateway_errors_total; nothing else is counted there
# (401/403, unknown routes and the gateway's own 500s show in llmsuite_gateway_requests_total).
ERROR_CLASSES = (
    "timeout",
    "upstream_4xx",
    "upstream_5xx",
    "validation",
    "rate_limited",
    "guardrail_blocked",
    "cancelled",
)
CANCELLED = "cancelled"
GUARDRAIL_BLOCKED_CODE = "content_policy_violation"
_VALIDATION_STATUSES = frozenset({400, 413, 422})


def error_class(err: ApiError) -> str | None:
    """The one classification of a client-facing error, whichever path (HTTP body, SSE event) shows it."""
    if err.status == 504 or err.code == "timeout":
        return "timeout"
    if err.status == 429:
        return "rate_limited"
    if err.code == GUARDRAIL_BLOCKED_CODE:
        return "guardrail_blocked"
    # 502 is a backend that answered wrongly (a stream ending without its final message).
    if err.upstream or err.status == 502:
        return "upstream_5xx" if err.status >= 500 else "upstream_4xx"
    if err.status in _VALIDATION_STATUSES:
        return "validation"
    return None


# The error class of the request in progress: opened by the access middleware, which counts it once
# the response is over. A list so that child tasks (a stream's body) write to the same note.
_noted: ContextVar[list[str | None] | None] = ContextVar("error_class", default=None)


def open_error_note() -> Token[list[str | None] | None]:
    return _noted.set([None])


def close_error_note(token: Token[list[str | None] | None]) -> str | None:
    note = _noted.get()
    _noted.reset(token)
    return note[0] if note else None


def note_error_class(cls: str | None) -> None:
    """Records the request's error class; the first one noted is the one that reached the client."""
    note = _noted.get()
    if note is not None and note[0] is None:
        note[0] = cls


def note_error(err: ApiError) -> None:
    note_error_class(error_class(err))


# Statuses that tell a client to come back: 429, 503, and Anthropic's 529 (overloaded).
RETRY_STATUSES = frozenset({429, 503, 529})


def error_response(err: ApiError, shape: ErrorShape = envelope) -> Response:
    """Every HTTP error the gateway answers with: `err` in the `shape` of the route's API."""
    note_error(err)
    headers = dict(err.headers)
    # A client told to come back (429) or that the service is briefly unavailable (503) always
    # learns when: SDKs (openai, anthropic) honour Retry-After in their own retries.
    if err.status in RETRY_STATUSES:
        headers["retry-after"] = str(max(1, err.retry_after or DEFAULT_RETRY_AFTER_SECONDS))
    return Response(
        orjson.dumps(shape(err)), status_code=err.status, headers=headers, media_type="application/json"
    )


RETRY_AFTER_PARAM_PREFIX = "retry_after="


def _seconds(value: str | bytes) -> int | None:
    try:
        return max(1, int(float(value)))
    except ValueError:
        return None


def _retry_after(err: grpc.aio.AioRpcError, param: str | None) -> int:
    """From a `retry-after` trailer, or the `retry_after=N` param generation attaches to a 429 or 503."""
    for key, value in err.trailing_metadata() or ():
        if key == RETRY_AFTER_METADATA_KEY and (seconds := _seconds(value)) is not None:
            return seconds
    if param and param.startswith(RETRY_AFTER_PARAM_PREFIX):
        seconds = _seconds(param.removeprefix(RETRY_AFTER_PARAM_PREFIX))
        if seconds is not None:
            return seconds
    return DEFAULT_RETRY_AFTER_SECONDS


def from_grpc(err: grpc.aio.AioRpcError, service: str) -> ApiError:
    """Maps a failed backend call; only the ErrorDetail a service attached is shown verbatim.

    Transport-level details (addresses, resolver errors) stay out of client responses.
    """
    code = err.code()
    status, default_code = _GRPC_TO_HTTP.get(code, (500, "internal_error"))
    detail = read_error_detail(err) if code != grpc.StatusCode.UNAUTHENTICATED else None
    if detail is not None and detail.message:
        message, error_code, param = detail.message, detail.code or default_code, detail.param or None
    else:
        message, error_code, param = _generic_message(status, service), default_code, None
    if code == grpc.StatusCode.UNAVAILABLE and error_code == default_code:
        # Which backend is down, so a client (and a dashboard) can tell a retrieval outage, which
        # only requests naming a collection see, from one that stops every chat.
        error_code = f"{service}_unavailable"
    if code == grpc.StatusCode.NOT_FOUND and service == "generation":
        error_code, param = "model_not_found", param or "model"
    retry_after = None
    if status in (429, 503):
        retry_after = _retry_after(err, param)
        if param and param.startswith(RETRY_AFTER_PARAM_PREFIX):
            param = None
    return ApiError(status, message, code=error_code, param=param, retry_after=retry_after, upstream=True)


def _generic_message(status: int, service: str) -> str:
    if status == 503:
        return f"the {service} service is unavailable"
    if status == 504:
        return f"the {service} service did not answer in time"
    if status >= 500:
        return "internal error"
    return f"{service}: {HTTPStatus(status).phrase.lower()}"
