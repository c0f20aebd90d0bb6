"""The one 429 every limit path answers with: OpenAI body, Retry-After, RateLimit-* and a cause code."""

import logging

from ..edge.auth import Identity
from ..edge.ratelimit import Decision, header_seconds
from .errors import ApiError

log = logging.getLogger("gateway.limits")

_MESSAGES = {
    "key_rpm": "requests per minute of this API key",
    "user_rpm": "requests per minute of this user",
    "org_rpm": "requests per minute of this organization",
    "ip_rpm": "requests per minute from this address",
    "key_tpm": "tokens per minute of this API key",
    "user_tpm": "tokens per minute of this user",
    "org_tpm": "tokens per minute of this organization",
    "concurrency": "concurrent streams of this API key",
    "budget": "budget",
}


def limit_headers(decision: Decision) -> dict[str, str]:
    """IETF RateLimit-* fields for the tightest rule; empty when no rule applies."""
    rule = decision.rule
    if rule is None:
        return {}
    reset = decision.reset_seconds if decision.allowed else decision.retry_after_seconds
    return {
        "ratelimit-limit": str(rule.limit),
        "ratelimit-remaining": str(decision.remaining),
        "ratelimit-reset": str(header_seconds(reset)),
        "ratelimit-policy": f"{rule.limit};w={int(rule.window_seconds)}",
    }


def rate_limited(
    cause: str,
    *,
    identity: Identity | None,
    client_ip: str | None,
    retry_after_seconds: float,
    limit: int | None = None,
    used: int | None = None,
    headers: dict[str, str] | None = None,
    message: str | None = None,
) -> ApiError:
    retry_after = header_seconds(retry_after_seconds)
    log.warning(
        "rate limited",
        extra={
            "cause": cause,
            "org_id": identity.org_id if identity else None,
            "key_id": identity.key_id if identity else None,
            "user_id": (identity.user_id or None) if identity else None,
            "client_ip": client_ip,
            "limit": limit,
            "current": used,
            "retry_after": retry_after,
        },
    )
    text = message or (
        f"rate limit exceeded: {_MESSAGES.get(cause, cause)} ({used}/{limit}); retry after {retry_after} s"
    )
    return ApiError(429, text, code=cause, retry_after=retry_after, headers=headers or {})


def refused(decision: Decision, identity: Identity | None, client_ip: str | None) -> ApiError:
    assert decision.rule is not None
    return rate_limited(
        decision.rule.cause,
        identity=identity,
        client_ip=client_ip,
        retry_after_seconds=decision.retry_after_seconds,
        limit=decision.rule.limit,
        used=decision.used,
        headers=limit_headers(decision),
    )
