"""GET /v1/me: the caller's own key as the gateway sees it: organization, role, scopes, the limits
that apply to it and this month's spend. Never the key's secret or its hash."""

import logging
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from ...edge.auth import API_KEY_SCHEME, Identity
from ...edge.keys import KeyStore
from ...edge.policy import Policy
from ...edge.scopes import granted
from ...edge.usage import UsageRecorder
from ..deps import IdentityDep, KeysDep, UsageDep

log = logging.getLogger(__name__)

router = APIRouter(dependencies=[API_KEY_SCHEME])


def limits(policy: Policy) -> dict[str, Any]:
    """What the key may do (0: no limit; allowed_models None: every model)."""
    return {
        "rpm": policy.key_rpm,
        "tpm": policy.key_tpm,
        "max_streams": policy.key_max_streams,
        "max_tokens": policy.max_tokens_cap,
        "allowed_models": sorted(policy.allowed_models) if policy.allowed_models is not None else None,
        "budget_usd": policy.key_budget_usd,
        "user_rpm": policy.user_rpm,
        "user_tpm": policy.user_tpm,
        "user_budget_usd": policy.user_budget_usd,
        "org_rpm": policy.org_rpm,
        "org_tpm": policy.org_tpm,
        "org_budget_usd": policy.org_budget_usd,
        "cache_ttl_seconds": policy.cache_ttl_seconds,
        "log_policy": policy.log_policy,
    }


async def _spent(usage: UsageRecorder, scope: str) -> float | None:
    """This month's spend of `scope`; None when the counters cannot be read."""
    try:
        return round(await usage.spent(scope), 8)
    except Exception as err:  # noqa: BLE001 - the rest of the answer stands without it
        log.warning("spend counters unavailable", extra={"error": type(err).__name__})
        return None


async def _key_name(keys: KeyStore | None, identity: Identity) -> str | None:
    """The stored key's name; None for the configured key, or when the database cannot answer."""
    if keys is None or identity.superuser:
        return None
    try:
        return await keys.key_name(identity)
    except Exception as err:  # noqa: BLE001 - a name is not worth failing the answer for
        log.warning("key name unavailable", extra={"error": type(err).__name__})
        return None


@router.get("/v1/me", response_class=Response)
async def read_me(identity: IdentityDep, usage: UsageDep, keys: KeysDep) -> Response:
    body = {
        "object": "api_key",
        "key_id": identity.key_id,
        "key_name": await _key_name(keys, identity),
        "org_id": identity.org_id,
        "role": identity.role,
        "user_id": identity.user_id or None,
        "superuser": identity.superuser,
        "scopes": sorted(granted(identity)),
        "collection_prefixes": list(identity.collection_prefixes),
        "limits": limits(identity.policy),
        "spend_this_month_usd": {
            "key": await _spent(usage, f"key:{identity.key_id}"),
            "org": await _spent(usage, f"org:{identity.org_id}"),
        },
    }
    return Response(orjson.dumps(body), media_type="application/json")
