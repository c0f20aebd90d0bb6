"""Idempotency-Key with Stripe's semantics, scoped per organization.

The first request with a key takes it (an atomic add); a duplicate that arrives while it runs gets
409, one with a different body 422, one after it finished the stored response, replayed with
`Idempotency-Replayed: true` and no upstream call. Only successful responses are stored: when the
first attempt fails or is cancelled the key is freed, so the client's retry runs again.
"""

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Any

import orjson

from ..api.errors import ApiError
from .kv import KeyValueStore
from .stored_response import StoredResponse

log = logging.getLogger(__name__)

HEADER = "idempotency-key"
REPLAYED_HEADER = "idempotency-replayed"
MAX_KEY_LENGTH = 255
_VALID_KEY = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}")


def body_fingerprint(body: dict[str, Any]) -> str:
    """Same parameters, same fingerprint, whatever the key order or whitespace."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def valid_key(value: str) -> str:
    if not _VALID_KEY.fullmatch(value):
        raise ApiError(
            400,
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
            code="invalid_idempotency_key",
        )
    return value


@dataclass(frozen=True)
class Claim:
    store_key: str
    fingerprint: str


class Idempotency:
    def __init__(self, store: KeyValueStore, *, ttl_seconds: float, pending_seconds: float) -> None:
        self._store = store
        self._ttl = ttl_seconds
        # A replica that dies mid-request frees the key after this.
        self._pending_ttl = pending_seconds

    @staticmethod
    def _key(org_id: str, key: str) -> str:
        digest = hashlib.sha256(f"{org_id}\0{key}".encode()).hexdigest()
        return f"idem:{digest}"

    async def claim(self, org_id: str, key: str, fingerprint: str) -> Claim | StoredResponse:
        """A Claim to run the request, or the stored response to replay; raises 409/422."""
        store_key = self._key(org_id, valid_key(key))
        pending = orjson.dumps({"fingerprint": fingerprint, "state": "pending"})
        # Bounded: a record can vanish (expire) between add and get at most once in practice.
        for _ in range(3):
            try:
                if await self._store.add(store_key, pending, self._pending_ttl):
                    return Claim(store_key, fingerprint)
                raw = await self._store.get(store_key)
            except Exception as err:  # noqa: BLE001 - without the store a duplicate cannot be ruled out
                log.warning("idempotency store unavailable", extra={"error": type(err).__name__})
                raise ApiError(
                    503, "idempotency keys are unavailable; retry shortly", code="idempotency_unavailable"
                ) from None
            if raw is None:
                continue
            record = orjson.loads(raw)
            if record["fingerprint"] != fingerprint:
                raise ApiError(
                    422,
                    "this Idempotency-Key was used with a different request body",
                    code="idempotency_key_reused",
                    param="Idempotency-Key",
                )
            if record["state"] == "pending":
                raise ApiError(
                    409,
                    "a request with this Idempotency-Key is still in progress; retry later",
                    code="idempotency_key_in_use",
                    param="Idempotency-Key",
                )
            return StoredResponse.loads(record["response"].encode())
        raise ApiError(409, "this Idempotency-Key is changing state; retry", code="idempotency_key_in_use")

    # After the request ran, a store failure must not turn its answer into an error: the claim then
    # stays pending until it expires, and duplicates get 409 rather than a second execution.
    async def complete(self, claim: Claim, response: StoredResponse) -> None:
        record = {"fingerprint": claim.fingerprint, "state": "done", "response": response.dumps().decode()}
        try:
            await self._store.put(claim.store_key, orjson.dumps(record), self._ttl)
        except Exception as err:  # noqa: BLE001
            log.warning("could not store an idempotent response", extra={"error": type(err).__name__})

    async def release(self, claim: Claim) -> None:
        try:
            await self._store.delete(claim.store_key)
        except Exception as err:  # noqa: BLE001
            log.warning("could not release an idempotency key", extra={"error": type(err).__name__})
