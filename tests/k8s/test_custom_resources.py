"""Objects kubernetes-validate has no schema for (CRDs) point at what the chart really renders."""

import re

import promql_parser
import pytest
from k8s_objects import SERVICES, component, named, of_kind
from metric_names import KNOWN_METRICS, KUBE_STATE_PREFIXES, metric_names


def _enabled(rendered, kind):
    found = [(case, o, objects) for case, objects in rendered.items() for o in of_kind(objects, kind)]
    assert found, f"no values case under ci/ renders a {kind}"
    return found


def test_each_servicemonitor_scrapes_its_service_metrics_port(rendered):
    for case, monitor, objects in _enabled(rendered, "ServiceMonitor"):
        comp = component(monitor)
        service = named(objects, "Service", comp)
        selector = monitor["spec"]["selector"]["matchLabels"]

        def selects(svc, selector=selector):
            return all(svc["metadata"]["labels"].get(k) == v for k, v in selector.items())

        assert selects(service), case
        # The selector must not also pick another component's Service.
        assert not any(selects(s) for s in of_kind(objects, "Service") if s is not service), case
        port_names = {p["name"] for p in service["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names, case
        assert all(e["path"] == "/metrics" for e in monitor["spec"]["endpoints"]), case


def test_every_service_has_a_servicemonitor_when_enabled(rendered):
    for case, objects in rendered.items():
        monitors = {component(m) for m in of_kind(objects, "ServiceMonitor")}
        if monitors:
            assert monitors == set(SERVICES), f"{case}: ServiceMonitors for {sorted(monitors)}"


def _rules(rendered):
    for case, rule, _ in _enabled(rendered, "PrometheusRule"):
        for group in rule["spec"]["groups"]:
            for item in group["rules"]:
                yield case, group["name"], item


def test_prometheus_rules_are_well_formed(rendered):
    for case, group, item in _rules(rendered):
        assert bool("alert" in item) != bool("record" in item), f"{case} {group}: {item}"
        assert item["expr"].strip(), case
        if "alert" in item:
            assert item["alert"], case
            assert item["labels"]["severity"] in {"critical", "warning", "info"}, case
            assert "summary" in item["annotations"], case
        else:
            # level:metric:operations, Prometheus' naming convention for recording rules.
            assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", item["record"]), item["record"]


def test_prometheus_rule_expressions_parse_as_promql(rendered):
    """PromQL syntax checked offline by the promql-parser crate (the Rust port of Prometheus' parser)."""
    for case, group, item in _rules(rendered):
        name = item.get("alert") or item.get("record")
        try:
            promql_parser.parse(item["expr"])
        except ValueError as exc:
            pytest.fail(f"{case} {group}/{name}: {exc}\n{item['expr']}", pytrace=False)


def test_alerts_read_only_metrics_the_suite_exports_or_kubernetes_provides(rendered):
    """A misspelt metric name parses fine and never fires; every name must be known."""
    recorded = {item["record"] for _, _, item in _rules(rendered) if "record" in item}
    for case, group, item in _rules(rendered):
        for metric in metric_names(item["expr"]):
            assert metric in recorded or metric in KNOWN_METRICS or metric.startswith(KUBE_STATE_PREFIXES), (
                f"{case} {group}: {metric} is neither exported by a service nor recorded"
            )


def test_error_budget_burn_alerts_pair_a_long_and_a_short_window(rendered):
    for case, _group, item in _rules(rendered):
        if item.get("alert") != "LlmsuiteErrorBudgetBurn":
            continue
        windows = re.findall(r"ratio_rate(\d+[mhd])", item["expr"])
        assert len(windows) == 2 and windows[0] != windows[1], f"{case}: {item['expr']}"


def test_httproute_sends_everything_to_the_gateway_without_a_request_timeout(rendered):
    for case, route, objects in _enabled(rendered, "HTTPRoute"):
        service = named(objects, "Service", "gateway")
        assert route["spec"]["parentRefs"], case
        for rule in route["spec"]["rules"]:
            assert rule["backendRefs"] == [
                {"name": service["metadata"]["name"], "port": service["spec"]["ports"][0]["port"]}
            ], case
            assert rule.get("timeouts", {}).get("request") == "0s", f"{case}: streams would be cut"


def test_ingress_is_streaming_safe(rendered):
    for case, ingress, objects in _enabled(rendered, "Ingress"):
        annotations = ingress["metadata"].get("annotations", {})
        assert annotations.get("nginx.ingress.kubernetes.io/proxy-buffering") == "off", case
        assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 300, case
        backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend["name"] == named(objects, "Service", "gateway")["metadata"]["name"], case
