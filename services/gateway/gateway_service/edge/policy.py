"""What one API key may do: limits, allowed models, caps; resolved from the key and its organization."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Policy:
    # 0 means unlimited throughout.
    key_rpm: int = 0
    key_tpm: int = 0
    key_max_streams: int = 0
    # Per user the request speaks for (the key's own user, and the end user it names; end_users.py):
    # the tightest of the key's and the organization's settings.
    user_rpm: int = 0
    user_tpm: int = 0
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
    user_budget_usd: float = 0.0
    # What the request log keeps of the conversation: `full`, `summary`, or nothing (`metadata`/`none`).
    log_policy: str = "summary"
    # Scopes granted beyond the key's role (scopes.py); admins hold all of them anyway.
    scopes: frozenset[str] = frozenset()


# Widest first: a key may only narrow its organization's log policy.
LOG_POLICIES = ("full", "summary", "metadata", "none")


def narrowest_log_policy(org: str | None, key: str | None) -> str:
    """The organization's policy (default `summary`), narrowed by the key's; `full` only from the org."""
    base = org if org in LOG_POLICIES else Policy.log_policy
    if key in LOG_POLICIES and LOG_POLICIES.index(key) > LOG_POLICIES.index(base):
        return key
    return base
