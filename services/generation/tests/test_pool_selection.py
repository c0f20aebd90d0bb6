import random
from collections import Counter

from generation_service.metrics import GenerationMetrics
from generation_service.pool import ResiliencePolicy, UpstreamPool
from generation_service.routing import Deployment, Route
from generation_service.upstream import UpstreamClient
from llmsuite_common.clock import ManualClock
from prometheus_client import CollectorRegistry
from pydantic import SecretStr


def deployment(name: str, weight: float = 1.0, max_concurrency: int = 10) -> Deployment:
    return Deployment(name, "http://127.0.0.1:1/v1", name, SecretStr(""), weight, max_concurrency)


def pool(clock: ManualClock | None = None, **policy) -> UpstreamPool:
    return UpstreamPool(
        UpstreamClient(max_connections=1),
        ResiliencePolicy(**policy),
        GenerationMetrics(CollectorRegistry()),
        rng=random.Random(3),
        clock=clock or ManualClock(),
    )


def test_weighted_policy_follows_the_weights():
    a, b = deployment("a", weight=3), deployment("b", weight=1)
    route = Route("m", (a, b))
    p = pool()
    picks = Counter(p._pick([route], set())[1].name for _ in range(4000))
    assert 0.7 < picks["a"] / 4000 < 0.8


def test_least_busy_policy_picks_the_least_loaded_per_weight():
    a, b = deployment("a", weight=2), deployment("b", weight=1)
    route = Route("m", (a, b), policy="least_busy")
    p = pool()
    p.state(a).in_flight = 3  # 1.5 per weight unit
    p.state(b).in_flight = 1  # 1.0
    assert {p._pick([route], set())[1].name for _ in range(50)} == {"b"}


def test_untried_deployments_then_fallbacks_come_before_a_second_try():
    a, b, c = deployment("a"), deployment("b"), deployment("c")
    primary, fallback = Route("m", (a, b)), Route("f", (c,))
    p = pool()
    assert p._pick([primary, fallback], {a.identity})[1] is b
    assert p._pick([primary, fallback], {a.identity, b.identity})[1] is c
    assert p._pick([primary, fallback], {a.identity, b.identity, c.identity})[0] is primary


def test_full_open_or_cooling_deployments_are_skipped():
    a, b = deployment("a", max_concurrency=1), deployment("b")
    route = Route("m", (a, b))
    clock = ManualClock()
    p = pool(clock, breaker_failures=1)
    p.state(a).in_flight = 1
    assert {p._pick([route], set())[1].name for _ in range(20)} == {"b"}
    p.state(b).breaker.failure()
    assert p._pick([route], set()) is None
    p.state(a).in_flight = 0
    p.state(a).cooling_until = clock() + 60
    # A fresh request may still ask a cooling deployment when nothing else can serve; a retry may not.
    assert p._pick([route], set())[1] is a
    assert p._pick([route], {b.identity}) is None
    clock.advance(60)
    assert p._pick([route], {b.identity})[1] is a
