"""Retry throttling and backoff.

The throttle is gRPC's (proposal A6, also Finagle's and Envoy's retry budgets in
spirit): a bucket of `max_tokens`; every failed attempt takes one token, every
successful one puts back `ratio`; a retry is allowed only while the bucket is
more than half full. When an upstream fails every request, the bucket drains
after a handful of failures and retries stop, so upstream attempts per client
request approach 1; at steady partial failure retries stay near `ratio` per
success. Written here because it is a dozen lines and no library offers it for
asyncio without a client framework around it.
"""

import random


class RetryThrottle:
    def __init__(self, *, max_tokens: float, ratio: float) -> None:
        self._max = max_tokens
        self._ratio = ratio
        self._tokens = max_tokens

    @property
    def tokens(self) -> float:
        return self._tokens

    def allows_retry(self) -> bool:
        return self._tokens > self._max / 2

    def success(self) -> None:
        self._tokens = min(self._max, self._tokens + self._ratio)

    def failure(self) -> None:
        self._tokens = max(0.0, self._tokens - 1)


def full_jitter(retry: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `retry` (0-based): uniform in [0, min(cap, base * 2**retry)].

    "Full jitter" from the AWS Architecture Blog's backoff study: it spreads
    synchronized clients best.
    """
    ceiling = min(cap, base * (2 ** min(retry, 30)))
    return (rng or random).uniform(0, ceiling)
