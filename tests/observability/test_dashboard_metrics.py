"""The Grafana dashboard and the chart's rules against a real Prometheus.

The dashboard's own run (tools.dashboard.render.Run: the suite as processes, a Prometheus scraping
every service each second with the chart's labels, the chart's rule groups loaded) takes a few
seconds of the traffic mix. Then: every panel's queries return data through /api/v1/query_range;
every metric a panel, alert or recording rule reads is one Prometheus scraped (a series, or a
family a service declared before its first sample), so renaming a metric fails here, not on a
dashboard in production; every recording rule yields series from the real scrapes and every rule
evaluates without error. Skipped, with the reason, where there is no prometheus binary.
"""

import shutil
import tempfile
from pathlib import Path

import promql_parser
import pytest

from tools.dashboard import chart_rules, grafana
from tools.dashboard.names import referenced, substitute
from tools.dashboard.panels import all_targets
from tools.dashboard.prometheus import binary
from tools.dashboard.render import Run, grafana_panels

# kube-state-metrics' series, which the kube-prometheus stack provides beside Prometheus.
KUBE_STATE_PREFIXES = ("kube_pod_", "kube_deployment_", "kube_horizontalpodautoscaler_")
TRAFFIC_SECONDS = 6
STEP = 1.0
RATE_WINDOW = "5s"  # Grafana's $__rate_interval floor: 4 scrape intervals (plus one)

needs_prometheus = pytest.mark.skipif(
    binary() is None,
    reason="no prometheus binary: Debian/Ubuntu `apt-get install prometheus` (make install does it as root)",
)


def test_chart_dashboard_json_is_generated_from_the_panels():
    assert grafana.DASHBOARD_JSON.read_text() == grafana.text(), (
        "run: .venv/bin/python -m tools.dashboard.grafana --write"
    )


@pytest.mark.parametrize("target", all_targets(), ids=lambda t: t.legend)
def test_every_query_parses(target):
    promql_parser.parse(substitute(target.expr))
    assert referenced(target.expr), f"{target.expr} reads no metric"


@pytest.fixture(scope="module")
def rules(tmp_path_factory):
    return chart_rules.render(tmp_path_factory.mktemp("chart-rules"))


@pytest.fixture(scope="module")
def run(rules):
    # Not under pytest's basetemp (mode 0700): embedded PostgreSQL runs as its own user.
    directory = Path(tempfile.mkdtemp(prefix="llmsuite-dashboard-test-"))
    directory.chmod(0o755)
    rule_file, _ = rules
    try:
        with Run(directory, scrape_interval=1.0, rule_files=[rule_file]) as run:
            run.drive(TRAFFIC_SECONDS, pace=lambda _start, _now: 0.1, workers=3)
            yield run
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@needs_prometheus
def test_every_panel_returns_data_from_prometheus(run):
    assert len(grafana_panels()) == len([p for p in grafana.dashboard()["panels"] if p["type"] != "row"])
    assert run.empty_panels(STEP, RATE_WINDOW) == [], f"mix: {dict(run.outcomes)}"
    # A spot check of the values: chat traffic at a positive rate on its route.
    chat = run.prometheus.query(
        'sum by (route) (rate(llmsuite_gateway_requests_total{route="/v1/chat/completions"}[10s]))', run.ended
    )
    assert chat and float(chat[0]["value"][1]) > 0


def _rule_metrics(groups) -> dict[str, str]:
    """Metric read -> the alert or record reading it."""
    reads = {}
    for group in groups:
        for rule in group["rules"]:
            for name in referenced(rule["expr"]):
                reads[name] = rule.get("alert") or rule.get("record")
    return reads


@needs_prometheus
def test_every_metric_a_panel_or_rule_reads_is_exported(run, rules):
    _, groups = rules
    exported = run.prometheus.series_names() | run.prometheus.declared_series()
    recorded = {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}
    reads = {
        name: f"panel {panel.title!r}"
        for panel in grafana_panels()
        for expr, _ in panel.targets
        for name in referenced(expr)
    }
    reads |= {name: f"rule {rule}" for name, rule in _rule_metrics(groups).items()}
    missing = {
        name: reader
        for name, reader in reads.items()
        if name not in exported and name not in recorded and not name.startswith(KUBE_STATE_PREFIXES)
    }
    assert missing == {}, f"read but exported by no service under the traffic mix: {missing}"


@needs_prometheus
def test_recording_rules_yield_series_and_every_rule_evaluates(run, rules):
    _, groups = rules
    loaded = run.prometheus.rule_groups()
    assert sorted(g["name"] for g in loaded) == sorted(g["name"] for g in groups)
    unhealthy = [
        (rule["name"], rule.get("lastError")) for g in loaded for rule in g["rules"] if rule["health"] != "ok"
    ]
    assert unhealthy == []
    records = sorted({rule["record"] for group in groups for rule in group["rules"] if "record" in rule})
    empty = [record for record in records if not run.prometheus.query(record)]
    assert empty == [], f"recording rules without series after the mix: {empty}"
