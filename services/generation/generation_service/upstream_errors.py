"""How upstream failures become the service's errors.

The upstream's own words reach callers only for requests they can fix (400/422),
trimmed and scrubbed; everything else gets a message of our own.
"""

import math
import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

import aiohttp
import orjson
from llmsuite_common.errors import (
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    ServiceError,
    Unavailable,
)
from llmsuite_common.redaction import redact

MAX_UPSTREAM_MESSAGE_CHARS = 300
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")

# Failures another attempt may cure: the upstream was down, slow, overloaded or
# cut us off. A request the upstream refused as malformed (400/413/422), a model
# it does not have (404) or credentials it rejects (401/403) fail the same way
# every time, so they are never retried.
RETRYABLE_CODES = frozenset(
    {
        "upstream_error",
        "upstream_unreachable",
        "upstream_disconnected",
        "upstream_incomplete",
        "upstream_busy",
        "upstream_timeout",
        "upstream_stream_error",
        "upstream_protocol_error",
        "rate_limit_exceeded",
    }
)


class UpstreamRateLimited(ResourceExhausted):
    """An upstream 429; `retry_after` is its pushback in seconds, when it sent one."""

    def __init__(self, message: str, *, retry_after: int | None) -> None:
        param = "" if retry_after is None else f"retry_after={retry_after}"
        super().__init__(message, code="rate_limit_exceeded", param=param)
        self.retry_after = retry_after


class UpstreamUnavailable(Unavailable):
    """Unavailable for `retry_after` seconds: an upstream's 503 with `Retry-After` (the deployment is
    not asked again before it ends), or every deployment of a model paused or behind an open breaker."""

    def __init__(self, message: str, *, retry_after: int, code: str = "upstream_error") -> None:
        super().__init__(message, code=code, param=f"retry_after={retry_after}")
        self.retry_after = retry_after


def pushback_seconds(error: ServiceError) -> int | None:
    """The seconds an upstream asked not to be called for (429 or 503 `Retry-After`), if it did."""
    if isinstance(error, (UpstreamRateLimited, UpstreamUnavailable)):
        return error.retry_after
    return None


def is_retryable(error: ServiceError) -> bool:
    return error.code in RETRYABLE_CODES


def counts_against_upstream(error: ServiceError) -> bool:
    """Whether the failure says the deployment is unhealthy (for its circuit breaker).

    The caller's own mistakes (400/404/422) and pushback (429) do not.
    """
    return error.code in RETRYABLE_CODES - {"rate_limit_exceeded"} or error.code == "upstream_auth_failed"


def retry_after_seconds(headers: Mapping[str, str], *, now: float | None = None) -> int | None:
    """Seconds to wait from `Retry-After` (seconds or HTTP date) or `retry-after-ms`, rounded up."""
    value = (headers.get("retry-after") or "").strip()
    if value:
        if value.isascii() and value.isdigit():
            return int(value)
        try:
            when = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            when = None
        if when is not None:
            return max(0, math.ceil(when - (time.time() if now is None else now)))
    millis = (headers.get("retry-after-ms") or "").strip()
    try:
        ms = float(millis)
    except ValueError:
        return None
    return math.ceil(ms / 1000) if math.isfinite(ms) and ms >= 0 else None


def upstream_message(body: bytes, *, secrets: tuple[str, ...] = ()) -> tuple[str, str]:
    """The (message, param) of an OpenAI-style error body, safe to pass on; empty when absent."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "", ""
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, str):
        error = {"message": error}
    if not isinstance(error, dict):
        # FastAPI-style validation errors: {"detail": "..."} or {"detail": [{"msg": ...}]}.
        detail = parsed.get("detail") if isinstance(parsed, dict) else None
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            detail = detail[0].get("msg")
        error = {"message": detail} if isinstance(detail, str) else {}
    message = error.get("message")
    param = error.get("param")
    return (
        _scrub(message, secrets) if isinstance(message, str) else "",
        _scrub(param, secrets)[:64] if isinstance(param, str) else "",
    )


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    # Upstreams echo request content and other credentials in their error text.
    text = redact(_CONTROL.sub(" ", text)).strip()
    if len(text) > MAX_UPSTREAM_MESSAGE_CHARS:
        text = text[: MAX_UPSTREAM_MESSAGE_CHARS - 1] + "…"
    return text


def error_for_status(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    model: str,
    secrets: tuple[str, ...] = (),
) -> ServiceError:
    """The error for a non-2xx upstream answer to a request for public model `model`."""
    if status in (400, 413, 422):
        message, param = upstream_message(body, secrets=secrets)
        return InvalidArgument(
            f"upstream rejected the request: {message}" if message else "upstream rejected the request",
            param=param,
        )
    if status == 404:
        return NotFound(f"model '{model}' is not available upstream", code="model_not_found", param="model")
    if status in (401, 403):
        # Our key is wrong or lacks access: the operator must fix it, not the caller.
        return Unavailable("upstream rejected credentials", code="upstream_auth_failed")
    if status == 429:
        wait = retry_after_seconds(headers)
        if wait is None:
            return UpstreamRateLimited("upstream rate limit reached", retry_after=None)
        return UpstreamRateLimited(f"upstream rate limit reached; retry after {wait} s", retry_after=wait)
    if status == 503 and (wait := retry_after_seconds(headers)) is not None:
        return UpstreamUnavailable(f"upstream unavailable (HTTP 503); retry after {wait} s", retry_after=wait)
    if status in (408, 504):
        return DeadlineExceeded(f"upstream timed out (HTTP {status})", code="upstream_timeout")
    return Unavailable(f"upstream failed (HTTP {status})", code="upstream_error")


def error_for_transport(exc: aiohttp.ClientError, *, pool_exhausted: bool = False) -> ServiceError:
    """The error for a failure to talk HTTP with the upstream at all.

    aiohttp has one timeout for waiting for a pooled connection and connecting; `pool_exhausted`
    (more requests open than connections allowed) tells the first from an unreachable upstream.
    """
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        if pool_exhausted:
            return Unavailable("all upstream connections are busy", code="upstream_busy")
        return Unavailable("upstream unreachable", code="upstream_unreachable")
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return DeadlineExceeded("upstream did not answer in time", code="upstream_timeout")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return Unavailable("upstream unreachable", code="upstream_unreachable")
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError)):
        return Unavailable("upstream closed the connection mid-response", code="upstream_disconnected")
    if isinstance(exc, aiohttp.ClientResponseError):
        # aiohttp's HTTP parser refused what came back.
        return Unavailable("upstream sent a malformed HTTP response", code="upstream_protocol_error")
    return Unavailable("upstream transport error", code="upstream_error")


def error_for_stream_error(payload: object, *, secrets: tuple[str, ...] = ()) -> ServiceError:
    """The error for an `error` object the upstream sent inside an otherwise healthy stream."""
    message, _ = upstream_message(orjson.dumps({"error": payload}), secrets=secrets)
    text = "upstream reported an error mid-stream"
    return Unavailable(f"{text}: {message}" if message else text, code="upstream_stream_error")
