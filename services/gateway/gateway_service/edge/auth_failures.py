"""Failed authentications counted per client IP, so a client guessing keys is refused with 429.

Failures go into the limit store (Redis when configured), so every replica counts the same window.
Once an address is over its limit, this replica answers its further attempts with 429 from memory
until Retry-After has passed: no key lookup, no database query, no store call. Keys this replica
already holds in its cache still pass, so a guesser behind a shared address (NAT) does not lock out
the clients that authenticated there before.
"""

import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable

from llmsuite_common.clock import Clock, monotonic

from ..api.errors import ApiError
from ..api.rate_limited import rate_limited
from .ratelimit import LimitStore, Rule, header_seconds

log = logging.getLogger("gateway.auth")

CAUSE = "auth_failures"
# Addresses currently refused; the oldest are forgotten first beyond this many.
_BLOCKED_MAX = 100_000


class AuthFailures:
    def __init__(
        self,
        store: LimitStore,
        *,
        limit: int,
        window_seconds: float,
        clock: Clock = monotonic,
        # Counts each 429 (llmsuite_gateway_rate_limited_total{cause="auth_failures"}), as the limiter
        # counts its own refusals.
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._on_refused = on_refused
        self._limit = limit
        self._window = window_seconds
        self._clock = clock
        # address -> when (clock) it may try again
        self._blocked: OrderedDict[str, float] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self._limit > 0

    def refusal(self, client_ip: str | None) -> ApiError | None:
        """The 429 for an address that is over its limit, from memory."""
        if not self.enabled or client_ip is None:
            return None
        until = self._blocked.get(client_ip)
        if until is None:
            return None
        left = until - self._clock()
        if left <= 0:
            del self._blocked[client_ip]
            return None
        # Not logged again: the refusal that started the block was; counted like every refusal.
        self._count_refusal()
        return ApiError(429, _message(left), code=CAUSE, retry_after=header_seconds(left))

    async def failed(self, client_ip: str | None) -> ApiError | None:
        """Counts one failed authentication; the 429 to answer with when it was one too many."""
        if not self.enabled or client_ip is None:
            return None
        rule = Rule(CAUSE, f"ip:{client_ip}:authfail", self._limit, self._window)
        try:
            decision = await self._store.acquire([rule], secrets.token_hex(8))
        except Exception as err:  # noqa: BLE001 - the 401 stands; only the counting is lost
            log.warning("could not count a failed authentication", extra={"error": type(err).__name__})
            return None
        if decision.allowed:
            return None
        self._blocked[client_ip] = self._clock() + decision.retry_after_seconds
        self._blocked.move_to_end(client_ip)
        while len(self._blocked) > _BLOCKED_MAX:
            self._blocked.popitem(last=False)
        self._count_refusal()
        return rate_limited(
            CAUSE,
            identity=None,
            client_ip=client_ip,
            retry_after_seconds=decision.retry_after_seconds,
            limit=self._limit,
            used=decision.used,
            message=_message(decision.retry_after_seconds),
        )

    def _count_refusal(self) -> None:
        if self._on_refused is not None:
            self._on_refused()


def _message(retry_after_seconds: float) -> str:
    return (
        "too many failed authentications from this address; "
        f"retry after {header_seconds(retry_after_seconds)} s"
    )
