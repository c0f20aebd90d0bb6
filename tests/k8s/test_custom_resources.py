"""Objects kubernetes-validate has no schema for (CRDs) point at what the chart really renders."""

from k8s_objects import named, of_kind


def _enabled(rendered, kind):
    found = [(case, o, objects) for case, objects in rendered.items() for o in of_kind(objects, kind)]
    assert found, f"no values case under ci/ renders a {kind}"
    return found


def test_servicemonitor_scrapes_the_gateway_metrics_port(rendered):
    for case, monitor, objects in _enabled(rendered, "ServiceMonitor"):
        service = named(objects, "Service", "gateway")
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert all(service["metadata"]["labels"].get(k) == v for k, v in selector.items()), case
        port_names = {p["name"] for p in service["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names, case
        assert all(e["path"] == "/metrics" for e in monitor["spec"]["endpoints"]), case


def test_prometheus_rules_are_well_formed(rendered):
    for case, rule, _ in _enabled(rendered, "PrometheusRule"):
        for group in rule["spec"]["groups"]:
            for alert in group["rules"]:
                assert alert["alert"] and alert["expr"].strip(), case
                assert alert["labels"]["severity"] in {"critical", "warning", "info"}, case
                assert "summary" in alert["annotations"], case


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
