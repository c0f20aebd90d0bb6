"""Query-embedding cache and top-k result cache, both in-process with a TTL.

Results are keyed by the collection's version (bumped in the database by every write
to the collection, see db.py), so a write makes every older entry unreachable at once,
in every replica, without a message between them; the TTL then frees the memory.
Query embeddings depend only on the text and the model, so they outlive writes.
"""

import hashlib
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import orjson
from cachetools import TTLCache
from prometheus_client import REGISTRY, CollectorRegistry, Counter


class CacheMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.lookups = Counter(
            "llmsuite_retrieval_cache_lookups",
            "Retrieval cache lookups by cache (embedding, results) and result (hit, miss); "
            "hit rate = hit / (hit + miss).",
            ["cache", "result"],
            registry=registry,
        )


class RetrievalCache:
    def __init__(
        self, *, ttl_seconds: float, max_embeddings: int, max_results: int, metrics: CacheMetrics | None
    ) -> None:
        self._embeddings: TTLCache[str, np.ndarray] = TTLCache(
            maxsize=max(1, max_embeddings), ttl=ttl_seconds
        )
        self._results: TTLCache[Hashable, Any] = TTLCache(maxsize=max(1, max_results), ttl=ttl_seconds)
        self._embeddings_on = max_embeddings > 0
        self._results_on = max_results > 0
        self._metrics = metrics

    @property
    def remembers_embeddings(self) -> bool:
        """Whether a query answered from the results cache also finds its embedding here."""
        return self._embeddings_on or not self._results_on

    def embedding(self, text: str) -> np.ndarray | None:
        if not self._embeddings_on:
            return None
        found = self._embeddings.get(text)
        self._count("embedding", found is not None)
        return found

    def put_embedding(self, text: str, vector: np.ndarray) -> None:
        if self._embeddings_on:
            self._embeddings[text] = vector

    def results(self, key: Hashable) -> Any:
        if not self._results_on:
            return None
        found = self._results.get(key)
        self._count("results", found is not None)
        return found

    def missed_results(self) -> None:
        """A search known to have no cached results without a lookup (a query text not seen
        lately: Retriever.find) still counts as a miss, so the exported hit rate stays true."""
        if self._results_on:
            self._count("results", False)

    def put_results(self, key: Hashable, value: Any) -> None:
        if self._results_on:
            self._results[key] = value

    def _count(self, cache: str, hit: bool) -> None:
        if self._metrics is not None:
            self._metrics.lookups.labels(cache, "hit" if hit else "miss").inc()


def results_key(
    tenant: str,
    collection: str,
    version: str,
    *,
    query: str,
    vector: Sequence[float] | np.ndarray | None,
    k: int,
    filter: Mapping[str, str],
    hybrid_weight: float,
) -> tuple[str, str, str, bytes]:
    """Everything the answer depends on; the request part hashed so keys stay small."""
    request = orjson.dumps(
        {"q": query, "k": k, "f": dict(sorted(filter.items())), "h": hybrid_weight},
        option=orjson.OPT_SORT_KEYS,
    )
    digest = hashlib.sha256(request)
    if vector is not None:
        digest.update(np.asarray(vector, dtype=np.float32).tobytes())
    return tenant, collection, version, digest.digest()
