"""Per-key checks on what a request may ask for, before anything is spent on it."""

from ..api.errors import ApiError
from ..api.schemas import ChatCompletionRequest
from .auth import Identity


class EdgeChecks:
    def __init__(self, *, max_tokens_cap: int) -> None:
        # Applies to every key; a key's own cap can only lower it.
        self._max_tokens_cap = max_tokens_cap

    def check(self, identity: Identity, body: ChatCompletionRequest, model: str) -> None:
        allowed = identity.policy.allowed_models
        if allowed is not None and model not in allowed:
            raise ApiError(
                403,
                f"this API key may not use the model '{model}'",
                code="model_not_allowed",
                param="model",
            )
        caps = [c for c in (self._max_tokens_cap, identity.policy.max_tokens_cap) if c > 0]
        if caps and body.token_limit is not None and body.token_limit > min(caps):
            raise ApiError(
                400,
                f"max_tokens may be at most {min(caps)} for this API key",
                code="max_tokens_too_large",
                param="max_tokens",
            )
