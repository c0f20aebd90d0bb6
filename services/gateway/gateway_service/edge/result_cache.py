"""Exact-match result cache, scoped per organization.

The key hashes the organization, the resolved model, the normalized messages and every parameter
that shapes the answer (sampling, stop, limits, retrieval, stream format); so two tenants never share
an entry. It also holds what the answer was judged and grounded by: the guardrails policy version
that passed the input, and for retrieval-grounded answers the version of the collection searched;
so a policy change or a re-ingest starts new entries instead of serving an answer made under the
old ones. The lookup therefore comes after the input check and the search (never before): a
cached answer is only served to an input today's policy lets through.

Only deterministic requests (temperature 0) are cached unless the request opts in with the
`cache` extension field, and `cache: false` opts out.
"""

import hashlib
import logging
from typing import Any

import orjson
from llmsuite_common.request_context import request_id_var
from prometheus_client import Counter

from ..api.schemas import ChatCompletionRequest
from .kv import KeyValueStore
from .stored_response import StoredResponse

log = logging.getLogger(__name__)

HEADER = "x-cache"
# Fields that never change the answer.
_NOT_IN_KEY = {"user", "cache"}


def cacheable(body: ChatCompletionRequest) -> bool:
    if body.cache is not None:
        return body.cache
    return body.temperature == 0


def cache_key(
    org_id: str,
    model: str,
    body: ChatCompletionRequest,
    *,
    policy_version: str,
    collection_version: str = "",
    door: dict[str, Any] | None = None,
) -> str | None:
    """None when the versions the answer depends on are unknown: such an answer is not cached.

    `door` (the route and the client's own request) keys a request another API translated into
    `body`: its answer is in that API's shape, never served to chat or another door."""
    if not policy_version or (body.retrieval is not None and not collection_version):
        return None
    params: dict[str, Any] = body.model_dump(mode="json", exclude=_NOT_IN_KEY, exclude_none=True)
    params["model"] = model
    params["policy_version"] = policy_version
    params["collection_version"] = collection_version
    if door is not None:
        params["door"] = {
            **door,
            "request": {k: v for k, v in door["request"].items() if k not in _NOT_IN_KEY},
        }
    params["messages"] = [_message_key(m) for m in body.messages]
    digest = hashlib.sha256(org_id.encode() + b"\0" + orjson.dumps(params, option=orjson.OPT_SORT_KEYS))
    return "cache:" + digest.hexdigest()


def _message_key(message: Any) -> dict[str, Any]:
    key = {"role": message.role, "content": message.content or "", "name": message.name or ""}
    if message.images:
        key["images"] = [image.model_dump(mode="json") for image in message.images]
    return key


class ResultCache:
    def __init__(self, store: KeyValueStore, lookups: Counter) -> None:
        self._store = store
        self._lookups = lookups

    # The cache is an optimisation: when its store fails, requests run as misses.
    async def get(self, key: str, *, org_id: str, key_id: str) -> StoredResponse | None:
        try:
            raw = await self._store.get(key)
        except Exception as err:  # noqa: BLE001
            log.warning("result cache unavailable", extra={"error": type(err).__name__})
            raw = None
        self._lookups.labels("hit" if raw is not None else "miss").inc()
        if raw is None:
            return None
        # A served answer that no model produced for this request: traceable to the request and key
        # (the entry is a hash; no content is logged).
        log.info(
            "result cache hit",
            extra={"request_id": request_id_var.get(), "org_id": org_id, "key_id": key_id, "cache_key": key},
        )
        return StoredResponse.loads(raw)

    async def put(self, key: str, response: StoredResponse, ttl_seconds: float) -> None:
        try:
            await self._store.put(key, response.dumps(), ttl_seconds)
        except Exception as err:  # noqa: BLE001
            log.warning("result cache unavailable", extra={"error": type(err).__name__})
