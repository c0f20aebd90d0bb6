"""Token usage for the Final message.

The upstream's own figures win whenever it sends them. When it does not
(servers without `stream_options.include_usage`), usage is estimated:
- completion tokens: the number of content deltas received, because
  OpenAI-compatible servers (llama.cpp, vLLM, TGI, OpenAI) stream one token per chunk;
- prompt tokens: the suite's one estimate (llmsuite_common.rules.tokens), as the gateway
  reserves and guardrails checks with.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from llmsuite_common.rules.tokens import approx_tokens, estimate_prompt_tokens

__all__ = ["TokenUsage", "approx_tokens", "count", "estimate_prompt_tokens", "resolve_usage"]


@dataclass(frozen=True, slots=True)
class TokenUsage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def count(value: object) -> int | None:
    # bool is an int subclass; a JSON true is not a token count.
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def resolve_usage(
    upstream: Mapping[str, object] | None, *, contents: Iterable[str], deltas: int
) -> TokenUsage:
    """Upstream figures where present and sane, estimates for the rest."""
    upstream = upstream or {}
    prompt = count(upstream.get("prompt_tokens"))
    completion = count(upstream.get("completion_tokens"))
    details = upstream.get("prompt_tokens_details")
    cached = count(details.get("cached_tokens")) if isinstance(details, Mapping) else None
    return TokenUsage(
        prompt_tokens=prompt if prompt is not None else estimate_prompt_tokens(contents),
        completion_tokens=completion if completion is not None else deltas,
        cached_tokens=cached or 0,
    )
