"""The dashboard only asks for metrics the running services export, in PromQL it can evaluate."""

import httpx
import promql_parser
import pytest

from tests.conftest import FAKE_MODEL
from tools.dashboard import grafana
from tools.dashboard.names import exported, referenced, substitute
from tools.dashboard.panels import PANELS, all_targets
from tools.dashboard.promql import Evaluator, Store

BACKENDS = ("guardrails", "retrieval", "generation")


def test_chart_dashboard_json_is_generated_from_the_panels():
    assert grafana.DASHBOARD_JSON.read_text() == grafana.text(), (
        "run: .venv/bin/python -m tools.dashboard.grafana --write"
    )


@pytest.mark.parametrize("target", all_targets(), ids=lambda t: t.legend)
def test_every_query_parses(target):
    promql_parser.parse(substitute(target.expr))
    assert referenced(target.expr), f"{target.expr} reads no metric"


def _endpoints(suite) -> dict[str, str]:
    urls = {"gateway": f"{suite.gateway_url}/metrics"}
    for name in BACKENDS:
        urls[name] = f"http://127.0.0.1:{suite.cfg.extra_env[name]['METRICS_PORT']}/metrics"
    return urls


def _traffic(suite) -> None:
    auth = {"Authorization": f"Bearer {suite.api_key}"}
    body = {"model": FAKE_MODEL, "messages": [{"role": "user", "content": "metrics please"}]}
    with httpx.Client(base_url=suite.gateway_url, timeout=30) as client:
        assert client.post("/v1/chat/completions", json=body, headers=auth).status_code == 200
        with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}, headers=auth) as r:
            assert r.status_code == 200
            r.read()
        bad = client.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer sk-wrong"})
        assert bad.status_code == 401


def test_dashboard_queries_read_only_exported_metrics_and_evaluate(suite):
    store, names = Store(), set()
    # Traffic before each of two scrapes: every series exists at the first, and moved by the second.
    for t in (0.0, 5.0):
        _traffic(suite)
        for job, url in _endpoints(suite).items():
            text = httpx.get(url, timeout=5).text
            names |= exported(text)
            store.add(t, text, {"job": job})
    missing = {
        f"{panel.title}: {name}"
        for panel in PANELS
        for target in panel.targets
        for name in referenced(target.expr) - names
    }
    assert not missing, f"queries read metrics no service exports: {sorted(missing)}"

    evaluator = Evaluator(store)
    requests = evaluator.instant(
        substitute(
            'sum by (route) (rate(llmsuite_gateway_requests_total{route="/v1/chat/completions"}[$__rate_interval]))'
        ),
        5.0,
    )
    assert requests and all(v > 0 for v in requests.values())  # type: ignore[union-attr]
    for target in all_targets():
        evaluator.instant(substitute(target.expr), 5.0)  # raises on PromQL the renderer cannot draw
