"""Token estimates for reservations made before the upstream reports real usage."""

import re

from .schemas import ChatCompletionRequest

# Same rule as the guardrails service: about four bytes per token, but never fewer than the
# words and punctuation marks, so dense text cannot slip under.
_WORDISH = re.compile(r"\w+|[^\w\s]", re.UNICODE)
PER_MESSAGE_OVERHEAD = 4


def approx_tokens(text: str) -> int:
    return max(len(_WORDISH.findall(text)), (len(text.encode()) + 3) // 4)


def prompt_estimate(body: ChatCompletionRequest) -> int:
    return sum(approx_tokens(m.content or "") + PER_MESSAGE_OVERHEAD for m in body.messages)


def reservation(body: ChatCompletionRequest, default_completion_tokens: int) -> int:
    """Prompt estimate plus the most the completion may use."""
    return prompt_estimate(body) + (body.token_limit or default_completion_tokens)
