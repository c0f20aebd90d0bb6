"""Exact-match result cache, scoped per organization.

The key hashes the organization, the resolved model, the normalized messages and every parameter
that shapes the answer (sampling, stop, limits, retrieval, stream format); so two tenants never share
an entry. Only deterministic requests (temperature 0) are cached unless the request opts in with the
`cache` extension field, and `cache: false` opts out.
"""

import hashlib
import logging
from typing import Any

import orjson
from prometheus_client import Counter

from .kv import KeyValueStore
from .schemas import ChatCompletionRequest
from .stored_response import StoredResponse

log = logging.getLogger(__name__)

HEADER = "x-cache"
# Fields that never change the answer.
_NOT_IN_KEY = {"user", "cache"}


def cacheable(body: ChatCompletionRequest) -> bool:
    if body.cache is not None:
        return body.cache
    return body.temperature == 0


def cache_key(org_id: str, model: str, body: ChatCompletionRequest) -> str:
    params: dict[str, Any] = body.model_dump(mode="json", exclude=_NOT_IN_KEY, exclude_none=True)
    params["model"] = model
    params["messages"] = [
        {"role": m.role, "content": m.content or "", "name": m.name or ""} for m in body.messages
    ]
    digest = hashlib.sha256(org_id.encode() + b"\0" + orjson.dumps(params, option=orjson.OPT_SORT_KEYS))
    return "cache:" + digest.hexdigest()


class ResultCache:
    def __init__(self, store: KeyValueStore, lookups: Counter) -> None:
        self._store = store
        self._lookups = lookups

    # The cache is an optimisation: when its store fails, requests run as misses.
    async def get(self, key: str) -> StoredResponse | None:
        try:
            raw = await self._store.get(key)
        except Exception as err:  # noqa: BLE001
            log.warning("result cache unavailable", extra={"error": type(err).__name__})
            raw = None
        self._lookups.labels("hit" if raw is not None else "miss").inc()
        return StoredResponse.loads(raw) if raw is not None else None

    async def put(self, key: str, response: StoredResponse, ttl_seconds: float) -> None:
        try:
            await self._store.put(key, response.dumps(), ttl_seconds)
        except Exception as err:  # noqa: BLE001
            log.warning("result cache unavailable", extra={"error": type(err).__name__})
