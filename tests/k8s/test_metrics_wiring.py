"""Every service's /metrics is reachable the way the chart says: env, ports, monitors, policies;
the Grafana dashboard ships as a ConfigMap."""

import json
from pathlib import Path

from k8s_objects import SERVICES, container_env, named, of_kind, pod_spec

BACKENDS = [s for s in SERVICES if s != "gateway"]


def _port(ports: list[dict], name: str) -> dict | None:
    return next((p for p in ports if p.get("name") == name), None)


def test_backends_serve_metrics_on_a_named_port_matching_metrics_port(rendered):
    for case, objects in rendered.items():
        for comp in BACKENDS:
            env = container_env(objects, comp)
            container = pod_spec(named(objects, "Deployment", comp))["containers"][0]
            declared = _port(container["ports"], "metrics")
            assert declared, f"{case}: {comp} declares no metrics container port"
            assert int(env["METRICS_PORT"]["value"]) == declared["containerPort"], case
            service_port = _port(named(objects, "Service", comp)["spec"]["ports"], "metrics")
            assert service_port and service_port["targetPort"] == "metrics", f"{case}: {comp} Service"
            # The gRPC port stays first: probes and callers' targets read ports[0].
            assert container["ports"][0]["name"] == "grpc", case


def test_the_gateway_serves_metrics_on_its_http_port_and_sets_no_metrics_port(rendered):
    for case, objects in rendered.items():
        assert "METRICS_PORT" not in container_env(objects, "gateway"), case
        monitors = [
            m for m in of_kind(objects, "ServiceMonitor") if m["metadata"]["name"].endswith("-gateway")
        ]
        for monitor in monitors:
            assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["http"], case


def _policy_for(objects: list[dict], comp: str) -> dict:
    return next(p for p in of_kind(objects, "NetworkPolicy") if p["metadata"]["name"].endswith(f"-{comp}"))


def test_network_policies_admit_the_scrapers_to_every_metrics_port(rendered):
    for case, objects in rendered.items():
        if not of_kind(objects, "NetworkPolicy"):
            continue
        for comp in SERVICES:
            container = pod_spec(named(objects, "Deployment", comp))["containers"][0]
            port = _port(container["ports"], "metrics") or container["ports"][0]
            rules = _policy_for(objects, comp)["spec"].get("ingress", [])
            admitted = [r for r in rules if port["containerPort"] in {p["port"] for p in r.get("ports", [])}]
            # No `from` admits every source (the default public gateway); otherwise a scrape rule
            # naming a namespace must be there.
            open_to_all = any(not r.get("from") for r in admitted)
            scrapers = [peer for r in admitted for peer in r.get("from", []) if "namespaceSelector" in peer]
            assert open_to_all or scrapers, f"{case}: nothing may scrape {comp}'s metrics port"


def test_dashboard_configmap_carries_the_chart_dashboard_for_grafanas_sidecar(rendered):
    chart_json = (
        Path(__file__).resolve().parents[2] / "k8s/charts/llmsuite/dashboards/llmsuite.json"
    ).read_text()
    found = 0
    for case, objects in rendered.items():
        for cm in of_kind(objects, "ConfigMap"):
            if "llmsuite.json" not in cm.get("data", {}):
                continue
            found += 1
            assert cm["metadata"]["labels"].get("grafana_dashboard") == "1", case
            assert json.loads(cm["data"]["llmsuite.json"]) == json.loads(chart_json), case
            assert len(cm["data"]["llmsuite.json"]) < 900_000, f"{case}: a ConfigMap holds at most 1 MiB"
    assert found, "no values case renders the dashboard ConfigMap"
