"""Choosing a deployment and retrying, only ever before the first token.

A request walks its route chain (the model, then its fallbacks). Each attempt
goes to a usable deployment (breaker not open, not cooling down after a 429,
below its concurrency cap), preferring ones this request has not tried yet, so
a failure moves to another deployment, then to the fallback model, and only
then back to a deployment already tried (after full-jitter backoff). Retries
are taken from the retry budget (at most a share of the recent requests) and
stay inside the caller's deadline. A deployment that asked for a pause
(`Retry-After` on a 429 or 503) is not retried before it ends. Once the first
event of a stream has arrived the attempt is committed: the caller has it, and
nothing after it is ever retried or spliced.
"""

import asyncio
import logging
import math
import random
from collections.abc import AsyncGenerator, Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from llmsuite_common.clock import Clock, Sleep, monotonic
from llmsuite_common.errors import DeadlineExceeded, ServiceError, Unavailable

from .breaker import BreakerState, CircuitBreaker
from .metrics import GenerationMetrics
from .retry_budget import RetryBudget, full_jitter
from .routing import Deployment, Route
from .upstream import UpstreamClient, UpstreamEvent
from .upstream_errors import (
    UpstreamRateLimited,
    UpstreamUnavailable,
    counts_against_upstream,
    is_retryable,
    pushback_seconds,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ResiliencePolicy:
    max_attempts: int = 3
    backoff_base: float = 0.05
    backoff_max: float = 2.0
    budget_percent: float = 20.0
    budget_window: float = 10.0
    budget_min_per_second: float = 1.0
    breaker_failures: int = 10
    breaker_open_seconds: float = 10.0
    max_retry_after: float = 0.0


@dataclass(eq=False)
class DeploymentState:
    breaker: CircuitBreaker
    in_flight: int = 0
    cooling_until: float = 0.0
    # What the pause asked for by `cooling_until` was: a 429 (rate limit) or a 503.
    cooling_rate_limited: bool = True


@dataclass(frozen=True, slots=True)
class Committed:
    """The attempt that answered: everything after this comes from it."""

    route: Route
    deployment: Deployment
    body: dict[str, Any]
    attempts: int


@dataclass
class _Attempts:
    count: int = 0
    tried: set[tuple[str, str, str]] = field(default_factory=set)
    last_error: ServiceError | None = None
    # A retry taken from the budget and not yet spent (granted before a Retry-After wait).
    retry_granted: bool = False


BodyFor = Callable[[Route, Deployment], dict[str, Any]]


class UpstreamPool:
    def __init__(
        self,
        client: UpstreamClient,
        policy: ResiliencePolicy,
        metrics: GenerationMetrics,
        *,
        rng: random.Random | None = None,
        clock: Clock = monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._client = client
        self._policy = policy
        self._metrics = metrics
        self._rng = rng or random.Random()
        # Breakers, the retry budget's window, Retry-After cooling and attempt durations read
        # `clock`; backoff and Retry-After waits go through `sleep`.
        self._clock = clock
        self._sleep = sleep
        self._states: dict[tuple[str, str, str], DeploymentState] = {}
        self.budget = RetryBudget(
            percent=policy.budget_percent,
            window=policy.budget_window,
            min_per_second=policy.budget_min_per_second,
            clock=clock,
        )

    def state(self, deployment: Deployment) -> DeploymentState:
        state = self._states.get(deployment.identity)
        if state is None:
            breaker = CircuitBreaker(
                failures=self._policy.breaker_failures,
                open_seconds=self._policy.breaker_open_seconds,
                clock=self._clock,
            )
            state = self._states[deployment.identity] = DeploymentState(breaker)
        return state

    def retain(self, deployments: Iterable[Deployment]) -> None:
        """After a reload: forget deployments that are gone; the others keep their health."""
        keep = {d.identity for d in deployments}
        for identity in list(self._states):
            if identity not in keep and self._states[identity].in_flight == 0:
                del self._states[identity]

    def _usable(self, deployment: Deployment, now: float, *, cooling_ok: bool = False) -> bool:
        state = self.state(deployment)
        return (
            (state.cooling_until <= now or (cooling_ok and state.cooling_rate_limited))
            and state.in_flight < deployment.max_concurrency
            and state.breaker.available()
        )

    def _choose(self, route: Route, candidates: list[Deployment]) -> Deployment:
        if len(candidates) == 1:
            return candidates[0]
        if route.policy == "least_busy":
            load = {d.identity: self.state(d).in_flight / d.weight for d in candidates}
            least = min(load.values())
            candidates = [d for d in candidates if load[d.identity] == least]
            return self._rng.choice(candidates)
        return self._rng.choices(candidates, weights=[d.weight for d in candidates])[0]

    def _pick(self, chain: list[Route], tried: set[tuple[str, str, str]]) -> tuple[Route, Deployment] | None:
        now = self._clock()
        # A deployment that answered 429 is avoided while its Retry-After runs, but a new
        # request may still ask it when nothing else can serve: the upstream decides its
        # own limit, and a refusal costs nothing. Retries never go back to it early. One that
        # answered 503 with a Retry-After said it is down that long: nothing asks it early.
        passes = ((True, False), (False, False)) if tried else ((True, False), (True, True))
        for fresh_only, cooling_ok in passes:
            for route in chain:
                candidates = [
                    d
                    for d in route.deployments
                    if self._usable(d, now, cooling_ok=cooling_ok)
                    and not (fresh_only and d.identity in tried)
                ]
                if candidates:
                    return route, self._choose(route, candidates)
        return None

    def _cooling_wait(self, chain: list[Route]) -> float | None:
        """Seconds until the first deployment that only waits out a Retry-After is usable again."""
        now = self._clock()
        waits = [
            self.state(d).cooling_until - now
            for route in chain
            for d in route.deployments
            if self.state(d).cooling_until > now and self.state(d).breaker.available()
        ]
        return min(waits) if waits else None

    async def stream(
        self, chain: list[Route], body_for: BodyFor, *, model: str, remaining: Callable[[], float | None]
    ) -> AsyncGenerator[Committed | UpstreamEvent]:
        """Yields one Committed, then the committed attempt's events; raises if no attempt commits."""
        attempts = _Attempts()
        self.budget.request()
        # Every pass either makes an attempt, waits once, or raises: 2 * max_attempts bounds it.
        for _ in range(2 * self._policy.max_attempts):
            if attempts.count >= self._policy.max_attempts:
                break
            picked = self._pick(chain, attempts.tried)
            if picked is None:
                wait = self._cooling_wait(chain)
                left = remaining()
                if wait is None:
                    break
                if wait > self._policy.max_retry_after or (left is not None and wait >= left):
                    # Pushback the caller must see: nothing may call these upstreams for `wait` seconds.
                    raise self._pushback(chain, wait)
                if not self._retry_allowed(attempts, model):
                    break
                await self._sleep(wait)
                continue
            route, deployment = picked
            if attempts.count:
                if not self._retry_allowed(attempts, model):
                    break
                attempts.retry_granted = False
                if deployment.identity in attempts.tried:
                    delay = full_jitter(
                        attempts.count - 1,
                        base=self._policy.backoff_base,
                        cap=self._policy.backoff_max,
                        rng=self._rng,
                    )
                    left = remaining()
                    if left is not None and delay >= left:
                        break
                    await self._sleep(delay)
            committed = False
            # aclosing: when the caller stops early, the attempt (and its upstream request) ends now.
            async with aclosing(
                self._attempt(route, deployment, body_for, model, remaining, attempts)
            ) as events:
                async for event in events:
                    committed = True
                    yield event
            if committed:
                return
        raise self._final_error(chain, attempts, model)

    def _retry_allowed(self, attempts: _Attempts, model: str) -> bool:
        """Whether this request may make its next attempt: the first is free, a retry needs the budget."""
        if not attempts.count or attempts.retry_granted:
            return True
        if self.budget.try_retry():
            attempts.retry_granted = True
            return True
        log.info("retry budget spent", extra={"model": model, "available": self.budget.available})
        return False

    def _pushback(self, chain: list[Route], wait: float) -> ServiceError:
        """The error for a chain whose usable deployments all asked for a pause of at least `wait` s."""
        seconds = math.ceil(wait)
        now = self._clock()
        cooling = [
            self.state(d)
            for route in chain
            for d in route.deployments
            if self.state(d).cooling_until > now and self.state(d).breaker.available()
        ]
        if all(state.cooling_rate_limited for state in cooling):
            return UpstreamRateLimited(
                f"upstream rate limit reached; retry after {seconds} s", retry_after=seconds
            )
        return UpstreamUnavailable(
            f"upstream unavailable; retry after {seconds} s", retry_after=seconds, code="upstream_unavailable"
        )

    def _final_error(self, chain: list[Route], attempts: _Attempts, model: str) -> ServiceError:
        if attempts.last_error is not None:
            return attempts.last_error
        if any(self.state(d).in_flight >= d.max_concurrency for route in chain for d in route.deployments):
            return Unavailable(
                f"every upstream for model '{model}' is at its concurrency limit", code="upstream_busy"
            )
        # Every deployment's breaker is open (or probing): the first probe is the earliest sensible retry.
        waits = [self.state(d).breaker.seconds_until_probe() for route in chain for d in route.deployments]
        seconds = max(1, math.ceil(min(waits, default=0.0)))
        return UpstreamUnavailable(
            f"every upstream for model '{model}' is failing; retry after {seconds} s",
            retry_after=seconds,
            code="upstream_circuit_open",
        )

    async def _attempt(
        self,
        route: Route,
        deployment: Deployment,
        body_for: BodyFor,
        model: str,
        remaining: Callable[[], float | None],
        attempts: _Attempts,
    ) -> AsyncGenerator[Committed | UpstreamEvent]:
        """One upstream attempt; yields nothing when it failed before its first event in a retryable way."""
        state = self.state(deployment)
        left = remaining()
        if left is not None and left <= 0:
            raise attempts.last_error or DeadlineExceeded(
                "deadline passed before the upstream call", code="timeout"
            )
        if not state.breaker.acquire():
            return
        attempts.count += 1
        attempts.tried.add(deployment.identity)
        state.in_flight += 1
        in_flight = self._metrics.in_flight.labels(deployment.name)
        in_flight.inc()
        result = "ok"
        verdict: bool | None = None
        # To the end of the response (the caller's reading included) or the failure: what the upstream held.
        started = self._clock()
        try:
            body = body_for(route, deployment)
            stream = self._client.stream_chat(deployment, body, model=model, remaining=left)
            async with aclosing(stream) as events:
                try:
                    first = await anext(events)
                except ServiceError as error:
                    result = error.code
                    verdict = (
                        False
                        if counts_against_upstream(error)
                        else None
                        if isinstance(error, UpstreamRateLimited)
                        else True
                    )
                    if not is_retryable(error):
                        raise
                    self._note_retryable(deployment, state, error, attempts)
                    return
                yield Committed(route, deployment, body, attempts.count)
                yield first
                async for event in events:
                    yield event
                verdict = True
        except ServiceError as error:
            result = error.code
            if verdict is None and counts_against_upstream(error):
                verdict = False
            raise
        except BaseException:
            result = "cancelled"
            raise
        finally:
            state.in_flight -= 1
            in_flight.dec()
            self._metrics.attempts.labels(deployment.name, result).inc()
            elapsed = self._clock() - started
            self._metrics.upstream_duration.labels(deployment.name, result).observe(elapsed)
            self._metrics.retry_budget.set(self.budget.available)
            if verdict is True:
                state.breaker.success()
            elif verdict is False:
                was_open = state.breaker.state is BreakerState.OPEN
                state.breaker.failure()
                if not was_open and state.breaker.state is BreakerState.OPEN:
                    self._metrics.breaker_opened.labels(deployment.name).inc()
                    log.warning("circuit breaker opened", extra={"deployment": deployment.name})
            else:
                state.breaker.abandon()

    def _note_retryable(
        self, deployment: Deployment, state: DeploymentState, error: ServiceError, attempts: _Attempts
    ) -> None:
        attempts.last_error = error
        pause = pushback_seconds(error)
        if pause:
            until = self._clock() + pause
            if until > state.cooling_until:
                state.cooling_until = until
                state.cooling_rate_limited = isinstance(error, UpstreamRateLimited)
        log.warning(
            "upstream attempt failed before the first token",
            extra={"deployment": deployment.name, "code": error.code, "attempt": attempts.count},
        )
