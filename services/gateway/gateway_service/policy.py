"""What one API key may do: limits, allowed models, caps; resolved from the key and its organization."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Policy:
    # 0 means unlimited throughout.
    key_rpm: int = 0
    key_tpm: int = 0
    key_max_streams: int = 0
    user_rpm: int = 0
    org_rpm: int = 0
    org_tpm: int = 0
    # None allows every model the generation service serves.
    allowed_models: frozenset[str] | None = None
    max_tokens_cap: int = 0
    # Result-cache lifetime for this organization; 0 turns the cache off.
    cache_ttl_seconds: int = 300
    # Spend ceilings in USD; 0 = none.
    key_budget_usd: float = 0.0
    org_budget_usd: float = 0.0
