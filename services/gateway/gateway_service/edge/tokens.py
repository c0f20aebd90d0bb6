"""Token estimates for reservations made before the upstream reports real usage."""

from llmsuite_common.rules.tokens import approx_tokens, estimate_prompt_tokens

from ..api.schemas import ChatCompletionRequest

__all__ = ["approx_tokens", "prompt_estimate", "reservation"]


def prompt_estimate(body: ChatCompletionRequest) -> int:
    return estimate_prompt_tokens(m.content or "" for m in body.messages)


def reservation(body: ChatCompletionRequest, default_completion_tokens: int) -> int:
    """Prompt estimate plus the most the completion may use."""
    return prompt_estimate(body) + (body.token_limit or default_completion_tokens)
