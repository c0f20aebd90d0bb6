import random

import pytest
from generation_service.breaker import BreakerState, CircuitBreaker
from generation_service.retry_budget import RetryBudget, full_jitter
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


def test_breaker_tells_when_its_probe_may_go():
    clock = ManualClock()
    breaker = CircuitBreaker(failures=1, open_seconds=10, clock=clock)
    assert breaker.seconds_until_probe() == 0
    breaker.acquire()
    breaker.failure()
    clock.advance(2.5)
    assert breaker.seconds_until_probe() == 7.5
    clock.advance(7.5)
    assert breaker.seconds_until_probe() == 0


def budget(clock, percent=20.0, window=10.0, min_per_second=0.0) -> RetryBudget:
    return RetryBudget(percent=percent, window=window, min_per_second=min_per_second, clock=clock)


def test_budget_allows_retries_up_to_its_share_of_the_requests():
    b = budget(ManualClock())
    for _ in range(100):
        b.request()
    assert sum(b.try_retry() for _ in range(30)) == 20
    assert not b.try_retry()
    for _ in range(5):
        b.request()
    assert b.try_retry() and not b.try_retry(), "five more requests buy one more retry"


def test_the_reserve_lets_a_quiet_service_retry():
    clock = ManualClock()
    b = budget(clock, min_per_second=1.0)
    b.request()
    # 1 request * 20 % + 1/s * 10 s.
    assert sum(b.try_retry() for _ in range(20)) == 10
    assert b.available < 1


def test_requests_and_retries_leave_the_budget_with_the_window():
    clock = ManualClock()
    b = budget(clock)
    for _ in range(50):
        b.request()
    assert sum(b.try_retry() for _ in range(20)) == 10
    clock.advance(5)
    assert not b.try_retry(), "still inside the window"
    clock.advance(5)
    # The requests and the retries are both out of the window now: nothing to spend.
    assert b.available == 0 and not b.try_retry()
    for _ in range(10):
        b.request()
    assert b.try_retry() and b.try_retry() and not b.try_retry()


@pytest.mark.parametrize("failure_rate", [0.05, 0.2, 0.5, 1.0])
def test_budget_keeps_retries_within_its_share_at_any_failure_rate(failure_rate):
    # 5,000 requests, 50 a second for 100 s; up to two retries each when the budget allows.
    clock = ManualClock()
    rng = random.Random(7)
    b = budget(clock, min_per_second=1.0)
    requests = attempts = 0
    for n in range(5000):
        if n % 50 == 0:
            clock.advance(1)
        requests += 1
        b.request()
        for attempt in range(3):
            if attempt and not b.try_retry():
                break
            attempts += 1
            if rng.random() >= failure_rate:
                break
    # 20 % of the requests, plus a reserve of 10 per 10 s window (0.02 per request at 50/s).
    assert attempts / requests <= 1.2 + 0.02 + 0.005, failure_rate


def test_at_20_percent_failure_the_budget_retries_nearly_every_failure():
    # Rescuing every failure takes 0.25 retries per request; the budget gives 0.2, plus the reserve
    # (0.02 per request at 50/s). With r retries per request, (1 + r) / 5 calls fail of which r are
    # retried: 0.2 - 0.8 * 0.22 = 2.4 % of the requests fail.
    clock = ManualClock()
    b = budget(clock, min_per_second=1.0)
    calls = succeeded = 0
    for n in range(5000):
        if n % 50 == 0:
            clock.advance(1)
        b.request()
        for attempt in range(3):
            if attempt and not b.try_retry():
                break
            calls += 1
            if calls % 5:  # every 5th call fails
                succeeded += 1
                break
    assert succeeded / 5000 >= 0.97
    assert calls / 5000 <= 1.25


def test_full_jitter_stays_under_the_capped_exponential():
    rng = random.Random(1)
    for retry in range(12):
        ceiling = min(2.0, 0.05 * 2**retry)
        samples = [full_jitter(retry, base=0.05, cap=2.0, rng=rng) for _ in range(200)]
        assert all(0 <= s <= ceiling for s in samples)
        # Spread over the whole range, not bunched at the top like equal jitter.
        assert min(samples) < ceiling * 0.1 and max(samples) > ceiling * 0.9
