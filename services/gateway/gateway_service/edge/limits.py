"""Admission of one request against its key's, users' (end_users.py), organization's and client IP's
limits.

When the shared store (Redis) fails or is slower than its deadline, `failure_mode` decides:
"open" admits the request without limits (Envoy's default: an outage of the limiter is not an
outage of the API), "closed" answers 503. Either way the store is left alone for
`RETRY_STORE_AFTER_SECONDS`, so a frozen Redis costs one timeout per replica per interval, not one per
request, and is used again as soon as it answers.

Only Redis' own slowness counts as a failure. Requests queue for one of `store_slots` calls in this
process first; that wait is the replica's own load, and a replica under a burst must keep limiting,
not fail open. A request that waited re-reads the store's state, so a Redis found down while it
queued costs it nothing more.
"""

import asyncio
import logging
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

from llmsuite_common.clock import Clock, monotonic

from ..api.errors import ApiError
from ..api.rate_limited import limit_headers, refused
from .auth import Identity
from .end_users import user_scopes
from .ratelimit import CONCURRENCY, Decision, LimitStore, Rule

log = logging.getLogger("gateway.limits")

RETRY_STORE_AFTER_SECONDS = 1.0
# A crashed replica's stream leases expire after this much more than the request deadline.
LEASE_MARGIN_SECONDS = 30.0


@dataclass(frozen=True)
class LimitConfig:
    window_seconds: float
    ip_rpm: int
    lease_seconds: float
    failure_mode: Literal["open", "closed"]


def rules_for(
    identity: Identity,
    client_ip: str | None,
    config: LimitConfig,
    *,
    tokens: int,
    stream: bool,
    end_user: str | None = None,
) -> list[Rule]:
    p, w = identity.policy, config.window_seconds
    users = [bucket for bucket, _ in user_scopes(identity, end_user)]
    candidates = [
        Rule("ip_rpm", f"ip:{client_ip}:rpm", config.ip_rpm, w) if client_ip else None,
        Rule("key_rpm", f"k:{identity.key_id}:rpm", p.key_rpm, w),
        *(Rule("user_rpm", f"{user}:rpm", p.user_rpm, w) for user in users),
        *(Rule("user_tpm", f"{user}:tpm", p.user_tpm, w, cost=tokens) for user in users if tokens),
        Rule("org_rpm", f"o:{identity.org_id}:rpm", p.org_rpm, w),
        Rule("key_tpm", f"k:{identity.key_id}:tpm", p.key_tpm, w, cost=tokens) if tokens else None,
        Rule("org_tpm", f"o:{identity.org_id}:tpm", p.org_tpm, w, cost=tokens) if tokens else None,
        Rule(
            "concurrency",
            f"k:{identity.key_id}:streams",
            p.key_max_streams,
            config.lease_seconds,
            kind=CONCURRENCY,
        )
        if stream
        else None,
    ]
    return [r for r in candidates if r is not None and r.limit > 0]


@dataclass
class Admission:
    """What one admitted request holds: token reservations to reconcile, a stream lease to return."""

    store: LimitStore | None
    rules: list[Rule]
    member: str
    headers: dict[str, str] = field(default_factory=dict)
    _done: bool = False

    async def finish(self, tokens_used: int | None) -> None:
        """Reconciles token reservations with real usage (None keeps them) and ends the lease; once."""
        if self._done or self.store is None:
            return
        self._done = True
        try:
            for rule in self.rules:
                if rule.kind == CONCURRENCY:
                    await self.store.release(rule, self.member)
                elif rule.cost != 1 and tokens_used is not None:
                    await self.store.adjust(rule, self.member, tokens_used)
        except Exception:
            log.warning("could not reconcile limits", exc_info=True)


class Limiter:
    def __init__(
        self,
        store: LimitStore,
        config: LimitConfig,
        *,
        on_refused: Any = None,
        store_slots: int | None = None,
        clock: Clock = monotonic,
    ) -> None:
        # A prometheus Counter labelled by cause, or None.
        self._on_refused = on_refused
        self._store = store
        self._config = config
        self._clock = clock
        self._skip_store_until = 0.0
        self._slots = asyncio.Semaphore(store_slots) if store_slots else None
        self._background: set[asyncio.Task[None]] = set()

    async def admit(
        self,
        identity: Identity,
        client_ip: str | None,
        *,
        tokens: int = 0,
        stream: bool = False,
        end_user: str | None = None,
    ) -> Admission:
        """`end_user`: the application's user the request names, limited per user as a bound key's is."""
        rules = rules_for(identity, client_ip, self._config, tokens=tokens, stream=stream, end_user=end_user)
        member = secrets.token_hex(8)
        if not rules:
            return Admission(None, [], member)
        if self._clock() < self._skip_store_until:
            return self._store_down(rules, member)
        if self._slots is None:
            return await self._acquire(identity, client_ip, rules, member)
        async with self._slots:
            if self._clock() < self._skip_store_until:
                return self._store_down(rules, member)
            return await self._acquire(identity, client_ip, rules, member)

    async def _acquire(
        self, identity: Identity, client_ip: str | None, rules: list[Rule], member: str
    ) -> Admission:
        try:
            decision: Decision = await self._store.acquire(rules, member)
        except Exception as err:  # noqa: BLE001 - any store failure follows the documented policy
            log.warning(
                "rate limit store failed; applying the failure policy",
                extra={"error": type(err).__name__, "failure_mode": self._config.failure_mode},
            )
            self._skip_store_until = self._clock() + RETRY_STORE_AFTER_SECONDS
            return self._store_down(rules, member)
        if not decision.allowed:
            if self._on_refused is not None and decision.rule is not None:
                self._on_refused.labels(decision.rule.cause).inc()
            raise refused(decision, identity, client_ip)
        return Admission(self._store, rules, member, limit_headers(decision))

    def _store_down(self, rules: list[Rule], member: str) -> Admission:
        if self._config.failure_mode == "closed":
            raise ApiError(503, "rate limiting is unavailable; try again shortly", code="limiter_unavailable")
        return Admission(None, [], member)

    def run_later(self, work: Coroutine[Any, Any, None]) -> None:
        """For callbacks that cannot await (a stream's close): reconcile off the hot path."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
