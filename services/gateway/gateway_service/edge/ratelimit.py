"""Sliding-window limits and concurrency leases: the rules, the decision, the in-process store.

Why a sliding-window log rather than GCRA: the limits must be exact (a burst of N requests against a
limit of L admits exactly L, however long the burst takes to arrive), and a weighted log gives that
and an exact Retry-After (when the oldest entries leave the window), where GCRA refills while a burst
is still arriving. The Redis store (ratelimit_redis.py) runs the same algorithm in one Lua script.
"""

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal, Protocol

from llmsuite_common.clock import Clock, monotonic

WINDOW: Literal["w"] = "w"
CONCURRENCY: Literal["c"] = "c"


@dataclass(frozen=True)
class Rule:
    # The code a 429 carries: key_rpm, user_rpm, org_rpm, ip_rpm, key_tpm, user_tpm, org_tpm, concurrency.
    cause: str
    # Where its state lives, e.g. "k:<key id>:rpm"; never contains a secret.
    bucket: str
    limit: int
    # Sliding window for WINDOW rules; lease lifetime (a crashed holder's lease expires) for CONCURRENCY.
    window_seconds: float
    cost: int = 1
    kind: Literal["w", "c"] = WINDOW


@dataclass(frozen=True)
class Decision:
    allowed: bool
    # The rule that refused, or the tightest one when allowed (for the RateLimit-* headers).
    rule: Rule | None = None
    # Usage in the rule's window before this request.
    used: int = 0
    retry_after_seconds: float = 0.0
    reset_seconds: float = 0.0

    @property
    def remaining(self) -> int:
        if self.rule is None:
            return 0
        taken = self.used + (self.rule.cost if self.allowed else 0)
        return max(0, self.rule.limit - taken)


class LimitStore(Protocol):
    async def acquire(self, rules: list[Rule], member: str) -> Decision:
        """Admits the request against every rule at once, or against none."""

    async def adjust(self, rule: Rule, member: str, cost: int) -> None:
        """Replaces a WINDOW entry's cost (a token reservation reconciled with real usage)."""

    async def release(self, rule: Rule, member: str) -> None:
        """Ends a CONCURRENCY lease."""


@dataclass
class _Bucket:
    # (timestamp, member, cost) oldest first; for concurrency the timestamp is the lease's expiry.
    entries: deque[tuple[float, str, int]] = field(default_factory=deque)
    used: int = 0

    def prune(self, cutoff: float) -> None:
        while self.entries and self.entries[0][0] <= cutoff:
            self.used -= self.entries.popleft()[2]


def retry_after(entries: deque[tuple[float, str, int]], used: int, rule: Rule, now: float) -> float:
    """Seconds until enough of the window has expired for this request's cost to fit."""
    if rule.cost > rule.limit:
        return rule.window_seconds
    need = used + rule.cost - rule.limit
    freed = 0
    for ts, _, cost in entries:
        freed += cost
        if freed >= need:
            return max(0.0, ts + rule.window_seconds - now)
    return rule.window_seconds


class MemoryLimitStore:
    """One process's limits; correct for a single replica only (replicas need Redis)."""

    # Buckets idle this long are dropped, so the table cannot grow without bound.
    MAX_BUCKETS = 100_000

    def __init__(self, clock: Clock = monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, rule: Rule, now: float) -> _Bucket:
        bucket = self._buckets.get(rule.bucket)
        if bucket is None:
            if len(self._buckets) >= self.MAX_BUCKETS:
                self._evict_empty(now)
            bucket = self._buckets[rule.bucket] = _Bucket()
        if rule.kind == WINDOW:
            bucket.prune(now - rule.window_seconds)
        else:
            bucket.prune(now)
        return bucket

    def _evict_empty(self, now: float) -> None:
        for name in [n for n, b in self._buckets.items() if not b.entries or b.entries[-1][0] < now - 3600]:
            del self._buckets[name]

    async def acquire(self, rules: list[Rule], member: str) -> Decision:
        now = self._clock()
        tightest: Decision | None = None
        for rule in rules:
            bucket = self._bucket(rule, now)
            if rule.kind == WINDOW:
                if bucket.used + rule.cost > rule.limit:
                    wait = retry_after(bucket.entries, bucket.used, rule, now)
                    return Decision(False, rule, bucket.used, wait, wait)
                reset = (
                    bucket.entries[0][0] + rule.window_seconds - now
                    if bucket.entries
                    else rule.window_seconds
                )
            else:
                if bucket.used + 1 > rule.limit:
                    wait = max(0.0, bucket.entries[0][0] - now) if bucket.entries else 1.0
                    return Decision(False, rule, bucket.used, min(wait, 1.0), wait)
                reset = 0.0
            candidate = Decision(True, rule, bucket.used, 0.0, reset)
            if tightest is None or candidate.remaining < tightest.remaining:
                tightest = candidate
        for rule in rules:
            bucket = self._buckets[rule.bucket]
            if rule.kind == WINDOW:
                bucket.entries.append((now, member, rule.cost))
                bucket.used += rule.cost
            else:
                bucket.entries.append((now + rule.window_seconds, member, 1))
                bucket.used += 1
                # Leases end in any order; keep them sorted by expiry for pruning.
                bucket.entries = deque(sorted(bucket.entries))
        return tightest or Decision(True)

    async def adjust(self, rule: Rule, member: str, cost: int) -> None:
        bucket = self._buckets.get(rule.bucket)
        if bucket is None:
            return
        for i, (ts, m, old) in enumerate(bucket.entries):
            if m == member:
                bucket.entries[i] = (ts, m, cost)
                bucket.used += cost - old
                return

    async def release(self, rule: Rule, member: str) -> None:
        bucket = self._buckets.get(rule.bucket)
        if bucket is None:
            return
        for entry in bucket.entries:
            if entry[1] == member:
                bucket.entries.remove(entry)
                bucket.used -= entry[2]
                return


def header_seconds(seconds: float) -> int:
    """Whole seconds for Retry-After/RateLimit-Reset: rounded up, so waiting them is always enough."""
    return max(1, math.ceil(seconds - 1e-6))
