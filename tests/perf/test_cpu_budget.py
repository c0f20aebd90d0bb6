"""CPU per request of the whole chain (gateway, guardrails, generation), counted as process CPU
time, against a budget calibrated on the fast pass-through in the same test (tests/perf/budget.py).

The fast pass-through gets the same requests right before and right after the chain, and its CPU
per request over both runs is the yardstick, so drift in the machine during the test hits both."""

import pytest

from bench.config import BenchSettings
from bench.goals import CPU_GOALS_MS
from bench.targets import Target
from tests.perf.budget import CONCURRENCY, GOAL_FACTOR, OPEN_GOAL_CEILING, REQUESTS, SLACK
from tests.perf.load import drive

CASES = [
    pytest.param(shape, stream, id=f"{shape}-{'stream' if stream else 'non-stream'}")
    for shape, stream in (("short", True), ("short", False), ("long", True), ("long", False))
]


@pytest.mark.parametrize(("shape", "stream"), CASES)
def test_chain_cpu_per_request_within_budget(
    perf_cfg: BenchSettings, fast: Target, chain: Target, shape: str, stream: bool
) -> None:
    key = (shape, stream)
    requests, concurrency = REQUESTS[key], CONCURRENCY[shape]
    chunks = perf_cfg.shape(shape).chunks
    first = drive(perf_cfg, fast, shape, stream, requests, concurrency)
    ours = drive(perf_cfg, chain, shape, stream, requests, concurrency)
    second = drive(perf_cfg, fast, shape, stream, requests, concurrency)
    for batch in (first, ours, second):
        assert not batch.problems(), f"{batch.target}: {batch.problems()}"

    fast_ms = 1000 * (first.cpu_s + second.cpu_s) / (first.result["handled"] + second.result["handled"])
    ours_ms = ours.cpu_ms_per_request
    goal_ms = GOAL_FACTOR[key] * fast_ms
    budget_ms = SLACK * goal_ms
    print(
        f"\n[cpu] {shape} {'stream' if stream else 'non-stream'}: {requests} requests, c={concurrency}, "
        f"{chunks} chunks each\n"
        f"[cpu]   fast pass-through {fast_ms:8.3f} ms/request {fast_ms / chunks:7.4f} ms/chunk "
        f"(before {first.cpu_ms_per_request:.3f}, after {second.cpu_ms_per_request:.3f})\n"
        f"[cpu]   llmsuite          {ours_ms:8.3f} ms/request {ours_ms / chunks:7.4f} ms/chunk "
        f"= {ours_ms / fast_ms:5.1f}x fast\n"
        f"[cpu]   goal {CPU_GOALS_MS[key]:g} ms on the reference = {GOAL_FACTOR[key]:.1f}x fast = {goal_ms:.2f} ms "
        f"here; budget {SLACK:g}x goal = {budget_ms:.2f} ms"
    )
    if ours_ms <= budget_ms:
        return
    over = (
        f"llmsuite spent {ours_ms:.2f} ms CPU per request ({ours_ms / fast_ms:.1f}x the fast pass-through), "
        f"budget {budget_ms:.2f} ms ({SLACK:g} x {GOAL_FACTOR[key]:.1f}x fast)"
    )
    ceiling = OPEN_GOAL_CEILING.get(key)
    assert ceiling is not None, over
    # An open goal (budget.py): over its budget is expected for now, over its ceiling is a regression.
    assert ours_ms <= ceiling * fast_ms, f"{over}; regression ceiling {ceiling:g}x fast"
    pytest.xfail(f"open goal: {over}")
