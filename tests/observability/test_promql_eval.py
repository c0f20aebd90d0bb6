"""The local PromQL evaluator agrees with Prometheus' semantics on hand-computed cases."""

import math

import pytest

from tools.dashboard.promql import Evaluator, Store, Unsupported, histogram_quantile


def _store() -> Store:
    store = Store()
    for i, t in enumerate(range(0, 60, 5)):
        reset = i if i < 6 else i - 6  # the 500 counter restarts at t=30
        store.add(
            float(t),
            f"""# TYPE req counter
req_total{{route="/a",status="200"}} {i * 10}
req_total{{route="/a",status="500"}} {reset}
req_total{{route="/b",status="200"}} {i * 2}
# TYPE lat histogram
lat_bucket{{route="/a",le="0.1"}} {i * 5}
lat_bucket{{route="/a",le="1.0"}} {i * 9}
lat_bucket{{route="/a",le="+Inf"}} {i * 10}
lat_count{{route="/a"}} {i * 10}
lat_sum{{route="/a"}} {i * 3}
""",
            {"job": "gateway"},
        )
    return store


def test_rate_by_route_and_error_ratio():
    ev = Evaluator(_store())
    assert ev.instant('sum by (route) (rate(req_total{namespace=~".*"}[20s]))', 55.0) == {
        (("route", "/a"),): pytest.approx(2.2),
        (("route", "/b"),): pytest.approx(0.4),
    }
    ratio = ev.instant(
        'sum(rate(req_total{status=~"5.."}[20s])) / clamp_min(sum(rate(req_total[20s])), 1e-9)', 55.0
    )
    assert ratio == {(): pytest.approx(1 / 13)}


def test_counter_reset_is_not_a_negative_rate():
    ev = Evaluator(_store())
    # Samples 3,4,5,0 across the reset at t=30: increases 1,1,0(reset to 0) -> 2 over 15 s.
    assert ev.instant('rate(req_total{status="500"}[20s])', 30.0) == {
        (("job", "gateway"), ("route", "/a"), ("status", "500")): pytest.approx(2 / 15)
    }


def test_histogram_quantile_interpolates_like_prometheus():
    ev = Evaluator(_store())
    p50 = ev.instant("histogram_quantile(0.5, sum by (le, route) (rate(lat_bucket[20s])))", 55.0)
    p99 = ev.instant("histogram_quantile(0.99, sum by (le, route) (rate(lat_bucket[20s])))", 55.0)
    assert p50 == {(("route", "/a"),): pytest.approx(0.1)}
    assert p99 == {(("route", "/a"),): pytest.approx(1.0)}  # in the +Inf bucket: the last finite bound
    assert histogram_quantile(0.75, [(1.0, 50), (2.0, 100), (math.inf, 100)]) == pytest.approx(1.5)
    assert math.isnan(histogram_quantile(0.5, [(1.0, 0), (math.inf, 0)]))


def test_vector_matching_and_filters():
    ev = Evaluator(_store())
    out = ev.instant(
        'sum by (route) (rate(req_total{status="500"}[20s])) / on (route) sum by (route) (rate(req_total[20s])) > 0.05',
        25.0,
    )
    assert out == {(("route", "/a"),): pytest.approx(1 / 11)}
    assert ev.instant("sum(rate(req_total[20s])) > 100", 55.0) == {}


def test_unsupported_promql_fails_loudly():
    with pytest.raises(Unsupported):
        Evaluator(_store()).instant("topk(1, req_total)", 55.0)
