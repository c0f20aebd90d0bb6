"""Choosing a deployment and retrying, only ever before the first token.

A request walks its route chain (the model, then its fallbacks). Each attempt
goes to a usable deployment (breaker not open, not cooling down after a 429,
below its concurrency cap), preferring ones this request has not tried yet, so
a failure moves to another deployment, then to the fallback model, and only
then back to a deployment already tried (after full-jitter backoff). Retries
need the retry throttle's consent and stay inside the caller's deadline. Once
the first event of a stream has arrived the attempt is committed: the caller
has it, and nothing after it is ever retried or spliced.
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
from .retry_budget import RetryThrottle, full_jitter
from .routing import Deployment, Route
from .upstream import UpstreamClient, UpstreamEvent
from .upstream_errors import UpstreamRateLimited, counts_against_upstream, is_retryable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ResiliencePolicy:
    max_attempts: int = 3
    backoff_base: float = 0.05
    backoff_max: float = 2.0
    budget_tokens: float = 10.0
    budget_ratio: float = 0.1
    breaker_failures: int = 5
    breaker_open_seconds: float = 10.0
    max_retry_after: float = 0.0


@dataclass(eq=False)
class DeploymentState:
    breaker: CircuitBreaker
    in_flight: int = 0
    cooling_until: float = 0.0


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
        # Breakers, Retry-After cooling and attempt durations read `clock`; backoff and
        # Retry-After waits go through `sleep`.
        self._clock = clock
        self._sleep = sleep
        self._states: dict[tuple[str, str, str], DeploymentState] = {}
        self.throttle = RetryThrottle(max_tokens=policy.budget_tokens, ratio=policy.budget_ratio)

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
            (cooling_ok or state.cooling_until <= now)
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
        # own limit, and a refusal costs nothing. Retries never go back to it early.
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
                    raise UpstreamRateLimited(
                        f"upstream rate limit reached; retry after {math.ceil(wait)} s",
                        retry_after=math.ceil(wait),
                    )
                if not self.throttle.allows_retry():
                    break
                await self._sleep(wait)
                continue
            route, deployment = picked
            if attempts.count:
                if not self.throttle.allows_retry():
                    log.info("retry throttled", extra={"model": model, "tokens": self.throttle.tokens})
                    break
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

    def _final_error(self, chain: list[Route], attempts: _Attempts, model: str) -> ServiceError:
        if attempts.last_error is not None:
            return attempts.last_error
        if any(self.state(d).in_flight >= d.max_concurrency for route in chain for d in route.deployments):
            return Unavailable(
                f"every upstream for model '{model}' is at its concurrency limit", code="upstream_busy"
            )
        return Unavailable(
            f"every upstream for model '{model}' is failing; try again later", code="upstream_circuit_open"
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
                self.throttle.success()
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
            self._metrics.retry_tokens.set(self.throttle.tokens)
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
        self.throttle.failure()
        attempts.last_error = error
        if isinstance(error, UpstreamRateLimited) and error.retry_after:
            state.cooling_until = max(state.cooling_until, self._clock() + error.retry_after)
        log.warning(
            "upstream attempt failed before the first token",
            extra={"deployment": deployment.name, "code": error.code, "attempt": attempts.count},
        )
