import random

import pytest
from generation_service.breaker import BreakerState, CircuitBreaker
from generation_service.retry_budget import RetryThrottle, full_jitter
from llmsuite_common.clock import ManualClock


def test_breaker_opens_after_consecutive_failures_and_fails_fast():
    clock = ManualClock()
    breaker = CircuitBreaker(failures=3, open_seconds=10, clock=clock)
    for _ in range(2):
        assert breaker.acquire()
        breaker.failure()
    breaker.success()  # a success in between resets the count
    for _ in range(3):
        assert breaker.acquire()
        breaker.failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.available() and not breaker.acquire()


def test_half_open_lets_one_probe_through_and_its_verdict_decides():
    clock = ManualClock()
    breaker = CircuitBreaker(failures=1, open_seconds=10, clock=clock)
    breaker.acquire()
    breaker.failure()
    clock.advance(10)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.acquire()
    assert not breaker.acquire(), "only one probe at a time"
    breaker.failure()
    assert breaker.state is BreakerState.OPEN
    clock.advance(9.9)
    assert not breaker.acquire()
    clock.advance(0.1)
    assert breaker.acquire()
    breaker.success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.acquire() and breaker.acquire()


def test_an_abandoned_probe_frees_the_slot():
    clock = ManualClock()
    breaker = CircuitBreaker(failures=1, open_seconds=1, clock=clock)
    breaker.acquire()
    breaker.failure()
    clock.advance(1)
    assert breaker.acquire()
    breaker.abandon()
    assert breaker.acquire()


def test_throttle_stops_retries_when_everything_fails():
    throttle = RetryThrottle(max_tokens=10, ratio=0.1)
    requests = attempts = 0
    for _ in range(1000):
        requests += 1
        attempts += 1
        throttle.failure()
        for _ in range(2):  # up to two retries each
            if not throttle.allows_retry():
                break
            attempts += 1
            throttle.failure()
    assert attempts / requests <= 1.01


@pytest.mark.parametrize("failure_rate", [0.05, 0.2, 0.5, 1.0])
def test_throttle_keeps_attempts_within_ten_percent_at_any_failure_rate(failure_rate):
    rng = random.Random(7)
    throttle = RetryThrottle(max_tokens=10, ratio=0.1)
    requests = attempts = 0
    for _ in range(5000):
        requests += 1
        for attempt in range(3):
            if attempt and not throttle.allows_retry():
                break
            attempts += 1
            if rng.random() < failure_rate:
                throttle.failure()
            else:
                throttle.success()
                break
    assert attempts / requests <= 1.1


def test_full_jitter_stays_under_the_capped_exponential():
    rng = random.Random(1)
    for retry in range(12):
        ceiling = min(2.0, 0.05 * 2**retry)
        samples = [full_jitter(retry, base=0.05, cap=2.0, rng=rng) for _ in range(200)]
        assert all(0 <= s <= ceiling for s in samples)
        # Spread over the whole range, not bunched at the top like equal jitter.
        assert min(samples) < ceiling * 0.1 and max(samples) > ceiling * 0.9
