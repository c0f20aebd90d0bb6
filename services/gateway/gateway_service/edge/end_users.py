"""The users a request speaks for, as the limits and budgets see them.

Two kinds: the user an API key is bound to (`keys create --user alice`), and the end user a request
names (OpenAI's `user`, Anthropic's `metadata.user_id`): an application's own user, behind the
application's key. Both are limited by the key's or organization's per-user settings (`user_rpm`,
`user_tpm`, `user_budget_usd`), each under its own name within the organization, so an application
cannot spread one end user's traffic over several of its keys, nor shake off a limit by naming
new users under a key that is bound to one (the key's own user is still counted).

An end user's name is the client's text: the limiter's buckets and the spend counters hold a hash
of it, never the name itself.
"""

import hashlib

from .auth import Identity


def end_user_id(end_user: str) -> str:
    return hashlib.sha256(end_user.encode()).hexdigest()[:24]


def _scopes(org_id: str, user_id: str, end_user: str | None) -> list[tuple[str, str]]:
    out = []
    if user_id:
        out.append((f"u:{org_id}:{user_id}", f"user:{org_id}:{user_id}"))
    if end_user:
        hashed = end_user_id(end_user)
        out.append((f"e:{org_id}:{hashed}", f"end_user:{org_id}:{hashed}"))
    return out


def user_scopes(identity: Identity, end_user: str | None) -> list[tuple[str, str]]:
    """(limiter bucket prefix, spend scope) of each user the request speaks for."""
    return _scopes(identity.org_id, identity.user_id, end_user)


def spend_scopes(org_id: str, user_id: str, end_user: str) -> list[str]:
    """The spend scopes a finished request's cost is added to, beyond its key's and organization's."""
    return [spend for _, spend in _scopes(org_id, user_id, end_user)]


def end_user_spend_scope(org_id: str, end_user: str) -> str:
    return _scopes(org_id, "", end_user)[0][1]
