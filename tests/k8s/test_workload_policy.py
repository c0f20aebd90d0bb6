"""Resources, probes, pinned images, drain timing and load balancing in every values case."""

import re
from typing import Any

from k8s_objects import SERVICES, component, containers, named, of_kind, pod_spec, workloads

PINNED_TAG = re.compile(r"^[^@\s]+:(?!latest$)[A-Za-z0-9_][A-Za-z0-9_.-]*$")
PINNED_DIGEST = re.compile(r"^[^@\s]+@sha256:[a-f0-9]{64}$")


def test_every_container_sets_requests_and_limits(rendered):
    for case, objects in rendered.items():
        for workload in workloads(objects):
            for container in containers(workload):
                where = f"{case}: {workload['metadata']['name']}/{container['name']}"
                resources = container.get("resources", {})
                for part in ("requests", "limits"):
                    for resource in ("cpu", "memory"):
                        assert resources.get(part, {}).get(resource), f"{where}: no {part}.{resource}"


def test_every_container_has_startup_liveness_and_readiness_probes(rendered):
    for case, objects in rendered.items():
        # Jobs (the migration hooks) run to completion: nothing to probe.
        for workload in (w for w in workloads(objects) if w["kind"] != "Job"):
            for container in pod_spec(workload)["containers"]:
                where = f"{case}: {workload['metadata']['name']}/{container['name']}"
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    assert container.get(probe), f"{where}: no {probe}"


def test_images_are_pinned_never_latest(rendered):
    for case, objects in rendered.items():
        for workload in workloads(objects):
            for container in containers(workload):
                image = container["image"]
                assert PINNED_TAG.match(image) or PINNED_DIGEST.match(image), (
                    f"{case}: unpinned image {image}"
                )


def test_grpc_backends_use_native_grpc_probes_and_the_gateway_http(rendered):
    """Plaintext backends: the kubelet's gRPC probe. Under TLS it cannot connect, so startup and
    readiness run the same health check in the pod (test_trust_boundaries checks that command)."""
    for case, objects in rendered.items():
        for comp in SERVICES:
            container = pod_spec(named(objects, "Deployment", comp))["containers"][0]
            port = container["ports"][0]["containerPort"]
            tls = "GRPC_TLS_CERT_FILE" in named(objects, "ConfigMap", comp)["data"]
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if comp == "gateway":
                    assert container[probe]["httpGet"]["path"] in {"/healthz", "/readyz"}, f"{case}: {probe}"
                elif tls and probe == "livenessProbe":
                    assert container[probe]["tcpSocket"]["port"] in {port, container["ports"][0]["name"]}, (
                        case
                    )
                elif tls:
                    assert container[probe]["exec"]["command"][:3] == [
                        "python",
                        "-m",
                        "llmsuite_common.grpc_probe",
                    ]
                else:
                    assert container[probe]["grpc"]["port"] == port, f"{case}: {comp} {probe}"
            if comp == "gateway":
                assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
                assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_retrieval_startup_allows_minutes_for_the_embedding_model(rendered):
    for case, objects in rendered.items():
        startup = pod_spec(named(objects, "Deployment", "retrieval"))["containers"][0]["startupProbe"]
        budget = startup["periodSeconds"] * startup["failureThreshold"]
        assert budget >= 180, f"{case}: retrieval gets only {budget}s to load its model"


def test_termination_grace_exceeds_prestop_plus_drain_plus_in_flight_grace(rendered):
    for case, objects in rendered.items():
        configmaps = {o["metadata"]["name"]: o["data"] for o in of_kind(objects, "ConfigMap")}
        for comp in SERVICES:
            deployment = named(objects, "Deployment", comp)
            spec = pod_spec(deployment)
            container = spec["containers"][0]
            env = configmaps[container["envFrom"][0]["configMapRef"]["name"]]
            pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
            needed = pre_stop + float(env["DRAIN_SECONDS"]) + float(env["SHUTDOWN_GRACE_SECONDS"])
            assert spec["terminationGracePeriodSeconds"] > needed, (
                f"{case}: {comp} is killed after {spec['terminationGracePeriodSeconds']}s, drain needs {needed}s"
            )


def test_grpc_backends_are_headless_and_dialled_round_robin_over_dns(rendered):
    for case, objects in rendered.items():
        gateway_env = named(objects, "ConfigMap", "gateway")["data"]
        for comp in ("guardrails", "retrieval", "generation"):
            service = named(objects, "Service", comp)
            assert service["spec"].get("clusterIP") == "None", f"{case}: {comp} Service is not headless"
            port = service["spec"]["ports"][0]["port"]
            target = gateway_env[f"GATEWAY_{comp.upper()}_TARGET"]
            name = service["metadata"]["name"]
            assert target == f"dns:///{name}.llmsuite.svc.cluster.local:{port}", f"{case}: {target}"
            # Servers age connections out so clients re-resolve and new pods get traffic.
            backend_env = named(objects, "ConfigMap", comp)["data"]
            assert 0 < float(backend_env["GRPC_MAX_CONNECTION_AGE_SECONDS"]) <= 3600


def test_each_service_has_its_own_service_account_and_a_disruption_budget_or_fixed_single_replica(rendered):
    for case, objects in rendered.items():
        for comp in SERVICES:
            deployment = named(objects, "Deployment", comp)
            account = named(objects, "ServiceAccount", comp)
            assert pod_spec(deployment)["serviceAccountName"] == account["metadata"]["name"]
            # An HPA of the chart's, or a KEDA ScaledObject (KEDA makes the HPA), never both.
            autoscaled = [
                h
                for h in of_kind(objects, "HorizontalPodAutoscaler") + of_kind(objects, "ScaledObject")
                if component(h) == comp
            ]
            assert len(autoscaled) <= 1, f"{case}: {comp} has {len(autoscaled)} autoscalers"
            budgets = [p for p in of_kind(objects, "PodDisruptionBudget") if component(p) == comp]
            spec = autoscaled[0]["spec"] if autoscaled else {}
            replicas = spec.get(
                "minReplicas", spec.get("minReplicaCount", deployment["spec"].get("replicas"))
            )
            assert budgets or replicas == 1, f"{case}: {comp} runs {replicas} replicas with no PDB"
            for hpa in autoscaled:
                assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
                assert "replicas" not in deployment["spec"], f"{case}: {comp} fixes replicas under an HPA"


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_only_the_gateway_is_open_and_each_backend_admits_only_its_callers(rendered):
    # `test`: the `helm test` pod checks every gRPC service's health (test_operations).
    callers = {
        "guardrails": {"gateway", "test"},
        "retrieval": {"gateway", "test"},
        "generation": {"gateway", "test"},
        "inference": {"generation"},
        # The migration Jobs (test_migrations) reach the database and admit nothing.
        "postgresql": {"retrieval", "gateway", "gateway-migrate", "retrieval-migrate"},
        "redis": {"gateway"},
        "gateway-migrate": set(),
        "retrieval-migrate": set(),
    }
    for case, objects in rendered.items():
        policies = of_kind(objects, "NetworkPolicy")
        if not policies:
            continue
        # Besides its own policy, every pod is under the release's default deny (which allows nothing).
        [deny] = [p for p in policies if component(p) == "default-deny"]
        assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"], case
        assert deny["spec"]["ingress"] == deny["spec"]["egress"] == [], case
        for workload in workloads(objects):
            comp = component(workload)
            labels = workload["spec"]["template"]["metadata"]["labels"]
            assert _selects(deny["spec"]["podSelector"], labels), (
                f"{case}: {comp} is outside the default deny"
            )
            mine = [p for p in policies if _selects(p["spec"]["podSelector"], labels) and p is not deny]
            assert len(mine) == 1, f"{case}: {comp} is selected by {len(mine)} NetworkPolicies"
            rules = mine[0]["spec"].get("ingress", [])
            if comp == "gateway":
                assert rules, f"{case}: the gateway admits nothing"
                continue
            assert all(rule.get("from") for rule in rules), f"{case}: {comp} admits any source"
            # Rules for the metrics port admit the scrapers (metrics.scrapeFrom), nothing else.
            metrics_port = _metrics_port(workload)
            call_rules = [r for r in rules if {p["port"] for p in r["ports"]} != {metrics_port}]
            assert all(metrics_port not in {p["port"] for p in r["ports"]} for r in call_rules), (
                f"{case}: {comp} opens its metrics port to callers"
            )
            # Whole namespaces appear only as allowFromNamespaces puts them (test_trust_boundaries).
            allowed = {
                peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                for rule in call_rules
                for peer in rule.get("from", [])
                if "namespaceSelector" not in peer
            }
            assert allowed == callers[comp], f"{case}: {comp} admits {allowed}, expected {callers[comp]}"


def _metrics_port(workload: dict[str, Any]) -> int | None:
    ports = pod_spec(workload)["containers"][0].get("ports", [])
    return next((p["containerPort"] for p in ports if p.get("name") == "metrics"), None)
