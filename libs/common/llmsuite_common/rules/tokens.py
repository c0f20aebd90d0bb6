"""The one token estimate without a tokenizer, used wherever a count is needed before (or
instead of) the model's own: the gateway's reservations, guardrails' size checks and output rail,
generation's usage when the upstream reports none. One rule, so the figures agree everywhere.
"""

import re
from collections.abc import Iterable

# Words and punctuation marks each count one, and never fewer than one token per four bytes:
# English averages about four bytes per BPE token, and dense code or punctuation cannot slip under.
_WORDISH = re.compile(r"\w+|[^\w\s]", re.UNICODE)
# What OpenAI-style chat formats add around each message, and to prime the reply.
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REPLY = 3


def approx_tokens(text: str) -> int:
    return max(len(_WORDISH.findall(text)), (len(text.encode()) + 3) // 4)


def estimate_prompt_tokens(contents: Iterable[str]) -> int:
    """A chat prompt's tokens from its messages' contents."""
    return sum(approx_tokens(c) + TOKENS_PER_MESSAGE for c in contents) + TOKENS_PER_REPLY
